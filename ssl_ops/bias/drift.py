"""Distribution drift of a batch against a reference: PSI with a KS (numeric) or chi-square (categorical) test.

PSI (population stability index) = sum_i (a_i - e_i) * ln(a_i / e_i) over bins of shares a (actual)
and e (expected), smoothed by `eps`; ~0.1 is a small shift, > 0.25 a large one (Siddiqi, 2006).
With thousands of images, p-values are tiny for harmless shifts, so drift is flagged only when both
the effect (PSI) and the test (p-value) say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-4  # share floor for empty bins


@dataclass
class Drift:
    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    drifted: bool
    detail: dict


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = EPS) -> float:
    """PSI of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, float)
    a = np.asarray(actual, float)
    e = np.maximum(e / max(e.sum(), 1e-12), eps)
    a = np.maximum(a / max(a.sum(), 1e-12), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(name: str, reference: np.ndarray, current: np.ndarray, psi_max: float, p_min: float,
                  bins: int = 10) -> Drift:
    from scipy import stats

    ref = np.asarray(reference, float)
    cur = np.asarray(current, float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # constant reference: one bin for it, one for anything else
        edges = np.array([ref[0] - 0.5, ref[0] + 0.5])
    inner = edges[1:-1]
    e = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1)
    a = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1)
    p = psi(e, a)
    ks = stats.ks_2samp(ref, cur)
    return Drift(name, "numeric", p, "ks", float(ks.statistic), float(ks.pvalue),
                 bool(p > psi_max and ks.pvalue < p_min),
                 {"reference_median": float(np.median(ref)), "current_median": float(np.median(cur))})


def categorical_drift(name: str, reference: list, current: list, psi_max: float, p_min: float) -> Drift:
    from scipy import stats

    cats = sorted({str(v) for v in reference} | {str(v) for v in current})
    ref_c = np.array([sum(1 for v in reference if str(v) == c) for c in cats], float)
    cur_c = np.array([sum(1 for v in current if str(v) == c) for c in cats], float)
    p = psi(ref_c, cur_c)
    if len(cats) < 2:
        stat, pv = 0.0, 1.0
    else:
        table = np.stack([ref_c, cur_c])
        table = table[:, table.sum(axis=0) > 0]
        res = stats.chi2_contingency(table)
        stat, pv = float(res.statistic), float(res.pvalue)
    return Drift(name, "categorical", p, "chi2", stat, pv, bool(p > psi_max and pv < p_min),
                 {"reference_shares": dict(zip(cats, (ref_c / max(ref_c.sum(), 1)).round(4).tolist())),
                  "current_shares": dict(zip(cats, (cur_c / max(cur_c.sum(), 1)).round(4).tolist()))})
