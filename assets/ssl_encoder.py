"""ssl_encoder: self-supervised pretraining (ssl_ops.train) on the shards of a window of accepted batches.

Config comes from the `train:` section of `sslpipe run --config FILE` (the launchpad's defaults) and can be
changed in the launchpad.

- Verified data: before training (or reusing), every shard of the window is checked against its index
  (the index's own digest and counts, each shard's size and sha256, at about 1 GB/s); a
  damaged one fails the asset naming the shard and the command that rebuilds it. While training, the loader
  counts each shard's samples against the index and names a sample that does not decode.
- The run key covers what was verified: (code version, train config, per batch its index digest and each
  shard's name, sample count and sha256 as measured on disk). Training only ever starts on shards that match
  their index, so an encoder under a key was trained on exactly those bytes: a rewritten shard with other
  content gets another key and can never reuse an encoder trained on its damaged predecessor; rewritten
  identical bytes (shards are deterministic) keep the key. CODE_VERSION 2: keys of encoders trained before
  shards were verified are not reused.
- One training per key: the train-or-reuse section holds a lock on models/<key>/.lock (ssl_ops.locks). A
  second run of the same key waits (and logs why), then finds result.json and reuses the encoder, so two
  processes never log into one MLflow run. The same key is not trained twice (the asset reuses the
  encoder), and a run that died is resumed from its checkpoint in models/<key>/, logging into the same
  MLflow run.
- The recipe fits the data (ssl_ops.train.recipe.fit): the "auto" keys of the train config (image_size from
  the window's accepted images' sizes, width from the device, no flips where the contract says the images are
  orientation-sensitive) are settled here, logged, and part of the run key; a budget (train.budget_minutes,
  the default) fixes the step count while training.
- A kNN probe in step with training (ssl_ops.train.monitor) on held-out probe-train rows of the eval set
  (never the probe report's test rows): a curve in MLflow (`probe_knn20`) and what `keep: best` picks by.
- Where it trains: the `trainer` resource (assets.train_launch): InProcessTraining (this process) or
  TorchrunTraining (a torchrun DDP job through Dagster Pipes). Only the training itself goes through it; the
  key, the lock, reuse, result.json and MLflow stay here. A launched job that was killed is retried (and
  resumes); one that stopped for a reason fails naming it, with the tail of its stderr.
"""

import dataclasses
import hashlib
import json
import time
import typing
from pathlib import Path

import dagster as dg
import pydantic

from assets.gates import blocking_failures
from assets.mlflow_tracking import MlflowTracking
from assets.partitions import batches as batches_partitions
from assets.policies import TRAIN_RETRY, failure
from assets.records import EvalSet, LeakageDecision, TrainedEncoder
from assets.resources import PipelineHome
from assets.train_launch import TrainingCrashed, TrainingKilled, TrainLauncher
from ssl_ops.home import EVAL_BATCH
from ssl_ops.locks import file_lock
from ssl_ops.manifest import read_manifest
from ssl_ops.shards.verify import ShardDamaged, rebuild_command, verify_batch
from ssl_ops.shards.verify_home import gates_passed
from ssl_ops.train import ConfigError, TrainConfig, TrainingError
from ssl_ops.train.recipe import fit

CODE_VERSION = "3"  # 2: shards verified before training; the key holds each shard's sha256. 3: fitted recipes
TRAIN_POOL = "sslpipe_train"  # one training at a time across runs (limit 1: the instance's dagster.yaml)


