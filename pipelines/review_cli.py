"""`sslpipe review`, `approve`, `reject`, `rollback`: a person decides before a model goes live."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the review commands to the `sslpipe` parser; each sets `handler` (args -> exit status)."""
