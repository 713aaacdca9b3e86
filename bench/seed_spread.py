"""Seed-to-seed spread: the same training config trained with N seeds, each encoder probed on one fixed split of
the eval set; prints how far the probe figures move by the training seed alone (max - min, std) and how many
pairs of these equal-config encoders a paired bootstrap interval calls "significantly different".

The probe's paired interval (ssl_ops.probes.stats) resamples test rows only: it does not cover this spread.
The gate's `seed_margin` (ssl_ops.review.gate.GateConfig) must cover it; this bench is where its default comes
from.

    python bench/seed_spread.py                                 # the demo's digits, the pipeline's default training, 3 seeds
    python bench/seed_spread.py --data cifar --every 10         # CIFAR-10: every 10th train image, every 10th test image
    python bench/seed_spread.py --data pacs --every 2           # PACS (its domain column as the group)
    python bench/seed_spread.py --steps 50 --seeds 2            # a quick look

Data: "demo" is ssl_ops.demo_data (3 landing batches of digits, a labeled eval set of 599); "cifar" is CIFAR-10 from
../shared/datasets (train images as one landing batch, test images in class folders as the eval set); "pacs" is
PACS from ../shared/datasets (every n-th image, 65% as a landing batch, 35% as the labeled eval set with its
domain). Each is ingested and sharded by the pipeline's own code. The training is what `sslpipe` trains with no
train: section (the demo: its own recipe, DEMO_TRAIN), fitted to the images (ssl_ops.train.recipe.fit, with the
eval images' short sides) and the machine, with --train JSON over it; only `seed` changes between runs.
Figures go to --json as well.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import extract_cifar, extract_pacs  # noqa: E402

METRICS = ("linear", "knn20", "knn200")


# ------------------------------------------------------------------------------------------------------ data
def prepare(data: str, work: Path, every: int = 10) -> dict:
    """Landing batches ingested and sharded, the eval set ingested (the pipeline's own scan and shard code):
    -> {"indexes": [index.json], "eval_accepted": table, "eval_dir": Path, "train_images": n, "describe": str}."""
    from ssl_ops.evalset import scan_eval
    from ssl_ops.home import Home
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.shards import ShardConfig, shard_batch

    shutil.rmtree(work, ignore_errors=True)
    landing, eval_dir = work / "landing", work / "eval"
    if data == "demo":
        from ssl_ops.demo_data import write_demo

        home = Home.resolve(work / "home").ensure()
        write_demo(home)
        landing, eval_dir = Path(home.landing), home.eval_dir
        describe = "the demo's digits (ssl_ops.demo_data)"
    elif data == "cifar":
        n = extract_cifar("train", landing / "cifar-train", every)
        m = extract_cifar("test", eval_dir, every)
        describe = f"CIFAR-10: every {every}th image ({n} train, {m} test as the eval set)"
    elif data == "pacs":
        # a random 35% of them as the eval set, the rest as one landing batch
        rng = np.random.default_rng(0)
        n, m = extract_pacs(eval_dir, every, landing=landing / "pacs", to_eval=lambda i, r: rng.random() < 0.35)
        describe = f"PACS: every {every}th image ({n} to train on, {m} as the eval set with its domain)"
    else:
        raise SystemExit(f"--data must be demo, cifar or pacs, got {data!r}")
    indexes, samples = [], 0
    for batch in sorted(p for p in landing.iterdir() if p.is_dir()):
        scan = scan_batch(batch, batch.name, ImageLimits(), workers=1)
        out = work / "shards" / batch.name
        idx = shard_batch(scan.accepted, batch, out, ShardConfig(max_samples=1000))
        indexes.append(out / "index.json")
        samples += idx.samples
    accepted = scan_eval(eval_dir, ImageLimits(), workers=1).accepted
    return {"indexes": indexes, "eval_accepted": accepted, "eval_dir": eval_dir, "train_images": samples,
            "eval_images": accepted.num_rows, "describe": describe}


def default_train(data: str = "demo", overrides: dict | None = None, short_sides=None) -> dict:
    """What `sslpipe` trains on this data with no train: section (`sslpipe demo`: the demo's recipe), overrides
    on top (a length in them replaces the default's), fitted to the images' short sides and this machine."""
    from pipelines.settings import WINDOW_KEYS, train_defaults
    from ssl_ops.demo_data import DEMO_TRAIN
    from ssl_ops.train import TrainConfig
    from ssl_ops.train.recipe import fit

    section = train_defaults(overrides or {}, base=DEMO_TRAIN if data == "demo" else {})
    cfg = TrainConfig.from_dict({k: v for k, v in section.items() if k not in WINDOW_KEYS})
    fitted, _ = fit(cfg, short_sides if cfg.image_size is None else None)
    return fitted.to_dict()


def short_sides(accepted) -> list[int]:
    return [min(w, h) for w, h in zip(accepted.column("width").to_pylist(), accepted.column("height").to_pylist())]


def train_one(train_cfg: dict, indexes: list[Path], out: Path):
    """-> (TrainResult, wall seconds): ssl_ops.train as the in-process training resource runs it."""
    from ssl_ops.data import shard_urls
    from ssl_ops.train import ShardSource, TrainConfig, train

    cfg = TrainConfig.from_dict(train_cfg)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = train(cfg, ShardSource(shard_urls(indexes), cfg.image_size, cfg.batch_size, cfg.workers, cfg.seed), out)
    return res, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------------ bench
def spread(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"values": [float(x) for x in v], "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "range": float(v.max() - v.min()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo", choices=("demo", "cifar", "pacs"))
    ap.add_argument("--every", type=int, default=10, help="cifar/pacs: every n-th image")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the pipeline's default)")
    ap.add_argument("--train", default="{}", help="JSON over the pipeline's default training, e.g. '{\"width\": 8}'")
    ap.add_argument("--probe-seed", type=int, default=0, help="the probe split's seed (fixed for every training seed)")
    ap.add_argument("--draws", type=int, default=1, help="draws per label fraction below 100%%")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "seed-spread")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args(argv)
    if a.seeds < 2:
        raise SystemExit("--seeds must be at least 2 to measure a spread")
    from ssl_ops.probes.evalset import load_eval_arrays
    from ssl_ops.probes.report import probe_report
    from ssl_ops.probes.stats import paired_bootstrap_ci
    from ssl_ops.train import load_encoder

    overrides = json.loads(a.train)
    if a.steps is not None:
        overrides["steps"] = a.steps
    t0 = time.perf_counter()
    d = prepare(a.data, a.work / "data", a.every)
    print(f"data: {d['describe']}: {d['train_images']} training images sharded, {d['eval_images']} eval images "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    base = default_train(a.data, overrides, short_sides(d["eval_accepted"]))
    print(f"training: {json.dumps({k: v for k, v in base.items() if k != 'seed'})}", flush=True)
    data = load_eval_arrays(d["eval_accepted"], d["eval_dir"], int(base["image_size"]))
    runs = []
    for seed in range(a.seeds):
        res, wall = train_one({**base, "seed": seed}, d["indexes"], a.work / f"seed{seed}")
        encoder, meta = load_encoder(res.encoder_path)
        rep = probe_report(encoder, meta, data, seed=a.probe_seed, draws=a.draws)
        m = rep["model"]
        runs.append({"seed": seed, "train_s": wall, "final_loss": res.final_loss, "correct": m["correct"],
                     **{k: m[k] for k in METRICS}, "linear_at_10pct": m["label_fractions"].get("0.1", {}).get("mean")})
        print(f"  seed {seed}: " + ", ".join(f"{k} {100 * m[k]:.1f}%" for k in METRICS)
              + f" (trained {res.steps} steps in {wall:.0f} s, final loss {res.final_loss:.3f})", flush=True)
    result = {"data": a.data, "describe": d["describe"], "train": base, "seeds": a.seeds,
              "n_test": rep["split"]["n_test"], "probe_seed": a.probe_seed, "metrics": {}, "pairs": {}}
    print(f"\nspread over {a.seeds} training seeds (probe split seed {a.probe_seed}, {result['n_test']} test images), "
          f"accuracy points:")
    for k in METRICS:
        s = spread([r[k] for r in runs])
        pairs = []
        for x, y in itertools.combinations(runs, 2):
            lo, hi = paired_bootstrap_ci(x["correct"][k], y["correct"][k])
            pairs.append({"seeds": [x["seed"], y["seed"]], "delta": x[k] - y[k], "ci": [lo, hi],
                          "excludes_0": bool(lo > 0 or hi < 0)})
        result["metrics"][k], result["pairs"][k] = s, pairs
        print(f"  {k:<8} mean {100 * s['mean']:.1f}  max-min {100 * s['range']:.1f}  std {100 * s['std']:.1f}  "
              f"(pairs whose paired 95% interval excludes 0: {sum(p['excludes_0'] for p in pairs)} of {len(pairs)}; "
              f"widest |difference| {100 * max(abs(p['delta']) for p in pairs):.1f})")
    worst = max(result["metrics"][k]["range"] for k in METRICS)
    result["largest_range"] = worst
    result["runs"] = [{k: v for k, v in r.items() if k != "correct"} for r in runs]
    print(f"\nlargest max-min over {', '.join(METRICS)}: {100 * worst:.1f} points; the gate's seed_margin should be at "
          f"least this (ssl_ops.review.gate.GateConfig)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