def train_run_config(defaults: dict | None) -> type[dg.Config]:
    """A launchpad config with every TrainConfig field (defaults: the configured train section), method
    options as JSON text, and the window of batches (defaults: its `batches` and `last_batches` keys)."""
    defaults = dict(defaults or {})
    window = {k: defaults.pop(k) for k in ("batches", "last_batches") if k in defaults}
    base = TrainConfig.from_dict(defaults)
    hints = typing.get_type_hints(TrainConfig)
    fields: dict = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "method_options":
            fields[f.name] = (str, pydantic.Field(default=json.dumps(base.method_options),
                                                  description="the method's options, as a JSON object"))
        else:
            fields[f.name] = (hints[f.name], getattr(base, f.name))
    fields["batches"] = (list[str], pydantic.Field(default=list(window.get("batches", [])), description="batches to train on (empty: every "
                                                                           "accepted batch with shards)"))
    fields["last_batches"] = (int, pydantic.Field(default=window.get("last_batches", 0), description="only the latest N accepted ones (0: all)"))
    cls = pydantic.create_model("TrainRunConfig", __base__=dg.Config, __doc__=TrainConfig.__doc__, **fields)

    def to_library(self) -> TrainConfig:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        try:
            d["method_options"] = json.loads(self.method_options or "{}")
        except json.JSONDecodeError as e:
            raise ConfigError(f"train.method_options is not a JSON object: {e}") from None
        return TrainConfig.from_dict(d)

    cls.to_library = to_library
    return cls


def select_window(h, known: list[str], wanted: list[str], last: int) -> tuple[list[dict], list[str]]:
    """-> ([{batch, index, digest, samples}] in arrival order, [skipped: why]). Not yet verified: see
    verify_window."""
    unknown = [b for b in wanted if b not in known]
    if unknown:
        raise failure(f"ssl_encoder: unknown batch(es) {unknown} in the window; known: {known}")
    window, skipped = [], []
    for b in (wanted or known):
        index = h.shard_index_path(b)
        failed = blocking_failures(h, b)
        if failed:
            skipped.append(f"{b}: failed blocking check(s): {' | '.join(failed)}")
        elif not index.is_file():
            if h.accepted_path(b).is_file() and gates_passed(h, b):  # it should have shards: never train without it
                raise failure(f"ssl_encoder: batch {b!r} passed its checks but has no shard index at {index} "
                                 f"(deleted, or image_shards has not run for it); not training without it. Run: "
                                 f"{rebuild_command(b, h.root, 'image_shards')}")
            skipped.append(f"{b}: no shards (image_shards has not run for it)")
        else:
            d = json.loads(index.read_text())
            if d["samples"] == 0:
                skipped.append(f"{b}: its shards hold no samples")
            else:
                window.append({"batch": b, "index": str(index), "digest": d["digest"], "samples": d["samples"]})
    if last:
        window = window[-last:]
    return window, skipped


def verify_window(h, window: list[dict]) -> list[dict]:
    """Check every index and shard of the window (index digest and counts, shard size and sha256); add to each
    entry `shards`: [[name, samples, sha256 measured on disk]]. Raises ShardDamaged naming each damaged shard
    and the command that rebuilds its batch."""
    damaged, out = [], []
    for w in window:
        c = verify_batch(Path(w["index"]).parent, batch=w["batch"], home=h.root)
        if not c.ok:
            damaged.append(c.describe())
        else:
            out.append({**w, "digest": c.digest, "samples": c.samples,
                        "shards": [[s["name"], s["samples"], s["sha256"]] for s in c.shards]})
    if damaged:
        raise ShardDamaged("damaged shard data, not trained on: " + " | ".join(damaged))
    return out


def require_leakage_decision(decision: LeakageDecision, window: list[dict], log) -> None:
    """Train only on shards that the leakage decision covered as they are now, and not at all when it failed
    and the contract makes it blocking. (In the train_encoder job eval_leakage runs first, and its blocking check
    already stops this asset when it fails; this covers a run that selects ssl_encoder alone.)"""
    stale = [w["batch"] for w in window if not decision.covers(w["batch"], w["digest"])]
    if stale:
        raise failure(f"ssl_encoder: the leakage decision does not cover the shards of batch(es) {stale} as they are "
                      f"now (sharded or rebuilt since it was made): materialize eval_leakage first (the "
                      f"train_encoder job does)")
    if not decision.passed:
        if decision.blocking:
            raise failure(f"ssl_encoder: not training: the leakage decision failed: {decision.summary}")
        log.warning(f"ssl_encoder: the leakage decision failed (a warning in the contract): {decision.summary}")


