"""Backbones, by name. Each returns [N, out_dim] features for [N, 3, H, W] images."""

from __future__ import annotations

from torch import nn

from ssl_ops.models.resnet import resnet10, resnet18, resnet50
from ssl_ops.models.vit import vit_small, vit_tiny

BACKBONES = ("resnet10", "resnet18", "resnet50", "vit_tiny", "vit_small")
RESNETS = {"resnet10": resnet10, "resnet18": resnet18, "resnet50": resnet50}


def build_backbone(name: str, image_size: int, patch_size: int = 16, small_images: bool | None = None,
                   width: int = 64) -> nn.Module:
    """name: one of BACKBONES. ResNets use the small-image stem below 96 px unless small_images says otherwise;
    width is their first stage's channels (64 = the paper's). ViTs take patch_size."""
    if name in RESNETS:
        small = image_size < 96 if small_images is None else small_images
        return RESNETS[name](small_images=small, width=width)
    if name in ("vit_tiny", "vit_small"):
        return (vit_tiny if name == "vit_tiny" else vit_small)(image_size=image_size, patch_size=patch_size)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
