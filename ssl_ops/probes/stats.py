"""Numbers read off a probe's predictions: bootstrap intervals and per-group accuracy.

What the intervals cover: the test rows are resampled (which eval images happened to be in the test split), with
the encoder, the probe and its training rows held fixed. They do not cover training-seed variance (the same
config trained again with another seed scores differently): bench/seed_spread.py measures that, and the gate's
`seed_margin` (ssl_ops.review.gate) covers it."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(correct: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a 0/1 vector (accuracy)."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, size=(n_boot, correct.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b) for two 0/1 vectors over the same test rows
    (the rows are resampled together, so what both get right or wrong cancels)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b.shape}; were they probed on the same split?")
    if a.size == 0:
        return (float("nan"), float("nan"))
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    q = (1 - level) / 2
    return float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def group_key(v) -> str:
    """A group value as the probes name it: missing values (None) are ""."""
    return "" if v is None else str(v)


def per_group_paired_ci(a: np.ndarray, b: np.ndarray, groups, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> dict[str, dict]:
    """{group: {"n", "delta", "ci"}}: for each group's test rows, mean(a) - mean(b) of two 0/1 vectors over the
    same rows and its paired percentile bootstrap interval (the group's rows resampled)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keys = np.array([group_key(v) for v in groups], dtype=object)
    if not (a.shape == b.shape == keys.shape):
        raise ValueError(f"paired vectors and groups differ in length: {a.shape}, {b.shape}, {keys.shape}; "
                         "were they probed on the same split?")
    out = {}
    for g in sorted(set(keys.tolist())):
        m = keys == g
        lo, hi = paired_bootstrap_ci(a[m], b[m], n_boot=n_boot, level=level, seed=seed)
        out[g] = {"n": int(m.sum()), "delta": float(a[m].mean() - b[m].mean()), "ci": [lo, hi]}
    return out


def per_group_accuracy(correct: np.ndarray, groups: np.ndarray) -> dict[str, dict]:
    """{group: {"accuracy", "n"}} for each value of `groups` (missing values grouped as "")."""
    correct, groups = np.asarray(correct, dtype=np.float64), np.asarray(groups, dtype=object)
    out = {}
    keys = np.array([group_key(v) for v in groups], dtype=object)
    for g in sorted(set(keys.tolist())):
        mask = keys == g
        out[g] = {"accuracy": float(correct[mask].mean()), "n": int(mask.sum())}
    return out


def worst_group_gap(per_group: dict[str, dict], overall: float) -> tuple[str, float]:
    """-> (the worst group, overall accuracy minus its accuracy). The worst-group gap: how many points the probe's
    accuracy on the group it gets least right falls below its accuracy on all test images."""
    worst = min(per_group, key=lambda g: per_group[g]["accuracy"])
    return worst, overall - per_group[worst]["accuracy"]
