"""Checkpoints and exported encoders: written atomically (temporary file, fsync, rename), read with
torch.load(weights_only=True) so that nothing loads arbitrary pickles.

A checkpoint holds only tensors, numbers, strings, lists and dicts: the step, the method's and optimiser's
state, and the config as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ssl_ops.atomic import atomic_write


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save, written atomically (ssl_ops.atomic): a failed write leaves no temporary file behind."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load(path: Path, map_location="cpu") -> dict:
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def save_encoder(path: Path, backbone: nn.Module, meta: dict) -> None:
    """The backbone's weights plus what rebuilds it (meta: backbone, image_size, width, patch_size, ...)."""
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    save_atomic({"state_dict": state, "meta": json.dumps(meta, sort_keys=True)}, path)


def load_encoder(path: Path, map_location="cpu") -> tuple[nn.Module, dict]:
    """-> (the backbone in eval mode with its trained weights, meta)."""
    from ssl_ops.models import build_backbone

    blob = load(path, map_location)
    meta = json.loads(blob["meta"])
    net = build_backbone(meta["backbone"], meta["image_size"], patch_size=meta.get("patch_size", 16),
                         width=meta.get("width", 64))
    net.load_state_dict(blob["state_dict"])
    return net.eval(), meta
