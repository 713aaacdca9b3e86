"""Speedrun: CIFAR-10 from the pipeline's WebDataset shards to 90% kNN top-1 (weighted cosine kNN, k=200,
T=0.1, the 50,000 train images as the bank, the 10,000 test images as queries) as fast as one GPU allows.

On an H100/H200 (with ../shared/datasets beside the project; the first run shards the train set, ~1 min):

    .venv/bin/python bench/speedrun.py --device cuda --json .bench/speedrun.json

Tiny, on a CPU (what tests/bench/test_speedrun.py runs; the figures are real, the accuracy is not the point):

    .venv/bin/python bench/speedrun.py --device cpu --budget-minutes 0.3 --subset 2000 --target 0.3 \\
        --batch 64 --width 8 --options '{"hidden_dim": 128, "proj_dim": 64}' --eval-every 6s --test-subset 1000

What it does
- Data: bench/cifar_data.py shards the train JPEGs with the pipeline's own ingest and shard code (cached under
  --work); the shards are checked against their index (ssl_ops.shards.verify.require_intact), then
  `--data resident` (the default) decodes every sample once, in worker processes, into one uint8 tensor
  [N, 3, 32, 32] (150 MB for CIFAR-10) that is held on the training device: each step gathers a batch by a
  random permutation, on the device. `--data stream` instead reads the shards every step through the
  project's loader (ssl_ops.train.ShardSource: DataLoader workers decoding to uint8), with pinned memory and a
  prefetch thread, for comparison. Labels (for kNN only) come from each sample's .json (its path's class
  folder); the kNN bank is the same decoded train images.
- Training: the project's own pieces, driven step by step here (ssl_ops.train.train() runs a fixed step count
  without a way to stop at a target or to look at the encoder midway, and another session is changing it):
  ssl_ops.models.build_backbone, ssl_ops.methods.build_method (with the method's own kornia views from
  ssl_ops.augment, on the device), ssl_ops.train.optim (LARS / AdamW, no decay or LARS on biases and norms),
  ssl_ops.train.schedule.lr_at (warmup + cosine), method.after_step (EMA teachers). bf16 autocast on GPU,
  channels_last, torch.compile of the method's forward (not of the views) on GPU.
- Clock: the training clock sums the steps' wall time (first step and compilation included, data preparation
  and evaluation excluded; each is reported). Evaluation every --eval-every epochs ("10") or seconds of
  training ("60s"), and once at the end; the run stops at the first evaluation at or above --target, or when
  the training clock reaches --budget-minutes, or when the schedule ends.
- Schedule: with --epochs the cosine schedule is that long; without it, steps/s are measured over the first
  steps (after the compile) and the schedule is set to end when the budget does (as time_to_accuracy.py).
- Figures: time to target (training seconds; also without the first step, which holds the compilation),
  views/s and images/s (the first steps excluded), the share of step time spent waiting for data and spent in
  augmentation (each step is synchronised at three points to split it), the accuracy curve, peak GPU memory.
  `--json PATH` writes them; `--json -` prints only the JSON on stdout (progress goes to stderr).
- Exit status: 0 when the target was reached, 3 when the run ended without reaching it, 2 for a bad command
  line (e.g. --device cuda without a GPU).

Recipe (by default BYOL, ResNet-18 with a CIFAR stem, batch 512, LARS): bench/speedrun_recipes.py says where
each method's recipe comes from and how many epochs to expect.

Elsewhere than beside ../shared/datasets: --cifar DIR names a folder holding CIFAR-10's train.zip and test.zip
(the layout of ../shared/datasets/cifar10-jpg); shards are written under --work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.speedrun_data import IMAGE_SIZE, Resident, Streamed, load_train, resolve_device  # noqa: E402
from bench.speedrun_recipes import OPTIMIZER_LR, RECIPES  # noqa: E402

EXIT_MISSED = 3
NUM_CLASSES = 10

def parse_every(text: str) -> tuple[str, float]:
    """'10' -> ('epochs', 10.0); '60s' -> ('seconds', 60.0); '0' -> only at the end."""
    t = text.strip().lower()
    try:
        kind, value = ("seconds", float(t[:-1])) if t.endswith("s") else ("epochs", float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--eval-every takes epochs (10, 2.5) or seconds of training (60s), "
                                         f"got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"--eval-every must be >= 0, got {text!r}")
    return kind, value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="speedrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=0.90, help="kNN top-1 to reach, in [0, 1] (default 0.90)")
    ap.add_argument("--budget-minutes", type=float, default=45.0, help="training-clock budget (default 45)")
    ap.add_argument("--epochs", type=float, default=None,
                    help="schedule length in epochs (default: fitted to the budget from measured steps/s)")
    ap.add_argument("--method", default="byol", choices=sorted(RECIPES))
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--device", default="auto", help="auto (cuda when visible, else cpu), cuda, cuda:N or cpu")
    ap.add_argument("--eval-every", type=parse_every, default=("epochs", 10.0),
                    help="kNN evaluation every N epochs ('10') or N seconds of training ('60s'); 0: at the end only")
    ap.add_argument("--optimizer", choices=("lars", "adamw", "sgd"), default=None, help="override the recipe's")
    ap.add_argument("--lr", type=float, default=None, help="peak lr (default: the recipe's)")
    ap.add_argument("--eta", type=float, default=None, help="LARS trust coefficient (default: the recipe's)")
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--warmup-epochs", type=float, default=None)
    ap.add_argument("--options", default="{}", help="method options as JSON, over the recipe's")
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 first-stage channels (64 = standard)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="auto: bf16 autocast on GPU, fp32 on CPU")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for GPU")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--clip-grad", type=float, default=0.0, help="max global grad norm (0 = none, as the recipes)")
    ap.add_argument("--data", choices=("resident", "stream"), default="resident",
                    help="resident: decoded once, held on the device; stream: the project's shard loader per step")
    ap.add_argument("--workers", type=int, default=None, help="decode / loader processes (default: cores, <= 16)")
    ap.add_argument("--subset", type=int, default=None, help="train on every n-th train image, about this many")
    ap.add_argument("--test-subset", type=int, default=None, help="evaluate on every n-th test image, about this many")
    ap.add_argument("--eval-batch", type=int, default=1024)
    ap.add_argument("--warm-steps", type=int, default=3, help="first steps left out of views/s (compilation)")
    ap.add_argument("--calib-steps", type=int, default=20, help="steps measured to fit the schedule to the budget")
    ap.add_argument("--log-every", type=float, default=30.0, help="seconds between progress lines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cifar", type=Path, default=None,
                    help="folder with CIFAR-10's train.zip and test.zip (default ../shared/datasets/cifar10-jpg)")
    ap.add_argument("--work", type=Path, default=Path(".bench/cifar"), help="shard cache")
    ap.add_argument("--json", default=None, help="write the figures as JSON to this path ('-': stdout only)")
    return ap


def strict_json(x):
    """NaN and infinities (a figure that could not be measured) -> null, so that the JSON is standard."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x