def run_key(cfg: TrainConfig, window: list[dict], eval_digest: str | None = None) -> str:
    """The training's identity: code version, the fitted train config and, per batch, its index digest and every
    shard's (name, samples, sha256) as verified on disk (window entries from verify_window); with keep: best
    also the eval set's digest (the training probe picks the encoder)."""
    payload = {"code": CODE_VERSION, "train": cfg.to_dict(),
               "data": [(w["batch"], w["digest"], w["shards"]) for w in window]}
    if cfg.keep == "best":
        payload["eval"] = eval_digest
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def short_sides(h, window: list[dict]) -> list[int]:
    """The short side (px) of every accepted image of the window's batches (their manifests)."""
    sides = []
    for w in window:
        t = read_manifest(h.accepted_path(w["batch"]), columns=["width", "height"])
        sides += [min(a, b) for a, b in zip(t.column("width").to_pylist(), t.column("height").to_pylist())]
    return sides


def fit_recipe(h, cfg: TrainConfig, window: list[dict], orientation_sensitive: bool, log) -> TrainConfig:
    """The auto keys settled from the window's images and the device, each choice logged."""
    try:
        fitted, notes = fit(cfg, short_sides(h, window) if cfg.image_size is None else None,
                            orientation_sensitive=orientation_sensitive)
    except (ConfigError, ValueError) as e:
        raise failure(f"ssl_encoder: {e}") from None
    for n in notes:
        log.info(f"ssl_encoder: recipe: {n}")
    return fitted


def write_monitor(h, cfg: TrainConfig, out: Path, probe: dict, log) -> Path | None:
    """models/<key>/monitor.npz: the eval set's probe-train rows (the probe report's split), decoded at the
    encoder's size, split into a bank and held-out queries (ssl_ops.train.monitor). None: no probing."""
    import numpy as np

    from ssl_ops.probes.evalset import load_eval_arrays
    from ssl_ops.probes.report import ProbeConfig
    from ssl_ops.probes.split import probe_split
    from ssl_ops.train.monitor import monitor_arrays

    if cfg.probe_every == 0:
        return None
    path = out / "monitor.npz"
    if path.is_file():
        return path
    pcfg = ProbeConfig(**{k: v for k, v in (probe or {}).items() if k in ProbeConfig.__dataclass_fields__})
    data = load_eval_arrays(read_manifest(h.accepted_path(EVAL_BATCH)), h.eval_dir, cfg.image_size)
    train_idx, _ = probe_split(data.labels, pcfg.test_fraction, pcfg.seed)
    try:
        arrays = monitor_arrays(data.images, data.labels, train_idx, seed=pcfg.seed)
    except ValueError as e:
        log.warning(f"ssl_encoder: no probe while training: {e}")
        return None
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "monitor.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(path)
    log.info(f"ssl_encoder: probing while training on {len(arrays['query'])} held-out of the eval set's "
             f"{len(train_idx)} probe-train images (kNN k=20 against the other {len(arrays['bank'])}); the probe "
             f"report's test rows are not used")
    return path


