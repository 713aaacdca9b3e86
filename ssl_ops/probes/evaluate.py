"""The probe table of one set of frozen features on a fixed split of a labeled eval set.

    table = probe_features(feats, labels, groups={"domain": domains}, split=probe_split(labels, 0.3, 0))

- kNN (cosine, temperature-weighted votes, T=0.1) at k=20 and k=200, trained on the split's train part;
- the linear probe (standardised features, C chosen on held-out training rows);
- accuracy with fractions of the probe's training labels (1%, 10%, 100%), several seeded draws for the
  fractions below 1: mean and std;
- per-group accuracy of the linear probe and the worst-group gap (its accuracy on all test rows minus that on
  the group it gets least right), for each group column, with each test row's group (`test_values`, in the
  split's test order) so that two encoders can be compared group by group (stats.per_group_paired_ci);
- 95% bootstrap intervals of the headline accuracies;
- `correct`: which test rows each probe got right (0/1, in the split's test order), so that two encoders
  probed on the same split can be compared pairwise (ssl_ops.probes.stats.paired_bootstrap_ci).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ssl_ops.knn import knn_predict
from ssl_ops.probes.linear import linear_probe
from ssl_ops.probes.split import label_subset
from ssl_ops.probes.stats import bootstrap_ci, group_key, per_group_accuracy, worst_group_gap

FRACTIONS = (0.01, 0.1, 1.0)


def probe_features(features: torch.Tensor | np.ndarray, labels: np.ndarray, split: tuple[np.ndarray, np.ndarray],
                   groups: dict[str, np.ndarray] | None = None, fractions=FRACTIONS, draws: int = 3,
                   ks=(20, 200), temperature: float = 0.1, seed: int = 0, progress=None, name: str = "features") -> dict:
    """progress: called with one line per stage (kNN, linear probe, each label fraction), each with its time."""
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32))
    labels = np.asarray(labels)
    tr, te = split
    n_classes = int(labels.max()) + 1
    y_tr, y_te = labels[tr], labels[te]
    out: dict = {"n_train": int(len(tr)), "n_test": int(len(te)), "dim": int(feats.shape[1]), "correct": {}}

    for k in ks:
        pred = knn_predict(feats[tr], torch.as_tensor(y_tr), feats[te], n_classes, k=k, temperature=temperature).numpy()
        correct = pred == y_te
        out[f"knn{k}"] = float(correct.mean())
        out[f"knn{k}_ci"] = bootstrap_ci(correct, seed=seed)
        out["correct"][f"knn{k}"] = correct.astype(int).tolist()
    say(f"{name}: kNN k={', '.join(map(str, ks))} on {len(tr)} train / {len(te)} test rows: "
        + ", ".join(f"{100 * out[f'knn{k}']:.1f}%" for k in ks) + f" ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    lin = linear_probe(feats[tr].numpy(), y_tr, feats[te].numpy(), y_te, seed=seed)
    correct = lin.predictions == y_te
    out["linear"] = lin.accuracy
    out["linear_ci"] = bootstrap_ci(correct, seed=seed)
    out["linear_C"] = lin.C
    out["correct"]["linear"] = correct.astype(int).tolist()
    say(f"{name}: linear probe {100 * lin.accuracy:.1f}% (C = {lin.C:g}, chosen on held-out training rows) "
        f"({time.perf_counter() - t0:.1f} s)")

    curve = {}
    for f in fractions:
        if f >= 1:
            curve[str(f)] = {"mean": lin.accuracy, "std": 0.0, "draws": 1, "labels": int(len(tr))}
            continue
        accs, n, t0 = [], 0, time.perf_counter()
        for d in range(draws):
            sub = label_subset(tr, labels, f, seed=seed + 1000 * d + 1)
            n = len(sub)
            accs.append(linear_probe(feats[sub].numpy(), labels[sub], feats[te].numpy(), y_te, seed=seed).accuracy)
        curve[str(f)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "draws": draws, "labels": int(n)}
        say(f"{name}: linear probe with {100 * f:g}% of the labels ({n} images, {draws} draws): "
            f"{100 * curve[str(f)]['mean']:.1f}% ({time.perf_counter() - t0:.1f} s)")
    out["label_fractions"] = curve

    out["groups"] = {}
    for col, values in (groups or {}).items():
        test_values = np.asarray(values, dtype=object)[te]
        per = per_group_accuracy(correct, test_values)
        worst, gap = worst_group_gap(per, lin.accuracy)
        out["groups"][col] = {"per_group": per, "worst_group": worst, "worst_group_gap": gap,
                              "test_values": [group_key(v) for v in test_values]}
    return out
