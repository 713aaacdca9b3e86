"""What every method is: a backbone plus heads, a loss and the views its paper trains on.

    method = build_method("simclr", backbone, image_size=32)
    views = method.views(images_uint8)          # outside autocast, on the training device
    out = method(views)                          # (under DDP, the wrapped module's forward)
    out.loss.backward(); opt.step(); method.after_step(step, total_steps)
    method.backbone                              # the encoder that is exported

`forward` returns the loss and the backbone features of the first view (for health metrics). Methods with
an EMA teacher update it in `after_step`, with the momentum of `ema_momentum`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar
    features: torch.Tensor  # [N, D] backbone features of the first view, detached


class Method(nn.Module):
    """Base class. Subclasses set `self.backbone` (the encoder, with `out_dim`), `self.views` (a module:
    uint8 images -> list of normalised float views) and implement forward(views) -> StepOutput."""

    name = "method"
    backbone: nn.Module
    views: nn.Module

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (0-based)."""


class fp32:
    """Inside a method's forward: compute a loss in float32 even under bf16 autocast (autocast would cast a
    matmul's inputs back to bf16; the losses' exponentials, temperatures and correlations need fp32).

        with fp32(z):
            loss = vicreg_loss(z1.float(), z2.float())
    """

    def __init__(self, like: torch.Tensor):
        self.ctx = torch.autocast(like.device.type, enabled=False)

    def __enter__(self):
        return self.ctx.__enter__()

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def ema_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule: 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, rising from base to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameters and buffers (BN statistics copied)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def frozen_copy(module: nn.Module) -> nn.Module:
    import copy

    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
