"""Numbers read off a probe's predictions: bootstrap intervals and per-group accuracy."""

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


def per_group_accuracy(correct: np.ndarray, groups: np.ndarray) -> dict[str, dict]:
    """{group: {"accuracy", "n"}} for each value of `groups` (missing values grouped as "")."""
    correct, groups = np.asarray(correct, dtype=np.float64), np.asarray(groups, dtype=object)
    out = {}
    for g in sorted({"" if v is None else str(v) for v in groups}):
        mask = np.array([("" if v is None else str(v)) == g for v in groups])
        out[g] = {"accuracy": float(correct[mask].mean()), "n": int(mask.sum())}
    return out


def worst_group_gap(per_group: dict[str, dict], overall: float) -> tuple[str, float]:
    """-> (the worst group, overall accuracy minus its accuracy)."""
    worst = min(per_group, key=lambda g: per_group[g]["accuracy"])
    return worst, overall - per_group[worst]["accuracy"]
