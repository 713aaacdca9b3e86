"""Training for a wall-clock budget: the step count that makes the schedule end on time.

    total = steps_for_budget(budget_s=600, elapsed_s=14.2, steps_done=11, step_s=0.31, reserve_s=8.0)

The training loop (ssl_ops.train.loop) times its first CALIBRATION_STEPS steps after the first (which pays for
worker start-up and compilation) and sets a first total, then sets it again every REFIT_STEPS steps, until the
last 2 * REFIT_STEPS, from the mean step time over the later half of the steps since that first fit, so that the
cosine schedule reaches its end when the budget does. In measured CPU runs the first steps ran at under half
the later speed while another process briefly held the CPU (a total fitted on them alone ended a 4-minute
budget after 1.8 minutes), a total fitted once on steps 11-50 ended a 15-minute budget after 12.6 minutes
(later steps ran 13% faster), and one fitted on every step since the first fit, until half of the run, ended it
after 15.2 minutes (the speed drifted after that). The total is saved in the checkpoint, so a resumed run keeps
it. What is not training but happens within the budget (the probes in step with it) is set aside as `reserve_s`.
bench/time_to_accuracy.py trains through the same loop with train.budget_minutes: one implementation.
"""

from __future__ import annotations

CALIBRATION_STEPS = 10  # timed steps before the first total
REFIT_STEPS = 40  # steps between fits of the total after the first (the first refit: a quarter of the steps the
#                   first total leaves, when that is fewer), until the last 2 * REFIT_STEPS
SAFETY = 0.97  # share of the remaining time planned for: steps/s drifts a little after calibration


def steps_for_budget(budget_s: float, elapsed_s: float, steps_done: int, step_s: float,
                     reserve_s: float = 0.0) -> int:
    """-> the total step count (at least steps_done + 1): the steps done plus as many as fit into the time left
    (budget - elapsed - reserve) at step_s seconds each."""
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    left = (budget_s - elapsed_s - reserve_s) * SAFETY
    return steps_done + max(1, int(left / step_s))