def build_ssl_encoder(train_defaults: dict | None = None, orientation_sensitive: bool = False,
                      probe_defaults: dict | None = None) -> dg.AssetsDefinition:
    """orientation_sensitive: the training contract's images.orientation_sensitive (no flips when true);
    probe_defaults: the probe section (the training probe uses the probe report's split)."""
    TrainRunConfig = train_run_config(train_defaults)

    @dg.asset(group_name="training", code_version=CODE_VERSION, kinds={"pytorch", "mlflow"},
              deps=[dg.AssetDep("image_shards", partition_mapping=dg.AllPartitionMapping())],
              pool=TRAIN_POOL, retry_policy=TRAIN_RETRY,
              description="Self-supervised pretraining (SimCLR, BYOL, MoCo v3, DINO, MAE, VICReg, Barlow Twins) on "
                          "the shards of a window of accepted batches; GPU when present, else CPU. Logs params, "
                          "per-step metrics and artifacts to MLflow; resumes from its checkpoint; does not retrain "
                          "on unchanged data and config.")
    def ssl_encoder(context: dg.AssetExecutionContext, config: TrainRunConfig, home: PipelineHome,
                    mlflow: MlflowTracking, trainer: TrainLauncher, eval_leakage: LeakageDecision,
                    eval_images: EvalSet) -> dg.MaterializeResult[TrainedEncoder]:
        h = home.paths()
        try:
            cfg = config.to_library()
        except ConfigError as e:
            raise failure(str(e)) from None
        known = list(context.instance.get_dynamic_partitions(batches_partitions.name))
        window, skipped = select_window(h, known, list(config.batches), config.last_batches)
        for s in skipped:
            context.log.warning(f"ssl_encoder: leaving out {s}")
        if not window:
            raise failure("ssl_encoder: no accepted batch has shards to train on; land images and run the "
                          "ingest_batch job (sslpipe run) first. A landing folder is taken once it is complete: "
                          "with a _READY file in it (sslpipe land writes one), or when nothing in it changed for "
                          "automation.quiet_seconds of the settings (the run's 'skipping landing/...' line gives "
                          "its value)")
        try:
            window = verify_window(h, window)
        except ShardDamaged as e:
            raise failure(f"ssl_encoder: {e}") from None
        require_leakage_decision(eval_leakage, window, context.log)
        cfg = fit_recipe(h, cfg, window, orientation_sensitive, context.log)
        key = run_key(cfg, window, eval_images.digest)
        out = h.model_dir(key)
        # one training per key: a second process waits here, then finds result.json and reuses the encoder
        with file_lock(out / ".lock", what=f"training run {key}",
                       on_wait=lambda msg: context.log.info(f"ssl_encoder: {msg}; then its encoder is reused "
                                                            f"(or, if it failed, training resumes here)")):
            return _train_or_reuse(context, cfg, window, key, out, mlflow, trainer,
                                   lambda: write_monitor(h, cfg, out, probe_defaults, context.log))

    return ssl_encoder


def _train_or_reuse(context, cfg: TrainConfig, window: list[dict], key: str, out: Path,
                    mlflow: MlflowTracking, trainer: TrainLauncher, monitor=lambda: None) -> dg.MaterializeResult:
    """Call with the lock on models/<key>/ held."""
    samples = sum(w["samples"] for w in window)
    result_path = out / "result.json"
    names = [w["batch"] for w in window]
    if result_path.is_file() and (out / "encoder.pt").is_file():
        result = json.loads(result_path.read_text())
        context.log.info(f"ssl_encoder: reusing the encoder trained on the same data and config ({out})")
        return _materialization(key, result, window, cfg, out, mlflow, reused=True)

    run_id_path = out / "mlflow_run_id"
    run = mlflow.resume_run(run_id_path.read_text().strip()) if run_id_path.is_file() else None
    if run is None:
        run = mlflow.start_run("ssl_encoder", tags={
            "sslpipe.asset": "ssl_encoder", "sslpipe.run_key": key, "dagster.run_id": context.run_id,
            "sslpipe.batches": ",".join(names), "sslpipe.method": cfg.method, "sslpipe.backbone": cfg.backbone})
        out.mkdir(parents=True, exist_ok=True)
        run_id_path.write_text(run.run_id)
        run.log_params({**{k: json.dumps(v) if isinstance(v, dict) else v for k, v in cfg.to_dict().items()},
                        "batches": ",".join(names), "samples": samples,
                        "shard_index_digests": json.dumps({w["batch"]: w["digest"] for w in window})})
    else:
        context.log.info(f"ssl_encoder: resuming from the checkpoint in {out} (MLflow run {run.run_id})")
        run.set_tags({"dagster.run_id": context.run_id})  # the run now writing into it (see runner.end_mlflow_runs)
    try:
        result = _train_and_log(context, cfg, window, samples, out, run, trainer, monitor())
    except (TrainingError, ShardDamaged) as e:
        run.finish("FAILED")
        raise failure(f"ssl_encoder: {e}") from None
    except TrainingKilled as e:  # a launched job killed by a signal: the retry resumes from the checkpoint
        context.log.warning(f"ssl_encoder: {e}")  # Dagster's retry event shows only RetryRequestedFromPolicy
        run.finish("KILLED")
        raise
    except TrainingCrashed as e:
        context.log.error(f"ssl_encoder: {e}")
        run.finish("FAILED")
        raise
    except Exception:
        run.finish("FAILED")
        raise
    except BaseException:  # interrupted (Ctrl-C, run terminated): resumable from the checkpoint
        run.finish("KILLED")
        raise
    result_path.write_text(json.dumps(result, indent=1))  # last: its presence means "done, reusable"
    return _materialization(key, result, window, cfg, out, mlflow, reused=False)


