"""Time to accuracy: pretrain on the 50,000 CIFAR-10 train images for a wall-clock budget, then weighted kNN
(cosine, k=200, T=0.1) of the frozen encoder on the 10,000 test images, against raw pixels' 44.2%.

    .venv/bin/python bench/time_to_accuracy.py --minutes 15            # the pipeline's default; CPU target: >= 60%
    .venv/bin/python bench/time_to_accuracy.py --minutes 4 --backbone resnet18 --options '{}'   # another recipe
    .venv/bin/python bench/time_to_accuracy.py --steps 450 --lr 2e-3   # fixed steps: recipes that run at one speed

Unset options are the pipeline's default training (TrainConfig with no train: section, fitted to 32 px images and
this device by ssl_ops.train.recipe.fit), so the figure is what a user gets with no config.

The run trains for train.budget_minutes: the loop times its first steps and sets the step count so that the
cosine schedule ends when the budget does (ssl_ops.train.budget, as the pipeline's default training does).
Prints the figures and writes them as JSON (--json), with the budget overrun (wall / budget).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RAW_PIXEL_KNN = 0.442


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=None,
                    help="train this many steps instead of a budget (to compare recipes that run at the same speed)")
    # unset: the pipeline's default (ssl_ops.train.TrainConfig fitted to 32 px images on this device: recipe.fit)
    ap.add_argument("--method", default=None)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--optimizer", default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--options", default=None, help="method options as JSON (replace the fitted ones)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--work", type=Path, default=Path(".bench/cifar"))
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import torch

    from bench.cifar_data import labelled, train_shards
    from ssl_ops.data import shard_urls
    from ssl_ops.features import extract_features
    from ssl_ops.knn import knn_accuracy
    from ssl_ops.train import ShardSource, TrainConfig, load_encoder, train
    from ssl_ops.train.recipe import fit

    t = time.perf_counter()
    index = train_shards(a.work)
    urls = shard_urls([index])
    print(f"shards: {len(urls)} ({time.perf_counter() - t:.0f} s to prepare)", flush=True)
    given = dict(method=a.method, backbone=a.backbone, width=a.width, batch_size=a.batch, optimizer=a.optimizer,
                 lr=a.lr, weight_decay=a.weight_decay, warmup_steps=a.warmup,
                 method_options=None if a.options is None else json.loads(a.options))
    base = {**{k: v for k, v in given.items() if v is not None}, "image_size": 32, "workers": a.workers,
            "precision": a.precision, "compile": a.compile, "health_every": 100, "log_every": 10}

    def source(cfg):
        return ShardSource(urls, 32, cfg.batch_size, cfg.workers, cfg.seed)

    # the budget is the loop's own (train.budget_minutes, ssl_ops.train.budget): it times its first steps and fixes
    # the step count so that the cosine ends when the budget does; the pipeline trains the same way
    length = {"steps": a.steps} if a.steps else {"budget_minutes": a.minutes}
    cfg, notes = fit(TrainConfig.from_dict({**base, **length, "checkpoint_every": 0}))
    for n in notes:
        print(f"recipe: {n}", flush=True)
    run = a.work / "run"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()

    def show(step, m):
        if step % 200 == 0:
            print(f"  step {step} loss {m['loss']:.3f} lr {m['lr']:.2e} {m['images_per_s']:.0f} img/s "
                  f"wait {m['data_wait_share']:.1%} [{time.perf_counter() - t0:.0f} s]", flush=True)

    res = train(cfg, source(cfg), run, callback=show)
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    encoder, meta = load_encoder(Path(res.encoder_path))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    xtr, ytr = labelled("train")
    xte, yte = labelled("test")
    ftr = extract_features(encoder, xtr, 32, device=device)
    fte = extract_features(encoder, xte, 32, device=device)
    acc = knn_accuracy(ftr, ytr, fte, yte, 10, k=200, temperature=0.1)
    eval_s = time.perf_counter() - t1
    out = {"config": cfg.to_dict(), "steps": res.steps,
           "epochs": res.images_seen / 50000, "train_minutes": train_s / 60, "images_per_s": res.images_per_s,
           "views_per_s": res.views_per_s, "data_wait_share": res.data_wait_share, "final_loss": res.final_loss,
           "health": res.health, "device": res.device, "peak_gpu_mem_mb": res.peak_gpu_mem_mb,
           "knn_top1": acc, "raw_pixel_knn": RAW_PIXEL_KNN, "margin_points": 100 * (acc - RAW_PIXEL_KNN),
           "eval_s": eval_s, "budget_minutes": None if a.steps else a.minutes,
           "wall_over_budget": None if a.steps else train_s / (a.minutes * 60)}
    print(json.dumps(out, indent=1))
    print(f"{cfg.method}, {cfg.backbone} at width {cfg.width}, batch {cfg.batch_size}, lr {cfg.lr:g}, "
          f"options {json.dumps(cfg.method_options)}")
    print(f"kNN top-1 {acc:.2%} after {train_s / 60:.1f} min of pretraining ({res.images_seen / 50000:.1f} epochs, "
          f"{res.images_per_s:.0f} images/s, data wait {res.data_wait_share:.1%}); raw pixels {RAW_PIXEL_KNN:.1%}: "
          f"{100 * (acc - RAW_PIXEL_KNN):+.1f} points")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
