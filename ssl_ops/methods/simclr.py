"""SimCLR (Chen et al., ICML 2020): two views, a 2-layer projector, NT-Xent over the (gathered) batch."""

from __future__ import annotations

import torch

from ssl_ops.augment import TwoViews
from ssl_ops.losses import nt_xent_loss
from ssl_ops.methods.base import Method, StepOutput, distributed, fp32
from ssl_ops.methods.heads import mlp


class SimCLR(Method):
    name = "simclr"

    def __init__(self, backbone, image_size: int, temperature: float = 0.2, proj_dim: int = 128,
                 hidden_dim: int = 2048, crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0, crop_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.out_dim, hidden_dim, proj_dim, layers=2)
        self.views = TwoViews(crop_size or image_size, "simclr", scale=tuple(crop_scale), hflip=hflip, rotate=rotate)
        self.temperature = temperature

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        z = self.projector(h)
        with fp32(z):
            z = z.float()
            loss = nt_xent_loss(z[:n], z[n:], self.temperature, gather=distributed())
        return StepOutput(loss, h[:n].detach())
