"""MAE's reconstruction loss (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, sec. 3):
mean squared error between predicted and true pixels, on the removed patches only, with each target patch
normalised by its own mean and variance (norm_pix_loss, the paper's better setting)."""

import torch


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True,
             eps: float = 1e-6) -> torch.Tensor:
    """pred, target: [N, L, P] (L patches of P values each); mask: [N, L], 1 = removed (the loss is on these)."""
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)  # [N, L]
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
