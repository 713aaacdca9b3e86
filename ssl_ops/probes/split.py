"""Fixed, seeded splits of a labeled eval set: the probe's train/test split and label-fraction subsets.

    train_idx, test_idx = probe_split(labels, test_fraction=0.3, seed=0)
    few = label_subset(train_idx, labels, fraction=0.01, seed=2)   # 1% of the probe's training labels

Both are stratified by label, so every class keeps its share; a subset keeps at least one example per class.
"""

from __future__ import annotations

import numpy as np


def probe_split(labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (train indices, test indices), sorted; each class split in the same proportion."""
    labels = np.asarray(labels)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)  # both sides see every class that has 2+ examples
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def label_subset(train_idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified `fraction` of train_idx (at least one per class), sorted."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.sort(np.asarray(train_idx))
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels[train_idx]):
        idx = np.asarray(train_idx)[labels[train_idx] == c]
        k = max(1, int(round(len(idx) * fraction)))
        out.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(out))
