"""The training loop: one process, or one rank of a torchrun DDP job.

    result = train(cfg, source, out_dir, callback=lambda step, metrics: print(step, metrics))

- The lr is lr_at(step) (warmup + cosine), set before every step; EMA momenta are functions of the step.
- bf16 autocast on GPU and on CPUs with native bf16 (precision "auto"), channels_last for ResNets, optional
  torch.compile, gradient clipping, and a NonFiniteLoss error (on every rank) the first time the loss is not
  finite.
- A checkpoint (out_dir/checkpoint.pt) is written atomically every `checkpoint_every` steps; at each
  checkpoint boundary the data stream and the RNG are re-seeded from (seed, step, rank). A run restarted on
  the same out_dir resumes from the checkpoint and reads the same data from there on: it ends at the same
  step count, and its loss curve continues the interrupted one.
- Per-step metrics (loss, lr, images/s, views/s, data-wait share, grad norm, peak GPU memory) go to the
  callback (rank 0) and to out_dir/metrics.jsonl; every `health_every` steps the embedding std and effective
  rank of the first view's features are added, and with collapse_std set a collapse stops the run.
- Under train.budget_minutes the total is not known at the start: the first steps are timed and the total
  fitted (ssl_ops.train.budget), then fitted again every REFIT_STEPS steps until the last 2 * REFIT_STEPS, so
  the cosine ends when the budget does; it is saved in every checkpoint, so a resumed run keeps it.
- With a monitor (ssl_ops.train.monitor: kNN on held-out probe-train rows of the eval set), the encoder is
  probed before the first step, every `probe_every` steps (None: 10 times over the run) and after the last;
  each figure goes to out_dir/probes.jsonl and to the callback as {"probe_knn20": accuracy} at the step count
  it was measured after. `keep: best` keeps the encoder of the best probe (out_dir/encoder_best.pt) instead of
  the last one.
- At the end out_dir/encoder.pt holds the backbone (ssl_ops.train.checkpoint.load_encoder reads it).
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from ssl_ops.augment import normalise
from ssl_ops.methods import build_method
from ssl_ops.models import build_backbone
from ssl_ops.train.checkpoint import load, save_atomic, save_encoder
from ssl_ops.train.budget import CALIBRATION_STEPS, REFIT_STEPS, steps_for_budget
from ssl_ops.train.config import TrainConfig
from ssl_ops.train.distributed import all_true, init_from_env, mean_over_ranks, sync_batchnorm
from ssl_ops.train.health import effective_rank, embedding_std
from ssl_ops.train.optim import build_optimizer
from ssl_ops.train.precision import use_bf16
from ssl_ops.train.schedule import lr_at
from ssl_ops.train.source import BatchSource

# Keys that do not change what is computed: a checkpoint made with other values still resumes.
# (checkpoint_every is not one: checkpoints are where the data stream and the RNG are re-seeded; device is not
# one either: it decides the precision under "auto".)
RESUMABLE_DIFFERENCES = {"log_every", "health_every", "collapse_std", "compile", "probe_every"}
PROBES_WHEN_AUTO = 10  # probes over a run when probe_every is None


class TrainingError(RuntimeError):
    """Training stopped; the message says why and what to change."""


class NonFiniteLoss(TrainingError):
    pass


class Collapse(TrainingError):
    pass


@dataclass
class TrainResult:
    steps: int  # the step count reached (== total steps when complete)
    total_steps: int
    images_seen: int  # over the whole run, resumed parts included
    final_loss: float  # mean of the last (up to) 10 logged losses
    images_per_s: float  # global images per second over this process's steps (first step excluded)
    views_per_s: float
    data_wait_share: float  # share of step time spent waiting for the next batch
    device: str
    world: int
    wall_s: float
    resumed_from: int | None
    health: dict = field(default_factory=dict)  # the last health metrics
    peak_gpu_mem_mb: float | None = None
    encoder_path: str | None = None
    probe_curve: list = field(default_factory=list)  # [[steps done, kNN k=20 accuracy]] of the training monitor
    kept_step: int | None = None  # the step count of the encoder kept (keep: best), else None (the last)
    budget_minutes: float | None = None  # the budget the total was fitted to

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"train.device is {name!r} but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def train(cfg: TrainConfig, source: BatchSource, out_dir: Path, num_samples: int | None = None,
          callback: Callable[[int, dict], None] | None = None, monitor=None) -> TrainResult:
    """monitor: a ssl_ops.train.monitor.KnnMonitor (used on rank 0), or None."""
    cfg.validate()
    if cfg.image_size is None:
        raise TrainingError("train.image_size is auto: settle it from the data first (ssl_ops.train.recipe.fit)")
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    if not cfg.fitted:  # the device's auto keys (the caller's data source is built with the same batch size)
        from ssl_ops.train.recipe import fit

        cfg, _ = fit(cfg, device=device.type)
    info = init_from_env(device.type)
    if cfg.batch_size % info.world:
        raise TrainingError(f"train.batch_size {cfg.batch_size} does not split evenly over {info.world} ranks")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    total = cfg.total_steps(num_samples)  # None under a budget: fixed after the calibration steps
    local_batch = cfg.batch_size // info.world

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    backbone = build_backbone(cfg.backbone, cfg.image_size, patch_size=cfg.patch_size, width=cfg.width)
    method = build_method(cfg.method, backbone, cfg.image_size, cfg.method_options)
    if info.world > 1:
        sync_batchnorm(method, device.type)
    method.to(device)
    conv = cfg.channels_last and cfg.backbone.startswith("resnet")
    if conv:
        method.to(memory_format=torch.channels_last)
    opt = build_optimizer(method, cfg.optimizer, cfg.lr, cfg.weight_decay)

    ckpt_path, start, resumed_from = out_dir / "checkpoint.pt", 0, None
    have = ckpt_path.exists()
    if info.world > 1:
        everyone, no_one = all_true(have, device), all_true(not have, device)
        if not (everyone or no_one):  # every rank reaches this and raises: no rank is left waiting
            raise TrainingError(f"{ckpt_path} exists for some ranks only: every rank must see the same output "
                                f"folder (a shared file system) to resume")
    if have:
        blob = load(ckpt_path, map_location=device)
        _check_resumable(json.loads(blob["config"]), cfg, ckpt_path)
        method.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        start = resumed_from = int(blob["step"])
        if total is None and blob.get("total") is not None:  # the budget's total, fixed before the checkpoint
            total = int(blob["total"])
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True))
        _truncate_metrics(out_dir / "metrics.jsonl", start)
        _truncate_metrics(out_dir / "probes.jsonl", start, keep_at=False)
    probes = _Probes(monitor if info.is_main else None, cfg, out_dir, method, device, callback)

    model = method
    if info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(method, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(model) if cfg.compile else model
    bf16 = use_bf16(cfg.precision, device)
    if info.is_main and cfg.precision == "auto" and device.type == "cpu" and bf16:
        print("precision bf16: this CPU does bf16 natively (set train.precision fp32 to choose)", flush=True)
    n_plain_views = 1 if cfg.method == "mae" else 2
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    step, losses, health = start, [], {}
    next_fit = None  # under a budget: the step at which the total is fitted again
    fits = []  # ... (step, timed seconds) at each fit so far: a fit times the steps since one of them
    shown = None  # ... the total last printed: a refit prints when it moved more than 2% from that
    timed_images = timed_views = 0
    timed_s = wait_s = 0.0
    method.train()
    probes.maybe(step, total)
    budget_s = cfg.budget_minutes * 60 if cfg.budget_minutes else None
    unbounded = 10 ** 9  # the total before a budget's calibration: only the warmup's lr is used meanwhile
    while step < (total or unbounded):
        seg = cfg.checkpoint_every or total or unbounded
        seg_end = min(total or unbounded, (step // seg + 1) * seg)
        torch.manual_seed(_seed(cfg.seed, step, info.rank))  # augmentation and masks, reproducible per segment
        batches = iter(source(step, seg_end - step))
        while step < min(seg_end, total or unbounded):
            t0 = time.perf_counter()
            try:
                images = next(batches)
            except StopIteration:
                raise TrainingError(f"the data source ran dry at step {step} (segment ending at {seg_end})") from None
            t_data = time.perf_counter() - t0
            if images.shape[0] != local_batch:
                raise TrainingError(f"a batch of {images.shape[0]} images arrived; {local_batch} per rank expected")
            images = images.to(device, non_blocking=True)
            lr = lr_at(step, total or unbounded, cfg.lr, cfg.warmup_steps, cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            views = method.views(images) if cfg.augment else [normalise(images)] * n_plain_views
            if conv:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = forward(views)
            loss = out.loss.float()
            loss_value = mean_over_ranks(loss.item(), device)  # the logged loss: the mean over ranks
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(
                    f"the loss is not finite at step {step} ({loss.item()} on this rank; lr {lr:.3g}). The last "
                    f"checkpoint is {ckpt_path if ckpt_path.exists() else 'none'}. Lower train.lr, raise "
                    f"train.warmup_steps, set train.clip_grad, or use train.precision fp32.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = None
            if cfg.clip_grad:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.clip_grad))
            opt.step()
            method.after_step(step, total or unbounded)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            if step > start:  # the first step pays for compilation and worker start-up
                timed_s += dt
                wait_s += t_data
                timed_images += cfg.batch_size
                timed_views += cfg.batch_size * len(views)
            metrics = {"loss": loss_value, "lr": lr, "images_per_s": cfg.batch_size / dt,
                       "views_per_s": cfg.batch_size * len(views) / dt, "data_wait_share": t_data / dt}
            if grad_norm is not None:
                metrics["grad_norm"] = grad_norm
            if device.type == "cuda":
                metrics["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
            if total is None and step - start == CALIBRATION_STEPS:  # steps start+1.. are timed
                step_s = mean_over_ranks(timed_s / max(1, step - start), device)
                total = _fit_total(budget_s, time.perf_counter() - t_start, step + 1, step_s, probes, cfg,
                                   info.world, device)
                # the next fit after REFIT_STEPS more steps, or a quarter of those planned when fewer remain
                fits, shown = [(step, timed_s)], total
                next_fit = step + max(1, min(REFIT_STEPS, (total - step) // 4))
                if info.is_main:
                    print(f"budget {cfg.budget_minutes:g} min: {1 / step_s:.2f} steps/s measured over "
                          f"{CALIBRATION_STEPS} steps -> {total} steps", flush=True)
            elif next_fit is not None and step == next_fit:
                # the total again, until the last 2 * REFIT_STEPS steps, from the mean step time over the later
                # half of the steps since the first fit: the first steps run slower while caches and workers warm
                # up (or while something else holds the CPU), which would end the run early, and a speed that
                # drifts later would end it late; half the run so far is thousands of steps, so one slow step
                # moves nothing. The cosine moves a little with each fit.
                since = min(fits, key=lambda f: abs(f[0] - (fits[0][0] + step) / 2))
                step_s = mean_over_ranks((timed_s - since[1]) / (step - since[0]), device)
                new = max(step + 2, _fit_total(budget_s, time.perf_counter() - t_start, step + 1, step_s, probes,
                                               cfg, info.world, device))
                if info.is_main and (len(fits) == 1 or abs(new - shown) > 0.02 * shown):
                    print(f"budget {cfg.budget_minutes:g} min: {1 / step_s:.2f} steps/s over the last "
                          f"{step - since[0]} steps -> {new} steps", flush=True)
                    shown = new
                total = new
                fits.append((step, timed_s))
                next_fit = step + REFIT_STEPS if step + 2 * REFIT_STEPS <= total else None
            if cfg.health_every and (step % cfg.health_every == 0 or step == (total or unbounded) - 1):
                health = {"embedding_std": embedding_std(out.features), "effective_rank": effective_rank(out.features)}
                metrics.update(health)
                if cfg.collapse_std and step >= cfg.warmup_steps and not all_true(
                        health["embedding_std"] >= cfg.collapse_std, device):
                    raise Collapse(f"the embeddings collapsed at step {step}: embedding_std "
                                   f"{health['embedding_std']:.4f} < train.collapse_std {cfg.collapse_std} "
                                   f"(effective rank {health['effective_rank']:.1f}). Lower train.lr, or use "
                                   f"another method or its options.")
            losses = (losses + [loss_value])[-10:]
            if info.is_main and (step % cfg.log_every == 0 or step == (total or unbounded) - 1):
                with open(out_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, **metrics}) + "\n")
                if callback is not None:
                    callback(step, metrics)
            step += 1
            probes.maybe(step, total)
        del batches
        if info.is_main:
            save_atomic({"step": step, "total": total, "model": method.state_dict(), "optimizer": opt.state_dict(),
                         "config": json.dumps(cfg.to_dict(), sort_keys=True)}, ckpt_path)
        if info.world > 1:
            dist.barrier()

    encoder_path = out_dir / "encoder.pt"
    kept_step = None
    if info.is_main:
        meta = {"backbone": cfg.backbone, "image_size": cfg.image_size, "width": cfg.width,
                "patch_size": cfg.patch_size, "method": cfg.method, "steps": step, "seed": cfg.seed}
        best = probes.best()
        if cfg.keep == "best" and best is not None and best[0] != step and (out_dir / "encoder_best.pt").exists():
            kept_step = best[0]
            blob = load(out_dir / "encoder_best.pt")
            save_atomic(blob, encoder_path)  # the best probe's encoder, its meta saying which step it is
        else:
            save_encoder(encoder_path, method.backbone, meta)
    if not losses and (out_dir / "metrics.jsonl").exists():  # nothing left to train: report the last figures
        rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        losses = [r["loss"] for r in rows[-10:]]
        health = next(({k: r[k] for k in ("embedding_std", "effective_rank")} for r in reversed(rows)
                       if "embedding_std" in r), {})
    return TrainResult(
        steps=step, total_steps=total, images_seen=step * cfg.batch_size,
        final_loss=sum(losses) / len(losses) if losses else float("nan"),
        images_per_s=timed_images / timed_s if timed_s else float("nan"),
        views_per_s=timed_views / timed_s if timed_s else float("nan"),
        data_wait_share=wait_s / timed_s if timed_s else float("nan"),
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        world=info.world, wall_s=time.perf_counter() - t_start, resumed_from=resumed_from, health=health,
        peak_gpu_mem_mb=torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None,
        encoder_path=str(encoder_path), probe_curve=probes.curve(), kept_step=kept_step,
        budget_minutes=cfg.budget_minutes)


def _fit_total(budget_s: float, elapsed_s: float, steps_done: int, step_s: float, probes: "_Probes",
               cfg: TrainConfig, world: int, device) -> int:
    """The budget's total steps, the probes still to come set aside. Every rank gets the same total: the
    probe time is rank 0's (the only one probing) and the total is the mean over ranks."""
    first = steps_for_budget(budget_s, elapsed_s, steps_done, step_s)
    n = PROBES_WHEN_AUTO if cfg.probe_every is None else (first // cfg.probe_every if cfg.probe_every else 0)
    n = max(0, n - sum(1 for r in probes.rows if 0 < r["step"] <= steps_done))  # those still to come
    reserve = mean_over_ranks(probes.seconds_each() * n * world, device)  # rank 0's figure (0 elsewhere)
    total = steps_for_budget(budget_s, elapsed_s, steps_done, step_s, reserve_s=reserve)
    return int(mean_over_ranks(float(total), device))


class _Probes:
    """The training monitor's schedule, its figures (out_dir/probes.jsonl) and the best encoder so far."""

    def __init__(self, monitor, cfg: TrainConfig, out_dir: Path, method, device, callback):
        self.monitor, self.cfg, self.out, self.method, self.device, self.callback = (monitor, cfg, out_dir, method,
                                                                                  device, callback)
        self.path = out_dir / "probes.jsonl"
        self.rows = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()] \
            if monitor is not None and self.path.exists() else []
        self.spent: list[float] = []

    def due(self, step: int, total: int | None) -> bool:
        if self.monitor is None or self.cfg.probe_every == 0:
            return False
        if step == 0 or (total is not None and step == total):
            return True
        if total is None:
            return False
        every = self.cfg.probe_every or max(1, math.ceil(total / PROBES_WHEN_AUTO))
        if step % every:
            return False
        # a budget refit can move `every` (and its multiples) by a step or two: not a second probe a few steps
        # after the last one
        last = max((r["step"] for r in self.rows if r["step"] < step), default=None)
        return last is None or step - last >= every // 2

    def maybe(self, step: int, total: int | None) -> bool:
        """Probe the encoder after `step` steps if one is due there (and not already logged). -> probed."""
        if not self.due(step, total) or any(r["step"] == step for r in self.rows):
            return False
        t = time.perf_counter()
        try:
            acc = self.monitor(self.method.backbone, self.cfg.image_size, self.device)
            self.spent.append(time.perf_counter() - t)
            if len(self.spent) == 1 and self.cfg.budget_minutes:  # the first call pays for warm-up: time a second
                t = time.perf_counter()
                self.monitor(self.method.backbone, self.cfg.image_size, self.device)
                self.spent.append(time.perf_counter() - t)
        finally:
            self.method.train()  # the probe put the encoder in eval mode: training goes on in train mode
        row = {"step": step, "knn20": acc, "seconds": self.spent[-1]}
        best = self.best()
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.cfg.keep == "best" and (best is None or acc >= best[1]):  # the latest of equal figures
            save_encoder(self.out / "encoder_best.pt", self.method.backbone, {
                "backbone": self.cfg.backbone, "image_size": self.cfg.image_size, "width": self.cfg.width,
                "patch_size": self.cfg.patch_size, "method": self.cfg.method, "steps": step, "seed": self.cfg.seed,
                "kept": "best", "probe_knn20": acc})
        if self.callback is not None:
            self.callback(step, {"probe_knn20": acc})
        return True

    def seconds_each(self) -> float:
        return min(self.spent) if self.spent else 0.0

    def best(self) -> tuple[int, float] | None:
        if not self.rows:
            return None
        r = max(self.rows, key=lambda r: (r["knn20"], r["step"]))  # the latest of equal figures
        return r["step"], r["knn20"]

    def curve(self) -> list:
        return [[r["step"], r["knn20"]] for r in sorted(self.rows, key=lambda r: r["step"])]


def _check_resumable(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_DIFFERENCES and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise TrainingError(f"{path} was written with another config ({detail}); resume with the same config, "
                            f"or delete the checkpoint (or choose another output folder) to start over")


def _truncate_metrics(path: Path, start: int, keep_at: bool = False) -> None:
    """On resume, drop logged steps at or after the checkpoint (after it only, with keep_at), so the curve
    continues without repeats."""
    if not path.exists():
        return
    keep = [x for x in path.read_text().splitlines() if x.strip() and
            (json.loads(x)["step"] <= start if keep_at else json.loads(x)["step"] < start)]
    path.write_text("".join(x + "\n" for x in keep))
