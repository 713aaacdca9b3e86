"""MoCo v3's contrastive loss (Chen, Xie and He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021, Alg. 1): InfoNCE between queries q and momentum-encoder keys k of the other
view; the positive of q_i is k_i, the negatives are the other keys in the (gathered) batch; scaled by 2t."""

import torch
import torch.nn.functional as F

from ssl_ops.losses.gather import gather as all_gather


def mocov3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, gather: bool = False) -> torch.Tensor:
    """q: [N, D] predictions of one view, k: [N, D] momentum keys of the other view -> scalar."""
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    keys, off = all_gather(k) if gather else (k, 0)
    logits = q @ keys.T / temperature  # [N, W*N]
    labels = torch.arange(q.shape[0], device=q.device) + off
    return F.cross_entropy(logits, labels) * (2 * temperature)