def run(argv: list[str] | None = None) -> tuple[dict, int]:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not 0 <= a.target <= 1:
        ap.error(f"--target is an accuracy in [0, 1], got {a.target}")
    if a.budget_minutes <= 0:
        ap.error(f"--budget-minutes must be positive, got {a.budget_minutes}")
    if a.batch < 2:
        ap.error(f"--batch must be at least 2, got {a.batch}")
    if a.epochs is not None and a.epochs <= 0:
        ap.error(f"--epochs must be positive, got {a.epochs}")
    try:
        extra_options = json.loads(a.options)
        assert isinstance(extra_options, dict)
    except (ValueError, AssertionError):
        ap.error(f"--options takes a JSON object, got {a.options!r}")
    device = resolve_device(ap, a.device)
    out = sys.stderr if a.json == "-" else sys.stdout

    def say(*args):
        print(*args, file=out, flush=True)

    wall0 = time.perf_counter()
    import torch

    import bench.cifar_data as cifar_data
    from ssl_ops.train.budget import steps_for_budget
    from ssl_ops.features import extract_features
    from ssl_ops.knn import knn_accuracy
    from ssl_ops.methods import build_method
    from ssl_ops.models import build_backbone
    from ssl_ops.train.optim import LARS, build_optimizer, param_groups
    from ssl_ops.train.schedule import lr_at

    if a.cifar is not None:
        cifar_data.SHARED = a.cifar
    workers = a.workers if a.workers is not None else min(16, os.cpu_count() or 1)
    recipe = RECIPES[a.method]
    optimizer = a.optimizer or recipe["optimizer"]
    lr = a.lr if a.lr is not None else (recipe["lr"] if optimizer == recipe["optimizer"] else OPTIMIZER_LR[optimizer])
    eta = a.eta if a.eta is not None else recipe["eta"]
    wd = a.weight_decay if a.weight_decay is not None else recipe["weight_decay"]
    warmup_epochs = a.warmup_epochs if a.warmup_epochs is not None else recipe["warmup_epochs"]
    options = {**recipe["options"], **extra_options}
    use_bf16 = a.precision == "bf16" or (a.precision == "auto" and device.type == "cuda")
    use_compile = a.compile == "on" or (a.compile == "auto" and device.type == "cuda")
    channels_last = not a.no_channels_last

    torch.manual_seed(a.seed)  # built here, on the CPU: bad options fail before the data is prepared
    try:
        method = build_method(a.method, build_backbone("resnet18", IMAGE_SIZE, width=a.width), IMAGE_SIZE, options)
    except (ValueError, TypeError) as e:
        ap.error(f"--method {a.method} with options {options}: {e}")

    # --- data -------------------------------------------------------------------------------------------
    t = time.perf_counter()
    every = max(1, 50000 // a.subset) if a.subset else 1
    index = cifar_data.train_shards(a.work, every=every)
    shard_s = time.perf_counter() - t
    t = time.perf_counter()
    train_u8, names, entries = load_train(index, workers)
    classes = sorted(set(names))
    if len(classes) != NUM_CLASSES:
        raise SystemExit(f"the shards hold {len(classes)} class folders, {NUM_CLASSES} expected: {classes}")
    bank_y = torch.tensor([classes.index(c) for c in names])
    test_every = max(1, 10000 // a.test_subset) if a.test_subset else 1
    test_x, test_y = cifar_data.labelled("test", every=test_every)
    decode_s = time.perf_counter() - t
    n = train_u8.shape[0]
    if n < a.batch:
        ap.error(f"--batch {a.batch} is larger than the {n} training images")
    t = time.perf_counter()
    if device.type == "cuda":  # CUDA is first touched here, after the decode processes are done
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        train_u8, test_x = train_u8.pin_memory().to(device), test_x.pin_memory().to(device)
        torch.cuda.synchronize(device)
    bank_y, test_y = bank_y.to(device), test_y.to(device)
    to_device_s = time.perf_counter() - t
    t = time.perf_counter()
    data = Resident(train_u8, a.batch, a.seed) if a.data == "resident" else Streamed(
        entries, a.batch, max(1, workers), a.seed, device)
    loader_start_s = time.perf_counter() - t
    say(f"data: {n} train images from {len(entries)} shards ({shard_s:.1f} s to shard or find, {decode_s:.1f} s to "
        f"decode with {workers} processes, {to_device_s:.2f} s to {device}); {test_x.shape[0]} test images; "
        f"mode {a.data}")

    # --- model ------------------------------------------------------------------------------------------
    method = method.to(device)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    if optimizer == "lars":
        opt = LARS(param_groups(method, wd), lr=lr, eta=eta)
    else:
        opt = build_optimizer(method, optimizer, lr, wd)
    forward = torch.compile(method, mode=a.compile_mode) if use_compile else method
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    steps_per_epoch = n // a.batch
    budget_s = a.budget_minutes * 60
    fit = a.epochs is None
    total = math.ceil(a.epochs * steps_per_epoch) if not fit else 10 ** 9
    warmup = max(1, round(warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 0
    if not fit:
        warmup = min(warmup, total // 10 or 1) if warmup else 0
    eval_kind, eval_value = a.eval_every
    eval_steps = max(1, round(eval_value * steps_per_epoch)) if eval_kind == "epochs" and eval_value else None
    next_eval = eval_steps if eval_steps else (eval_value if eval_kind == "seconds" and eval_value else math.inf)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def evaluate(step: int, train_s: float) -> dict:
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            ftr = extract_features(method.backbone, train_u8, IMAGE_SIZE, a.eval_batch, device)
            fte = extract_features(method.backbone, test_x, IMAGE_SIZE, a.eval_batch, device)
        method.train()
        acc = knn_accuracy(ftr.to(device), bank_y, fte.to(device), test_y, NUM_CLASSES, k=200, temperature=0.1)
        sync()
        point = {"step": step, "epoch": step * a.batch / n, "train_s": train_s, "knn": acc,
                 "eval_s": time.perf_counter() - t0}
        say(f"  eval @ epoch {point['epoch']:.1f} (step {step}, {train_s:.1f} s of training): kNN {acc:.2%} "
            f"[{point['eval_s']:.1f} s]")
        return point

    say(f"training: {a.method} / resnet18 width {a.width}, batch {a.batch}, {optimizer} lr {lr:g}"
        f"{f' eta {eta:g}' if optimizer == 'lars' else ''} wd {wd:g}, warmup {warmup} steps, "
        f"{'schedule fitted to the budget' if fit else f'{total} steps ({a.epochs:g} epochs)'}, budget "
        f"{a.budget_minutes:g} min, {'bf16' if use_bf16 else 'fp32'}, compile {'on' if use_compile else 'off'}, "
        f"channels_last {'on' if channels_last else 'off'}, device {device}")
    step, train_s, first_step_s = 0, 0.0, None
    timed_s = wait_s = aug_s = 0.0
    timed_views = timed_images = timed_steps = 0
    every_step = {"s": 0.0, "wait": 0.0, "aug": 0.0, "views": 0}  # the warm steps too: the fallback
    losses: list[float] = []
    curve: list[dict] = []
    reached, stop_reason = None, None
    last_log = time.perf_counter()
    calibrated = not fit
    batches = iter(data)
    method.train()
    try:
        while True:
            if step >= total:
                stop_reason = "schedule ended"
                break
            if train_s >= budget_s:
                stop_reason = "budget spent"
                break
            t0 = time.perf_counter()
            images = next(batches)
            sync()
            t1 = time.perf_counter()
            cur_lr = lr_at(step, total, lr, warmup)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            views = method.views(images)
            if channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            sync()
            t2 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                res = forward(views)
            loss = res.loss.float()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip_grad:
                torch.nn.utils.clip_grad_norm_(method.parameters(), a.clip_grad)
            opt.step()
            method.after_step(step, total)
            loss_value = loss.item()
            sync()
            dt = time.perf_counter() - t0
            train_s += dt
            if first_step_s is None:
                first_step_s = dt
            if not math.isfinite(loss_value):
                raise SystemExit(f"the loss is not finite at step {step} (lr {cur_lr:.3g}): lower --lr or --eta, "
                                 f"raise --warmup-epochs, or set --clip-grad")
            losses = (losses + [loss_value])[-20:]
            every_step["s"] += dt
            every_step["wait"] += t1 - t0
            every_step["aug"] += t2 - t1
            every_step["views"] += a.batch * len(views)
            if step >= a.warm_steps:
                timed_s += dt
                wait_s += t1 - t0
                aug_s += t2 - t1
                timed_steps += 1
                timed_images += a.batch
                timed_views += a.batch * len(views)
            step += 1
            if not calibrated and timed_steps and (timed_steps >= a.calib_steps or train_s >= 0.15 * budget_s):
                per_step = timed_s / timed_steps
                total = steps_for_budget(budget_s, train_s, step, per_step)  # the loop's own rule (ssl_ops.train.budget)
                if warmup:
                    warmup = min(warmup, max(1, total // 10))
                calibrated = True
                say(f"  schedule: {per_step * 1000:.0f} ms/step -> {total} steps ({total / steps_per_epoch:.1f} "
                    f"epochs) to end with the budget; warmup {warmup} steps")
            if time.perf_counter() - last_log >= a.log_every:
                last_log = time.perf_counter()
                speed = (f"{timed_views / timed_s:.0f} views/s, data wait {wait_s / timed_s:.1%}" if timed_s
                         else f"(the first {a.warm_steps} steps are not timed)")
                say(f"  step {step} (epoch {step / steps_per_epoch:.1f}) loss {loss_value:.4f} lr {cur_lr:.3g} "
                    f"{speed} [{train_s:.0f} s of training]")
            due = step >= next_eval if eval_steps else train_s >= next_eval
            if due and step < total:
                next_eval += eval_steps if eval_steps else eval_value
                curve.append(evaluate(step, train_s))
                if curve[-1]["knn"] >= a.target:
                    reached = curve[-1]
                    stop_reason = "target reached"
                    break
    finally:
        data.close()
    if reached is None and (not curve or curve[-1]["step"] != step):
        curve.append(evaluate(step, train_s))
        if curve[-1]["knn"] >= a.target:
            reached = curve[-1]
            stop_reason = "target reached at the final evaluation"

    timed_from = a.warm_steps
    if not timed_steps and step:  # too few steps to leave the warm ones out: time them all, and say so
        say(f"  only {step} step(s), all within --warm-steps {a.warm_steps}: the figures below include them "
            f"(compilation, start-up); raise --budget-minutes for steady-state figures")
        timed_s, wait_s, aug_s, timed_views = (every_step[k] for k in ("s", "wait", "aug", "views"))
        timed_steps, timed_images, timed_from = step, step * a.batch, 0
    best = max(curve, key=lambda p: p["knn"])
    result = {
        "target": a.target, "reached": reached is not None,
        "time_to_target_s": reached["train_s"] if reached else None,
        # the same without the first step, which holds torch.compile's compilation and cuDNN's autotuning
        "time_to_target_after_first_step_s": reached["train_s"] - first_step_s if reached else None,
        "epochs_to_target": reached["epoch"] if reached else None,
        "stop_reason": stop_reason,
        "train_s": train_s, "first_step_s": first_step_s,
        "eval_s_total": sum(p["eval_s"] for p in curve), "evaluations": len(curve),
        "prepare_s": {"shards": shard_s, "decode": decode_s, "to_device": to_device_s,
                      "loader_start": loader_start_s},
        "wall_s": time.perf_counter() - wall0,
        "steps": step, "schedule_steps": total if total < 10 ** 9 else None, "epochs": step * a.batch / n,
        "views_per_s": timed_views / timed_s if timed_s else float("nan"),
        "images_per_s": timed_images / timed_s if timed_s else float("nan"),
        "data_wait_share": wait_s / timed_s if timed_s else float("nan"),
        "augment_share": aug_s / timed_s if timed_s else float("nan"),
        "timed_steps": timed_steps, "timed_from_step": timed_from,
        "final_loss": sum(losses) / len(losses) if losses else float("nan"),
        "best_knn": best["knn"], "final_knn": curve[-1]["knn"], "curve": curve,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None,
        "config": {"method": a.method, "backbone": "resnet18", "width": a.width, "batch": a.batch,
                   "optimizer": optimizer, "lr": lr, "eta": eta if optimizer == "lars" else None,
                   "weight_decay": wd, "warmup_steps": warmup, "method_options": options,
                   "precision": "bf16" if use_bf16 else "fp32", "compile": use_compile,
                   "channels_last": channels_last, "data": a.data, "workers": workers,
                   "train_images": n, "test_images": int(test_x.shape[0]), "budget_minutes": a.budget_minutes,
                   "epochs": a.epochs, "eval_every": f"{eval_value:g}{'s' if eval_kind == 'seconds' else ''}",
                   "seed": a.seed},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    say("curve (epoch, training s, kNN): " + ", ".join(f"({p['epoch']:.1f}, {p['train_s']:.0f} s, {p['knn']:.2%})"
                                                      for p in curve))
    if reached:
        say(f"time to {a.target:.0%} kNN: {reached['train_s']:.1f} s of training ({reached['train_s'] / 60:.2f} min, "
            f"{reached['epoch']:.1f} epochs; {reached['train_s'] - first_step_s:.1f} s without the first step's "
            f"{first_step_s:.1f} s of compilation and start-up); kNN {reached['knn']:.2%}")
    else:
        say(f"target {a.target:.0%} NOT reached ({stop_reason}): best kNN {best['knn']:.2%} at "
            f"{best['train_s']:.1f} s of training (epoch {best['epoch']:.1f})")
    say(f"{result['views_per_s']:.0f} views/s ({result['images_per_s']:.0f} images/s) over {timed_steps} steps; "
        f"data wait {result['data_wait_share']:.1%} and augmentation {result['augment_share']:.1%} of step time; "
        f"first step {first_step_s or 0:.1f} s; evaluation {result['eval_s_total']:.1f} s outside the clock "
        f"({len(curve)} runs); {step} steps = {result['epochs']:.1f} epochs in {train_s:.1f} s; device "
        f"{result['device']}" + (f", peak {result['peak_gpu_mem_mb']:.0f} MB" if result["peak_gpu_mem_mb"] else ""))
    text = json.dumps(strict_json(result), indent=1, allow_nan=False)
    if a.json == "-":
        print(text)
    elif a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text)
    return result, 0 if reached else EXIT_MISSED


def main(argv: list[str] | None = None) -> int:
    return run(argv)[1]


if __name__ == "__main__":
    sys.exit(main())
