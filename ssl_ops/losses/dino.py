"""DINO's self-distillation loss (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, eq. 3 and its centering).

The teacher's outputs on the global views are centred and sharpened, softmax((t - c) / t_temp); the
student's outputs on every view are log_softmax(s / s_temp); the loss is the cross-entropy between each
teacher view and each student view that is not the same view, averaged over those pairs.
The centre c is an EMA of the teacher's batch mean (update_center), which prevents collapse to one dimension.
"""

import torch
import torch.nn.functional as F


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """student: V tensors [N, K] (the global views first, then the local ones); teacher: G tensors [N, K]
    for the G global views (G <= V); center: [1, K] -> scalar."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    logps = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    total, pairs = 0.0, 0
    for ti, t in enumerate(targets):
        for si, lp in enumerate(logps):
            if si == ti:
                continue  # the student does not predict the teacher on the very same view
            total = total + (-(t * lp).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """New centre: momentum * center + (1 - momentum) * mean of the teacher outputs ([1, K])."""
    batch_mean = torch.cat(teacher).mean(dim=0, keepdim=True)
    return center * momentum + batch_mean * (1 - momentum)
