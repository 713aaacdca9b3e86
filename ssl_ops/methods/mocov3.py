"""MoCo v3 (Chen, Xie and He, ICCV 2021): a query encoder (backbone, 3-layer projector, 2-layer predictor)
against a momentum key encoder (backbone, projector); symmetrised InfoNCE with the (gathered) batch's keys as
negatives; the key encoder's momentum rises from `momentum` to 1 on a cosine schedule."""

from __future__ import annotations

import torch

from ssl_ops.augment import TwoViews
from ssl_ops.losses import mocov3_loss
from ssl_ops.methods.base import Method, StepOutput, distributed, ema_momentum, ema_update, fp32, frozen_copy
from ssl_ops.methods.heads import mlp


class MoCoV3(Method):
    name = "mocov3"

    def __init__(self, backbone, image_size: int, temperature: float = 0.2, momentum: float = 0.99,
                 proj_dim: int = 256, hidden_dim: int = 2048, crop_scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0, crop_size: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp(backbone.out_dim, hidden_dim, proj_dim, layers=3, last_bn=True, last_bn_affine=False)
        self.predictor = mlp(proj_dim, hidden_dim, proj_dim, layers=2, last_bn=True, last_bn_affine=False)
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        self.views = TwoViews(crop_size or image_size, "byol", scale=tuple(crop_scale), hflip=hflip, rotate=rotate)
        self.temperature, self.base_momentum = temperature, momentum

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        x = torch.cat(views[:2])
        h = self.backbone(x)
        q = self.predictor(self.projector(h))
        with torch.no_grad():
            k = self.key_projector(self.key_backbone(x))
        g = distributed()
        with fp32(q):
            q, k = q.float(), k.float()
            loss = mocov3_loss(q[:n], k[n:], self.temperature, g) + mocov3_loss(q[n:], k[:n], self.temperature, g)
        return StepOutput(loss, h[:n].detach())

    def after_step(self, step: int, total_steps: int) -> None:
        m = ema_momentum(self.base_momentum, step + 1, total_steps)
        ema_update(self.key_backbone, self.backbone, m)
        ema_update(self.key_projector, self.projector, m)
