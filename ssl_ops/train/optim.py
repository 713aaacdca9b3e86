"""Optimisers: AdamW, SGD and LARS (You et al., "Large Batch Training of Convolutional Networks", 2017, as
SimCLR and BYOL use it). Biases and normalisation parameters get no weight decay and no LARS adaptation."""

from __future__ import annotations

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by the trust ratio eta * |w| / (|g| + wd * |w|).
    Parameter groups with `lars=False` (biases, norms) take plain SGD steps without weight decay."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if g["lars"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), g["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    d = d.mul(trust)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"].mul_(g["momentum"]).add_(d)
                p.add_(mu, alpha=-g["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of layers (decayed, LARS-adapted) and 1-D parameters (biases, norms, tokens)."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else plain).append(p)
    return [dict(params=decay, weight_decay=weight_decay, lars=True),
            dict(params=plain, weight_decay=0.0, lars=False)]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "lars":
        return LARS(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose adamw, lars or sgd")
