"""BYOL (Grill et al., NeurIPS 2020): an online network (backbone, projector, predictor) regresses an EMA
target network's projection of the other view; the loss is symmetrised; the target's momentum rises from
`momentum` to 1 on a cosine schedule."""

from __future__ import annotations

import torch

from ssl_ops.augment import TwoViews
from ssl_ops.losses import byol_loss
from ssl_ops.methods.base import Method, StepOutput, ema_momentum, ema_update, fp32, frozen_copy
from ssl_ops.methods.heads import mlp


class BYOL(Method):
    name = "byol"

    def __init__(self, backbone, image_size: int, momentum: float = 0.99, proj_dim: int = 256,
                 hidden_dim: int = 2048, crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0, crop_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.out_dim, hidden_dim, proj_dim, layers=2)
        self.predictor = mlp(proj_dim, hidden_dim, proj_dim, layers=2)
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.views = TwoViews(crop_size or image_size, "byol", scale=tuple(crop_scale), hflip=hflip, rotate=rotate)
        self.base_momentum = momentum

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        p = self.predictor(self.projector(h))
        with torch.no_grad():
            z = self.target_projector(self.target_backbone(x))
        with fp32(p):
            p, z = p.float(), z.float()
            loss = (byol_loss(p[:n], z[n:]) + byol_loss(p[n:], z[:n])) / 2
        return StepOutput(loss, h[:n].detach())

    def after_step(self, step: int, total_steps: int) -> None:
        m = ema_momentum(self.base_momentum, step + 1, total_steps)
        ema_update(self.target_backbone, self.backbone, m)
        ema_update(self.target_projector, self.projector, m)
