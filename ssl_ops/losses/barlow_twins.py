"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021,
eq. 1): the cross-correlation C of the batch-standardised embeddings of two views should be the identity:
loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2."""

import torch


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """z1, z2: [N, D] projections of two views -> scalar."""
    n = z1.shape[0]
    a = (z1 - z1.mean(0)) / z1.std(0, unbiased=False).clamp_min(1e-6)
    b = (z2 - z2.mean(0)) / z2.std(0, unbiased=False).clamp_min(1e-6)
    c = a.T @ b / n  # [D, D]
    on = (1 - torch.diagonal(c)).pow(2).sum()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on + lambd * off
