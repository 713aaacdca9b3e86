"""The whole graph on real data, through `sslpipe run`: CIFAR-10 training images as two landing batches,
the CIFAR-10 test images as the eval set, then PACS (with its `domain` column) as a second, grouped eval set
for the same encoder. Prints the wall times and both probe tables (model, random init, raw pixels) with the
per-domain table.

    .venv/bin/python bench/probe_cifar_pacs.py --every 5 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.datasets import extract_cifar, extract_pacs  # noqa: E402


def sslpipe(*args) -> float:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"sslpipe {' '.join(args)} exited {r.returncode}")
    return time.time() - t0


def latest_report(home: Path) -> dict:
    found = sorted((home / "models").glob("*/probe/*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=5, help="every n-th CIFAR image (train and test)")
    ap.add_argument("--pacs-every", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--work", default=str(ROOT / ".bench" / "probe-cifar-pacs"))
    a = ap.parse_args()
    from ssl_ops.review.card import group_tables, probe_table

    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    landing, home = work / "landing", work / "home"
    extract_cifar("train", landing, a.every, parts=2)
    extract_cifar("test", work / "eval-cifar", a.every)
    n_pacs = extract_pacs(work / "eval-pacs", a.pacs_every)[1]
    cfg = work / "config.yaml"
    cfg.write_text(json.dumps({"train": {"method": "simclr", "backbone": "resnet18", "width": a.width,
                                         "image_size": 32, "batch_size": 128, "steps": a.steps,
                                         "warmup_steps": 50, "workers": 1, "checkpoint_every": 500,
                                         "health_every": 100,
                                         "method_options": {}}}))  # SimCLR's own views, not the digits'
    t1 = sslpipe("run", "--home", str(home), "--landing", str(landing), "--eval", str(work / "eval-cifar"),
                 "--config", str(cfg))
    cifar = latest_report(home)
    t2 = sslpipe("run", "--home", str(home), "--landing", str(landing), "--eval", str(work / "eval-pacs"),
                 "--config", str(cfg), "--select", "eval_images,probe_report,registered_model")
    pacs = latest_report(home)
    print(f"\n## CIFAR-10: whole graph {t1:.0f} s ({a.steps} steps, width {a.width}, every {a.every}th image)\n")
    print(probe_table(cifar))
    print(f"\nhealth: {json.dumps({k: round(v, 3) for k, v in cifar['health'].items()})}")
    print(f"\n## PACS ({n_pacs} images) as a second eval set: {t2:.0f} s\n")
    print(probe_table(pacs))
    print()
    print(group_tables(pacs))


if __name__ == "__main__":
    main()
