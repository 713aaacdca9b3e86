"""Learning-rate schedule as a pure function of the step: a resumed run gets the same value at the same step."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak: float, warmup_steps: int = 0, min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to `peak` over `warmup_steps` (step 0 gets peak/warmup), then a half cosine from
    `peak` to `min_lr` at `total_steps`."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_lr + (peak - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
