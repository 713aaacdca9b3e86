"""Projection heads, predictors and DINO's head.

    mlp(512, 2048, 128, layers=2)   # Linear-BN-ReLU, then Linear: SimCLR's projector
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, last_bn: bool = False,
        last_bn_affine: bool = True) -> nn.Sequential:
    """`layers` linear layers; every one but the last followed by BatchNorm1d and ReLU. last_bn adds a
    BatchNorm1d after the last (MoCo v3's projector, without affine parameters)."""
    if layers < 1:
        raise ValueError(f"a head needs at least one layer, got {layers}")
    mods: list[nn.Module] = []
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    for i in range(layers):
        last = i == layers - 1
        mods.append(nn.Linear(dims[i], dims[i + 1], bias=not (last and last_bn) and last))
        if not last:
            mods += [nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
        elif last_bn:
            mods.append(nn.BatchNorm1d(dims[i + 1], affine=last_bn_affine))
    return nn.Sequential(*mods)


class DINOHead(nn.Module):
    """DINO's head (Caron et al. 2021, sec. 3.1): a 3-layer MLP (GELU; BN optional, as DINO's use_bn_in_head)
    to a bottleneck, L2-normalised,
    then a weight-normalised linear layer to `out_dim` prototypes whose norm is fixed to 1."""

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden: int = 2048, bottleneck: int = 256,
                 use_bn: bool = False):
        super().__init__()
        norm = (lambda: nn.BatchNorm1d(hidden)) if use_bn else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), norm(), nn.GELU(), nn.Linear(hidden, hidden), norm(),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return x @ F.normalize(self.prototypes, dim=-1).T
