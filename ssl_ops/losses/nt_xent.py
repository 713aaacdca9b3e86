"""NT-Xent, the SimCLR loss (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, eq. 1).

For each of the 2N projections, the positive is the other view of the same image and the negatives are
the other 2N-2 projections (2*world*N - 2 with `gather`): loss_i = -log(exp(s_ip / t) / sum_{k != i} exp(s_ik / t)),
with s the cosine similarity, averaged over all 2N anchors.
"""

import torch
import torch.nn.functional as F

from ssl_ops.losses.gather import gather as all_gather


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2, gather: bool = False) -> torch.Tensor:
    """z1, z2: [N, D] projections of two views of the same N images -> scalar loss."""
    n = z1.shape[0]
    local = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]: rows i and i+N are a positive pair
    if gather:
        a, off = all_gather(F.normalize(z1, dim=1))
        b, _ = all_gather(F.normalize(z2, dim=1))
        keys = torch.cat([a, b])  # [2*W*N, D]: W*N first views, then W*N second views
        wn = a.shape[0]
        pos = torch.cat([torch.arange(n) + off + wn, torch.arange(n) + off]).to(z1.device)
        self_idx = torch.cat([torch.arange(n) + off, torch.arange(n) + off + wn]).to(z1.device)
    else:
        keys = local
        pos = torch.cat([torch.arange(n) + n, torch.arange(n)]).to(z1.device)
        self_idx = torch.arange(2 * n, device=z1.device)
    logits = local @ keys.T / temperature  # [2N, K]
    logits = logits.masked_fill(F.one_hot(self_idx, keys.shape[0]).bool(), float("-inf"))
    return F.cross_entropy(logits, pos)
