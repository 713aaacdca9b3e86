"""VICReg (Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022, eqs. 1-6).

invariance: mean squared error between the two embeddings; variance: mean over dimensions of
relu(1 - sqrt(var + eps)), per branch; covariance: sum of squared off-diagonal covariances / D, per branch.
loss = sim * invariance + var * (v(z1) + v(z2)) + cov * (c(z1) + c(z2)); the paper's defaults 25, 25, 1.
"""

import torch
import torch.nn.functional as F


def _variance(z: torch.Tensor, eps: float) -> torch.Tensor:
    return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / d


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """z1, z2: [N, D] expander outputs of two views -> scalar."""
    inv = F.mse_loss(z1, z2)
    var = _variance(z1, eps) + _variance(z2, eps)
    cov = _covariance(z1) + _covariance(z2)
    return sim_weight * inv + var_weight * var + cov_weight * cov
