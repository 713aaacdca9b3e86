"""`sslpipe lineage`: what made a model (model -> data), and which models an image went into (image -> models)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the lineage command to the `sslpipe` parser; it sets `handler` (args -> exit status)."""