def _train_and_log(context, cfg: TrainConfig, window: list[dict], samples: int, out: Path, run,
                   trainer: TrainLauncher, monitor: Path | None = None) -> dict:
    """Train (or resume), logging each step to the MLflow run; then the summary, any steps a killed attempt
    did not get to flush, and the artifacts. -> the result (TrainResult + MLflow ids)."""
    total = cfg.total_steps(samples)
    names = [w["batch"] for w in window]
    length = (f"{total} steps" if total is not None else
              f"{cfg.budget_minutes:g} minutes (the step count is measured in the first steps)")
    context.log.info(f"ssl_encoder: {cfg.method} / {cfg.backbone} at {cfg.image_size} px on {samples} images of "
                     f"{len(window)} batch(es) ({', '.join(names)}), {length} of {cfg.batch_size}; MLflow run "
                     f"{run.run_id}")
    every = max(1, (total or 100) // 10)  # a progress line every tenth of the steps, or of the budget's minutes
    started, last_line = time.monotonic(), -1e9

    def on_step(step: int, metrics: dict) -> None:
        nonlocal last_line
        run.log_metrics(metrics, step)
        if "probe_knn20" in metrics:
            context.log.info(f"ssl_encoder: probe after {step} steps: kNN k=20 {metrics['probe_knn20']:.4f} on "
                             f"held-out probe-train images")
            return
        line = f"loss {metrics['loss']:.4f} lr {metrics['lr']:.3g} {metrics['images_per_s']:.0f} images/s"
        if total is not None and (step % every == 0 or step == total - 1):
            context.log.info(f"ssl_encoder: step {step + 1}/{total} {line}")
        elif total is None and time.monotonic() - last_line >= cfg.budget_minutes * 6:
            last_line = time.monotonic()
            context.log.info(f"ssl_encoder: step {step + 1}, {(last_line - started) / 60:.1f} of "
                             f"{cfg.budget_minutes:g} minutes, {line}")

    res = trainer.train(context, cfg, window, samples, out, on_step, monitor=monitor)
    run.flush()
    if res.resumed_from is not None:  # steps logged to the file before the kill but never flushed to MLflow
        logged = run.logged_steps("loss")
        for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()):
            if row["step"] not in logged:
                run.log_metrics({k: v for k, v in row.items() if k != "step"}, row["step"])
        logged = run.logged_steps("probe_knn20")
        for step, acc in res.probe_curve:
            if step not in logged:
                run.log_metrics({"probe_knn20": acc}, step)
    if res.probe_curve:
        best = max(res.probe_curve, key=lambda p: (p[1], p[0]))
        kept = (f"the best, after {res.kept_step} steps" if res.kept_step is not None
                else "the last" + (" (keep: best; the last was the best)" if cfg.keep == "best" else ""))
        context.log.info(f"ssl_encoder: training probe (kNN k=20, held-out probe-train images): "
                         f"{res.probe_curve[0][1]:.4f} at step 0, {res.probe_curve[-1][1]:.4f} after {res.steps} "
                         f"steps, best {best[1]:.4f} after {best[0]}; the encoder kept is {kept}")
    result = {**res.to_dict(), "mlflow_run_id": run.run_id, "mlflow_experiment_id": run.experiment_id,
              "mlflow_url": run.url, "verified_shards": {w["batch"]: w["shards"] for w in window}}
    run.log_metrics({"final_loss": res.final_loss, "images_per_s_mean": res.images_per_s,
                     "views_per_s_mean": res.views_per_s, "data_wait_share_mean": res.data_wait_share,
                     **{f"final_{k}": v for k, v in res.health.items()}}, step=res.steps)
    for name in ("encoder.pt", "config.json", "metrics.jsonl", "probes.jsonl"):
        if (out / name).is_file():
            run.log_artifact(out / name, "encoder" if name == "encoder.pt" else "training")
    run.log_dict(result, "training/result.json")
    run.finish()
    return result


