"""BYOL's regression loss (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, eq. 2):
2 - 2 * cos(p, z), the mean squared error of L2-normalised online predictions p and target projections z
(z carries no gradient: the target network is an EMA of the online one)."""

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """p: [N, D] online predictions, z: [N, D] target projections -> scalar (mean over N)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()
