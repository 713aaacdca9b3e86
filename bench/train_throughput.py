"""Training throughput: views/s and the share of step time spent waiting for data, for the pipeline's CPU
default (what recipe.fit settles for 32 px images on this machine: SimCLR, ResNet-10 at width 16, batch 128,
24 px crops, bf16 where the CPU does it natively) and for the standard ResNet-18 (width 64) SimCLR at 32x32.

    .venv/bin/python bench/train_throughput.py [--steps 30] [--repeats 3]

Each configuration runs the real loop (ssl_ops.train.train: shards read and decoded by DataLoader workers,
augmentation, metrics, checkpoint at the end) and, in the same process, a bare baseline: the same model,
views and optimiser on a batch already in memory, nothing else. The ratio loop / bare is the cost of the
data path and bookkeeping (1.0 = free). The median over paired repeats is printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "cpu-default": dict(method="simclr", image_size=32),  # the rest fitted for the device (recipe.fit)
    "resnet18-simclr-32px": dict(method="simclr", backbone="resnet18", width=64, image_size=32, batch_size=256),
}


def bare(cfg, steps: int, images) -> float:
    """views/s of model + views + optimiser alone, on one in-memory batch."""
    import torch

    from ssl_ops.methods import build_method
    from ssl_ops.models import build_backbone
    from ssl_ops.train.optim import build_optimizer
    from ssl_ops.train.precision import use_bf16

    torch.manual_seed(0)
    m = build_method(cfg.method, build_backbone(cfg.backbone, 32, width=cfg.width), 32, cfg.method_options)
    m = m.to(memory_format=torch.channels_last)
    bf16 = use_bf16(cfg.precision, torch.device("cpu"))
    opt = build_optimizer(m, cfg.optimizer, cfg.lr, cfg.weight_decay)
    t = 0.0
    for i in range(steps):
        t0 = time.perf_counter()
        views = [v.contiguous(memory_format=torch.channels_last) for v in m.views(images)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(views)
        opt.zero_grad(set_to_none=True)
        out.loss.float().backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.clip_grad)
        opt.step()
        if i:
            t += time.perf_counter() - t0
    return cfg.batch_size * 2 * (steps - 1) / t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=sorted(CONFIGS))
    ap.add_argument("--work", type=Path, default=Path(".bench/cifar"))
    a = ap.parse_args()

    import torch

    from bench.cifar_data import train_shards
    from ssl_ops.data import shard_urls
    from ssl_ops.train import ShardSource, TrainConfig, train
    from ssl_ops.train.recipe import fit

    urls = shard_urls([train_shards(a.work)])
    print(f"{torch.get_num_threads()} torch threads; device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    for name, over in CONFIGS.items():
        if a.only and name != a.only:
            continue
        steps = a.steps if over.get("width", 16) <= 16 else max(6, a.steps // 5)
        cfg, _ = fit(TrainConfig.from_dict({**over, "steps": steps, "warmup_steps": 1, "workers": 1,
                                            "checkpoint_every": 0, "health_every": 0, "device": "cpu"}))
        images = next(iter(ShardSource(urls, 32, cfg.batch_size, workers=0)(0, 1)))
        loop_vps, bare_vps, waits, ratios = [], [], [], []
        for r in range(a.repeats):
            out = a.work / "throughput"
            shutil.rmtree(out, ignore_errors=True)
            res = train(cfg, ShardSource(urls, 32, cfg.batch_size, cfg.workers, seed=r), out)
            b = bare(cfg, steps, images)
            loop_vps.append(res.views_per_s)
            bare_vps.append(b)
            waits.append(res.data_wait_share)
            ratios.append(res.views_per_s / b)
        print(f"{name}: loop {statistics.median(loop_vps):.0f} views/s ({statistics.median(loop_vps) / 2:.0f} "
              f"images/s), data wait {statistics.median(waits):.1%} of step time; bare model {statistics.median(bare_vps):.0f} "
              f"views/s; loop/bare {statistics.median(ratios):.2f} (median of {a.repeats} paired runs, {steps} steps "
              f"of {cfg.batch_size})", flush=True)


if __name__ == "__main__":
    main()
