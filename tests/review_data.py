"""Real probe reports and bias reports for the review tests, with hostile strings where the data puts strings.

Probe tables come from ssl_ops.probes.probe_features on Gaussian blobs (every figure, interval and per-row 0/1
array is a real probe's); bias reports from ssl_ops.bias's own functions (group_shares, numeric_drift,
near_duplicates) serialised with BiasReport.to_dict, exactly as bias_report writes reports/<batch>/bias.json."""

from __future__ import annotations

import numpy as np

from ssl_ops.bias.drift import numeric_drift
from ssl_ops.bias.near_duplicates import near_duplicates
from ssl_ops.bias.report import BiasReport
from ssl_ops.bias.representation import group_shares
from ssl_ops.probes import probe_features, probe_split

SCRIPT = "<script>alert(1)</script>"
ANSI = "\x1b[31mred\x1b[0m"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE_GROUP_VALUES = [SCRIPT, ANSI, "plain"]
HOSTILE_BATCH = "b3" + IMG + "\x1b[2J"  # a folder name may hold all of this (no '/')
HEALTHY = {"embedding_std": 0.8, "effective_rank": 30.0, "uniformity": -2.0, "alignment": 0.4}


def blobs(spread: float, n: int = 120, d: int = 16, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    centres = np.random.default_rng(99).normal(size=(classes, d)) * 3
    return centres[y] + rng.normal(size=(n, d)) * spread, y


def groups_for(y) -> dict[str, np.ndarray]:
    return {"domain" + ANSI: np.array([HOSTILE_GROUP_VALUES[i % 3] for i in range(len(y))], dtype=object)}


def table(spread: float, seed: int = 0) -> dict:
    x, y = blobs(spread, seed=seed)
    return probe_features(x, y, probe_split(y, 0.3, 0), groups=groups_for(y), draws=2, fractions=(0.1, 1.0))


def probe_report(model: dict, raw: dict, rnd: dict, champion: dict | None = None,
                 champion_version: str | None = None) -> dict:
    """The shape of evaluation/probe_report.json (ssl_ops.probes.report.probe_report, less the projection, plus
    the probe_report asset's champion_version)."""
    r = {"model": model, "raw_pixels": raw, "random_init": rnd, "health": dict(HEALTHY), "classes": list("abcd"),
         "split": {"seed": 0, "test_fraction": 0.3, "n_train": model["n_train"], "n_test": model["n_test"]}, "primary_metric": "linear",
         "champion_version": champion_version}
    if champion is not None:
        r["champion"] = champion
    return r


def bias_json(batch: str) -> dict:
    """A real BiasReport of a small batch: an under-represented hostile group value, drift in brightness, one
    near-duplicate cluster and one near copy of an earlier batch."""
    rng = np.random.default_rng(1)
    values = [SCRIPT] * 2 + [ANSI] * 8 + ["plain"] * 30
    groups = [group_shares("domain" + ANSI, values, 0.1, expected=(SCRIPT, ANSI, "plain"))]
    drift = [numeric_drift("brightness", rng.normal(100, 10, 200), rng.normal(160, 10, 40), 0.2, 0.01)]
    hashes = np.array([0, 1, 2 ** 40, 2 ** 50 + 7] + [int(h) for h in rng.integers(1, 2 ** 62, 36)], dtype=np.uint64)
    paths = [f"{IMG}{i}.png" for i in range(40)]
    nd = near_duplicates(paths, hashes, 4, 0.01, ref_names=[f"b1/{SCRIPT}.png"],
                         ref_hashes=np.array([2 ** 40 + 1], dtype=np.uint64))
    return BiasReport(batch, 40, ["b1", "b2"], 120, groups, [], drift, nd, notes=[f"note with {SCRIPT}"]).to_dict()
