"""A user's first run with no config at all: real images as one landing batch, a labelled part of them as the eval
set, `sslpipe run` with no `--config` (so the training is TrainConfig's defaults fitted to the images: the default
budget, size and width by device), then the figures that say whether the default is worth having: the new model
against raw pixels and random init, linear probe and 10% labels, from the run's own probe report; and the wall
times of `ssl_encoder` and `probe_report` from the run's own Dagster steps (the probes' share of the training).

    .venv/bin/python bench/no_config.py --data pacs                 # PACS: 80% landing (domain in metadata.csv), 20% eval
    .venv/bin/python bench/no_config.py --data cifar --every 5      # every 5th CIFAR-10 train image; every 5th test image
    .venv/bin/python bench/no_config.py --data pacs --home .sslpipe # into a project's default home, as a user would

The split of PACS is by a hash of each path (sha256 % 5 == 0: eval), so it is the same on every machine. Exit
status 0 when the model beats both baselines on both figures, 3 when it does not, 1 when the run failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import extract_cifar, extract_pacs  # noqa: E402
BASELINES = ("raw_pixels", "random_init")


def split_pacs(home: Path) -> str:
    """80% of PACS (by sha256 of the path) as landing/pacs-001 with `domain` in metadata.csv; 20% as eval/ with
    labels.csv (path,label,domain)."""
    n_land, n_eval = extract_pacs(home / "eval", landing=home / "landing" / "pacs-001", landing_metadata=True,
                                  to_eval=lambda i, r: int(hashlib.sha256(r["path"].encode()).hexdigest(), 16) % 5 == 0)
    return f"PACS: {n_land:,} images in landing/pacs-001 (domain in metadata.csv), {n_eval:,} labelled in eval/"


def split_cifar(home: Path, every: int) -> str:
    """Every n-th CIFAR-10 train image as landing/cifar-001 (class folders, no labels used); every n-th test image
    as eval/<class>/."""
    n_train = extract_cifar("train", home / "landing" / "cifar-001", every)
    n_test = extract_cifar("test", home / "eval", every)
    return (f"CIFAR-10: every {every}th image: {n_train:,} train images in landing/cifar-001, "
            f"{n_test:,} test images in eval/")


def step_seconds(home: Path) -> dict[str, float]:
    """Wall seconds of the ssl_encoder and probe_report steps of the home's latest runs (Dagster's step stats)."""
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    import dagster as dg

    instance = dg.DagsterInstance.get()
    out = {}
    for rec in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])):
        for st in instance.get_run_step_stats(rec.dagster_run.run_id):
            key = st.step_key.split("[")[0]
            if key in ("ssl_encoder", "probe_report") and key not in out and st.end_time and st.start_time:
                out[key] = st.end_time - st.start_time
    return out


def training(home: Path) -> dict:
    """The fitted training config and its result (steps, images/s, the probe curve) of the home's latest model."""
    found = sorted(home.glob("models/*/result.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return {}
    cfg_path = found[-1].parent / "config.json"
    res = json.loads(found[-1].read_text())
    keep = ("steps", "images_per_s", "wall_s", "probe_curve", "kept_step", "budget_minutes")
    return {"config": json.loads(cfg_path.read_text()) if cfg_path.is_file() else None,
            **{k: res.get(k) for k in keep}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=("pacs", "cifar"), required=True)
    ap.add_argument("--every", type=int, default=5, help="CIFAR-10: every n-th image of each split")
    ap.add_argument("--home", type=Path, default=None, help="the sslpipe home (default .bench/no-config-<data>, "
                                                            "emptied first; an existing home must be empty)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    home = (a.home or ROOT / ".bench" / f"no-config-{a.data}").resolve()
    if a.home is None:
        shutil.rmtree(home, ignore_errors=True)
    elif home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} is not empty: give a new or empty folder as --home")
    home.mkdir(parents=True, exist_ok=True)
    described = split_pacs(home) if a.data == "pacs" else split_cifar(home, a.every)
    for batch in (home / "landing").iterdir():  # complete: taken now rather than after the quiet period
        (batch / "_READY").touch()
    print(described, flush=True)
    sslpipe = Path(sys.executable).with_name("sslpipe")
    cmd = [str(sslpipe), "run"]
    env = {**os.environ, "SSLPIPE_HOME": str(home)}
    print(f"$ SSLPIPE_HOME={home} {' '.join(cmd)}", flush=True)
    t0 = time.time()
    rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    wall = time.time() - t0
    if rc not in (0, 3):
        print(f"sslpipe run exited {rc}", file=sys.stderr)
        return 1
    reports = sorted(home.glob("models/*/probe/*.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        print("no probe report was written", file=sys.stderr)
        return 1
    report = json.loads(reports[-1].read_text())
    steps = step_seconds(home)
    figures = {}
    for name in ("model",) + BASELINES:
        t = report[name]
        figures[name] = {"knn20": t["knn20"], "linear": t["linear"], "linear_ci": t["linear_ci"],
                         "linear@0.1": t["label_fractions"]["0.1"]["mean"]}
    beats = {f"{metric} vs {b}": figures["model"][metric] > figures[b][metric]
             for metric in ("linear", "linear@0.1") for b in BASELINES}
    out = {"data": a.data, "described": described, "wall_s": wall, "steps_s": steps,
           "probe_share_of_training": steps["probe_report"] / steps["ssl_encoder"]
           if {"probe_report", "ssl_encoder"} <= steps.keys() else None,
           "figures": figures, "beats": beats, "split": report["split"], "training": training(home)}
    print(json.dumps(out, indent=1))
    print(f"\n{a.data}, no config: whole run {wall / 60:.1f} min; ssl_encoder {steps.get('ssl_encoder', 0):.0f} s, "
          f"probe_report {steps.get('probe_report', 0):.0f} s")
    for name, f in figures.items():
        print(f"  {name:12s} kNN20 {f['knn20']:.1%}  linear {f['linear']:.1%} "
              f"[{f['linear_ci'][0]:.1%}, {f['linear_ci'][1]:.1%}]  10% labels {f['linear@0.1']:.1%}")
    print("beats: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in beats.items()))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0 if all(beats.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
