"""Alignment and uniformity of an embedding (Wang and Isola, "Understanding Contrastive Representation Learning
through Alignment and Uniformity on the Hypersphere", ICML 2020), on L2-normalised embeddings.

- alignment: E ||f(x) - f(x+)||^alpha over positive pairs (two views of one image); lower is better.
- uniformity: log E exp(-t ||f(x) - f(y)||^2) over all pairs; lower (more negative) is better.
The embedding std and effective rank are in ssl_ops.train.health.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


@torch.no_grad()
def uniformity(z: torch.Tensor, t: float = 2.0, max_n: int = 4096) -> float:
    z = F.normalize(z[:max_n].float(), dim=1)
    sq = torch.pdist(z).pow(2)
    return float(sq.mul(-t).exp().mean().log())
