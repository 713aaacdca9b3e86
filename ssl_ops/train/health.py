"""Health of an embedding space, from a batch of embeddings [N, D].

- embedding_std: the std over the batch of L2-normalised embeddings, averaged over dimensions, times
  sqrt(D) (Grill/Chen's collapse monitor, scaled so that isotropic embeddings give about 1 and a collapse
  to one point gives 0).
- effective_rank: RankMe (Garrido et al., ICML 2023): exp of the entropy of the normalised singular values;
  between 1 (everything on one line) and min(N, D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    z = F.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean()) * math.sqrt(z.shape[1])


@torch.no_grad()
def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    s = torch.linalg.svdvals(z.float())
    p = s / (s.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))
