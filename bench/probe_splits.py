"""How much does the gate's first-model decision depend on the probe split? Probes the latest trained encoder
of a home (e.g. the demo's) against raw pixels on several seeded probe splits and prints the linear-probe
accuracy of each, their difference (points and test images) and kNN k=20 beside it.

    .venv/bin/sslpipe demo && .venv/bin/python bench/probe_splits.py --home .sslpipe --seeds 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ssl_ops.features import extract_features
from ssl_ops.home import EVAL_BATCH, Home
from ssl_ops.manifest import read_manifest
from ssl_ops.probes.evalset import load_eval_arrays
from ssl_ops.probes.evaluate import probe_features
from ssl_ops.probes.report import images_at_size, raw_pixel_features
from ssl_ops.probes.split import probe_split
from ssl_ops.train import load_encoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", default=".sslpipe")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    a = ap.parse_args()
    home = Home.resolve(a.home)
    found = sorted(Path(home.root, "models").glob("*/encoder.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no trained encoder under {home.root}/models: run `sslpipe demo` (or `sslpipe run`) first")
    encoder, meta = load_encoder(found[-1])
    size = meta["image_size"]
    data = load_eval_arrays(read_manifest(home.accepted_path(EVAL_BATCH)), home.eval_dir, size)
    images = images_at_size(data.images, size)
    feats = {"model": extract_features(encoder, images, size), "raw": raw_pixel_features(images)}
    print(f"encoder {found[-1].parent.name} ({meta['method']}, {meta['backbone']}); {len(data.labels)} eval images; "
          f"test fraction {a.test_fraction}\n")
    print("| split seed | test images | linear model | linear raw | difference | kNN k=20 model | kNN k=20 raw |")
    print("|---|---|---|---|---|---|---|")
    diffs = []
    for seed in range(a.seeds):
        split = probe_split(data.labels, a.test_fraction, seed)
        t = {k: probe_features(f, data.labels, split, fractions=(1.0,), seed=seed) for k, f in feats.items()}
        d = t["model"]["linear"] - t["raw"]["linear"]
        diffs.append(d)
        n = len(split[1])
        m, r = t["model"], t["raw"]
        print(f"| {seed} | {n} | {100 * m['linear']:.1f} | {100 * r['linear']:.1f} | {100 * d:+.1f} "
              f"({round(d * n):+d} images) | {100 * m['knn20']:.1f} | {100 * r['knn20']:.1f} |")
    print(f"\nlinear probe, model minus raw pixels: mean {100 * np.mean(diffs):+.1f} points, "
          f"range {100 * min(diffs):+.1f} to {100 * max(diffs):+.1f}; model ahead on {sum(d > 0 for d in diffs)} "
          f"of {len(diffs)} splits")


if __name__ == "__main__":
    main()
