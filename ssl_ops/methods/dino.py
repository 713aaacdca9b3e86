"""DINO (Caron et al., ICCV 2021): a student on every multi-crop view predicts an EMA teacher's centred,
sharpened output on the global views; the centre is an EMA of the teacher's (all-reduced) batch mean."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ssl_ops.augment import MultiCrop
from ssl_ops.losses import dino_loss
from ssl_ops.methods.base import Method, StepOutput, distributed, ema_momentum, ema_update, fp32, frozen_copy
from ssl_ops.methods.heads import DINOHead


class DINO(Method):
    name = "dino"

    def __init__(self, backbone, image_size: int, out_dim: int = 4096, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, local_crops: int = 4, local_size: int | None = None,
                 student_temp: float = 0.1, teacher_temp: float = 0.04, center_momentum: float = 0.9,
                 momentum: float = 0.996, use_bn_in_head: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = DINOHead(backbone.out_dim, out_dim, hidden_dim, bottleneck_dim, use_bn_in_head)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        local_size = local_size or max(8, image_size // 2)
        patch = getattr(backbone, "patch_size", 1)
        if local_size % patch:
            raise ValueError(f"DINO local_size {local_size} must be a multiple of the ViT patch size {patch}")
        self.views = MultiCrop(image_size, local_size, local_crops)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.base_momentum = center_momentum, momentum

    def forward(self, views: list[torch.Tensor]) -> StepOutput:
        n = views[0].shape[0]
        g = torch.cat(views[:2])
        h_global = self.backbone(g)
        student = list(self.head(h_global).split(n))
        if len(views) > 2:
            student += list(self.head(self.backbone(torch.cat(views[2:]))).split(n))
        with torch.no_grad():
            teacher = list(self.teacher_head(self.teacher_backbone(g)).split(n))
        with fp32(h_global):
            student, teacher = [s.float() for s in student], [t.float() for t in teacher]
            loss = dino_loss(student, teacher, self.center, self.student_temp, self.teacher_temp)
        if self.training:
            self._update_center(teacher)
        return StepOutput(loss, h_global[:n].detach())

    @torch.no_grad()
    def _update_center(self, teacher: list[torch.Tensor]) -> None:
        batch_mean = torch.cat(teacher).float().mean(dim=0, keepdim=True)
        if distributed():
            dist.all_reduce(batch_mean)
            batch_mean /= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_mean, alpha=1 - self.center_momentum)

    def after_step(self, step: int, total_steps: int) -> None:
        m = ema_momentum(self.base_momentum, step + 1, total_steps)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_head, self.head, m)
