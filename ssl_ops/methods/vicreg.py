"""VICReg (Bardes, Ponce and LeCun, ICLR 2022): two views, a 3-layer expander, the variance-invariance-
covariance loss; under DDP the statistics are taken over the gathered global batch, as the paper does."""

from __future__ import annotations

import torch

from ssl_ops.augment import TwoViews
from ssl_ops.losses import vicreg_loss
from ssl_ops.losses.gather import gather
from ssl_ops.methods.base import Method, StepOutput, fp32
from ssl_ops.methods.heads import mlp


class VICReg(Method):
    name = "vicreg"

    def __init__(self, backbone, image_size: int, proj_dim: int = 2048, hidden_dim: int = 2048,
                 sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0, crop_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.out_dim, hidden_dim, proj_dim, layers=3)
        self.views = TwoViews(crop_size or image_size, "byol", scale=tuple(crop_scale), hflip=hflip, rotate=rotate)
        self.weights = (sim_weight, var_weight, cov_weight)

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        h = self.backbone(torch.cat(views[:2]))
        z = self.projector(h)
        with fp32(z):
            z = z.float()
            loss = vicreg_loss(gather(z[:n])[0], gather(z[n:])[0], *self.weights)
        return StepOutput(loss, h[:n].detach())