def _materialization(key, result, window, cfg, out, mlflow, reused) -> dg.MaterializeResult:
    record = TrainedEncoder(run_key=key, batches=[w["batch"] for w in window],
                            shard_index_digests={w["batch"]: w["digest"] for w in window},
                            samples=sum(w["samples"] for w in window), method=cfg.method, backbone=cfg.backbone,
                            image_size=cfg.image_size, encoder=str(out / "encoder.pt"),
                            mlflow_run_id=result["mlflow_run_id"], mlflow_run=result.get("mlflow_url") or "",
                            reused=reused)
    return dg.MaterializeResult(
        value=record,
        data_version=dg.DataVersion(key),
        metadata={
            "batches": [w["batch"] for w in window],
            "shard_index_digests": {w["batch"]: w["digest"] for w in window},
            "samples": sum(w["samples"] for w in window),
            "method": cfg.method, "backbone": cfg.backbone, "image_size": cfg.image_size,
            "steps": result["steps"], "images_seen": result["images_seen"],
            "budget_minutes": cfg.budget_minutes if cfg.budget_minutes is not None else 0.0,
            "width": cfg.width, "hflip": bool(cfg.method_options.get("hflip", True)), "keep": cfg.keep,
            "kept_step": result.get("kept_step") if result.get("kept_step") is not None else -1,
            **({"probe_knn20_curve": dg.MetadataValue.md(
                "| steps | kNN k=20 (held-out probe-train) |\n|---|---|\n" +
                "".join(f"| {s} | {a:.4f} |\n" for s, a in result["probe_curve"])),
                "probe_knn20_last": round(result["probe_curve"][-1][1], 4)} if result.get("probe_curve") else {}),
            "images_per_s": round(result["images_per_s"], 1), "views_per_s": round(result["views_per_s"], 1),
            "data_wait_share": round(result["data_wait_share"], 4), "final_loss": round(result["final_loss"], 5),
            **{k: round(v, 4) for k, v in result["health"].items()},
            "device": result["device"], "world_size": result["world"], "wall_s": round(result["wall_s"], 1),
            "resumed_from_step": result["resumed_from"] if result["resumed_from"] is not None else -1,
            "reused": reused, "run_key": key,
            "encoder": dg.MetadataValue.path(str(out / "encoder.pt")),
            "mlflow_run_id": result["mlflow_run_id"],
            "mlflow_run": dg.MetadataValue.url(result["mlflow_url"]),
            "mlflow_ui": dg.MetadataValue.text(mlflow.ui_command()),
        })
