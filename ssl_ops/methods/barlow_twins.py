"""Barlow Twins (Zbontar et al., ICML 2021): two views, a 3-layer projector, the cross-correlation loss;
under DDP the correlation is taken over the gathered global batch."""

from __future__ import annotations

import torch

from ssl_ops.augment import TwoViews
from ssl_ops.losses import barlow_twins_loss
from ssl_ops.losses.gather import gather
from ssl_ops.methods.base import Method, StepOutput, fp32
from ssl_ops.methods.heads import mlp


class BarlowTwins(Method):
    name = "barlowtwins"

    def __init__(self, backbone, image_size: int, proj_dim: int = 2048, hidden_dim: int = 2048,
                 lambd: float = 0.0051, crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0, crop_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.out_dim, hidden_dim, proj_dim, layers=3)
        self.views = TwoViews(crop_size or image_size, "byol", scale=tuple(crop_scale), hflip=hflip, rotate=rotate)
        self.lambd = lambd

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        z = self.projector(h)
        with fp32(z):
            z = z.float()
            loss = barlow_twins_loss(gather(z[:n])[0], gather(z[n:])[0], self.lambd)
        return StepOutput(loss, h[:n].detach())
