"""What the probes cost against the training they follow: probe_report's wall time (eval images decoded, the model,
both baselines and a champion probed, health, and the gate's decision with its per-group intervals) divided by the
training's wall time. The target: at most 15% at the pipeline's default training.

    python bench/probe_cost.py                                  # the demo's digits and a PACS subset, default training
    python bench/probe_cost.py --data demo,pacs,cifar --every 5 # every 5th PACS / CIFAR-10 image
    python bench/probe_cost.py --steps 100                      # a quick look: also prints the ratio projected to
                                                                # the default's steps (training time per step x steps)

Data and training as bench/seed_spread.py prepares them (the pipeline's own ingest and shard code; the pipeline's
default training with --train JSON over it). The champion is a second encoder of the same architecture (seeded
random weights): probing it costs what probing any champion at that size costs. Progress lines are the probes' own
(probe_report's progress callback), timestamped. Figures go to --json as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 0.15


def measure(data: str, work: Path, every: int, overrides: dict, steps: int | None, say) -> dict:
    """steps: train this many (a quick look), and project the ratio to the default's length (its steps, or its
    budget); None: train exactly the default."""
    from bench.seed_spread import default_train, prepare, short_sides, train_one
    from ssl_ops.probes.evalset import load_eval_arrays
    from ssl_ops.probes.report import probe_report, random_encoder
    from ssl_ops.review import GateConfig, decide
    from ssl_ops.review.card import group_tables
    from ssl_ops.train import load_encoder

    d = prepare(data, work / "data", every)
    say(f"{data}: {d['describe']}: {d['train_images']} training images, {d['eval_images']} eval images")
    sides = short_sides(d["eval_accepted"])
    default = default_train(data, overrides, sides)
    train_cfg = default_train(data, {**overrides, "steps": steps}, sides) if steps else default
    say(f"{data}: training {json.dumps(train_cfg)}")
    res, train_s = train_one(train_cfg, d["indexes"], work / "run")
    say(f"{data}: trained {res.steps} steps in {train_s:.1f} s")
    t0 = time.perf_counter()
    encoder, meta = load_encoder(res.encoder_path)
    evald = load_eval_arrays(d["eval_accepted"], d["eval_dir"], int(meta["image_size"]))
    say(f"{data}: decoded {len(evald.labels)} eval images at {meta['image_size']} px ({time.perf_counter() - t0:.1f} s)")
    champion = (random_encoder(meta, seed=1), dict(meta))
    report = probe_report(encoder, meta, evald, champion=champion, progress=say)
    decision = decide(report, GateConfig(), meta.get("method", "simclr"), (True, "not checked by the bench"))
    group_tables(report)
    probe_s = time.perf_counter() - t0
    per_step = train_s / max(res.steps, 1)
    default_s = default["budget_minutes"] * 60 if default.get("budget_minutes") else per_step * default["steps"]
    default_steps = default.get("steps") or 0  # 0: the default is a budget
    projected = probe_s / default_s
    out = {"data": data, "describe": d["describe"], "train_images": d["train_images"], "eval_images": d["eval_images"],
           "steps": res.steps, "train_s": train_s, "probe_s": probe_s, "ratio": probe_s / train_s,
           "default_steps": default_steps, "default_budget_minutes": default.get("budget_minutes"),
           "projected_train_s": default_s,
           "projected_ratio": projected, "gate": decision.summary[:200]}
    say(f"{data}: probe_report {probe_s:.1f} s after {train_s:.1f} s of training: {100 * out['ratio']:.1f}%; at the "
        f"default's length ({f'{default_steps} steps' if default_steps else f'a budget of {default_s / 60:g} min'}, about "
        f"{default_s:.0f} s of training) {100 * projected:.1f}%")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo,pacs", help="comma-separated: demo, pacs, cifar")
    ap.add_argument("--every", type=int, default=5, help="pacs/cifar: every n-th image")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the pipeline's default)")
    ap.add_argument("--train", default="{}", help="JSON over the pipeline's default training")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "probe-cost")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    overrides = json.loads(a.train)
    start = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", flush=True)

    rows = [measure(name.strip(), a.work / name.strip(), a.every, overrides, a.steps, say)
            for name in a.data.split(",") if name.strip()]
    print(f"\n{'data':<8}{'train s':>10}{'probe s':>10}{'ratio':>9}{'at default steps':>18}  (target <= {TARGET:.0%})")
    for r in rows:
        print(f"{r['data']:<8}{r['train_s']:>10.1f}{r['probe_s']:>10.1f}{r['ratio']:>9.1%}{r['projected_ratio']:>18.1%}"
              f"  {'ok' if r['projected_ratio'] <= TARGET else 'OVER'}")
    result = {"train": overrides, "rows": rows, "target": TARGET}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))
    shutil.rmtree(a.work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
