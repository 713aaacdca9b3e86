"""Frozen-encoder features of uint8 images, in batches, without gradients (for kNN and probes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_ops.augment import normalise


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, image_size: int, batch_size: int = 512,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """images: uint8 [N, 3, H, W] -> float [N, D]. Images not at image_size are resized (bilinear) to it."""
    encoder = encoder.eval().to(device)
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start:start + batch_size].to(device))
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        out.append(encoder(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
