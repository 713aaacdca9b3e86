"""What runs with no one starting it, in the dagster-daemon (or `dagster dev`). Statuses, intervals and
thresholds come from the config's `automation:` section (pipelines/settings.py DEFAULT_AUTOMATION).

- landing_sensor: each new, complete batch folder (a `_READY` file, or nothing changed for `quiet_seconds`;
  ssl_ops.ingest.ready) becomes a batch partition and an `ingest_batch` run. Incomplete folders are never
  ingested. image_shards depends on eval_images, so while the eval set has never been ingested, the sensor
  requests `ingest_eval` first and the batches on a later tick.
- retrain_sensor: a `train_encoder` run (the leakage decision, then training, probes, registration) when at
  least `min_new_images` accepted, sharded images in the training window are not in the data of the current
  champion or candidate. Its run key is the window's shard digests, so the same data never starts it twice.
- retrain_schedule: `train_encoder` on the cron `retrain_cron` (when set). Unchanged data reuses the encoder.
One training at a time: ssl_encoder is in the pool `sslpipe_train` (one slot).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.gates import blocking_failures
from assets.mlflow_tracking import MlflowTracking
from assets.partitions import batches
from assets.records import read_record
from assets.resources import PipelineHome
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS
from ssl_ops.escape import terminal
from ssl_ops.home import EVAL_BATCH
from ssl_ops.ingest.ready import batch_readiness, listing_readiness

STATUS = {"running": dg.DefaultSensorStatus.RUNNING, "stopped": dg.DefaultSensorStatus.STOPPED}
SCHEDULE_STATUS = {"running": dg.DefaultScheduleStatus.RUNNING, "stopped": dg.DefaultScheduleStatus.STOPPED}


def batch_problem(folder: Path) -> str | None:
    """Why a landing folder's name cannot become a batch partition, or None when it can."""
    name = folder.name
    if name.startswith("."):
        return "hidden folder"
    if name == EVAL_BATCH:
        return f"'{EVAL_BATCH}' is reserved for the eval set's manifests; rename the folder"
    bad = [s for s in INVALID_PARTITION_SUBSTRINGS if s in name] + [c for c in ",[]" if c in name]
    if bad:
        return f"folder name contains {bad!r}, which a Dagster partition key cannot hold; rename it"
    return None


def landing_batches(landing: Path, quiet_seconds: float, now: float | None = None,
                    taken: set[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
    """(complete batch folder names, sorted; {folder name not taken now: why}). Folders may vanish meanwhile.
    `taken`: batches already registered and ingested: complete by then, so their files are not looked at again
    (a tick would otherwise stat every file ever landed)."""
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist: create it and put one folder per batch of "
                                f"images in it (or run `sslpipe demo`)")
    ok, skipped = [], {}
    try:
        folders = sorted(p for p in landing.iterdir() if p.is_dir())
    except FileNotFoundError:  # the landing folder itself went away meanwhile
        return [], {}
    for f in folders:
        if f.name in taken:
            ok.append(f.name)
            continue
        why = batch_problem(f)
        if why is None:
            ready, state = batch_readiness(f, quiet_seconds, now)
            why = None if ready else state
        if why:
            skipped[f.name] = why
        else:
            ok.append(f.name)
    return ok, skipped


def complete_batches(home: PipelineHome, quiet_seconds: float, now: float | None = None,
                     taken: set[str] = frozenset()) -> tuple[list[str], dict[str, str]]:
    """landing_batches of the home's landing: the local folder, or (production) the prefix's landing/: its batch
    prefixes listed once, then the objects of the batches not `taken` yet, where a batch is complete by its
    `_READY` object or the quiet period over the objects' times."""
    store = home.store()
    if store is None:
        return landing_batches(home.paths().landing, quiet_seconds, now, taken)
    ok, skipped = [], {}
    names = store.prefixes("landing")
    fresh = [n for n in names if n not in taken]
    listed = dict(store.batches("landing")) if len(fresh) > len(names) // 2 else \
        {n: store.files(f"landing/{n}") for n in fresh}  # one listing, or one per new batch: the fewer requests
    for name in names:
        if name in taken:
            ok.append(name)
            continue
        files = listed.get(name, [])
        why = batch_problem(Path(name))
        if why is None:
            ready, state = listing_readiness(files, quiet_seconds, now)
            why = None if ready else state
        if why:
            skipped[name] = why
        else:
            ok.append(name)
    return ok, skipped


def _waiting(skipped: dict[str, str], limit: int = 3) -> str:
    return "; ".join(f"{terminal(n)}: {terminal(w)}" for n, w in list(skipped.items())[:limit]) + (
        f"; and {len(skipped) - limit} more" if len(skipped) > limit else "")


def build_landing_sensor(ingest_batch_job, ingest_eval_job, auto: dict) -> dg.SensorDefinition:
    quiet = auto["quiet_seconds"]
    ingest_batch, ingest_eval = ingest_batch_job.name, ingest_eval_job.name

    @dg.sensor(name="landing_sensor", jobs=[ingest_batch_job, ingest_eval_job], minimum_interval_seconds=auto["sensor_interval_seconds"],
               default_status=STATUS[auto["landing_sensor"]],
               description=f"Registers each new, complete landing folder (a _READY file, or unchanged for {quiet}s) "
                           f"as a batch partition and runs {ingest_batch} on it; runs {ingest_eval} first while the "
                           f"eval set has never been ingested.")
    def landing_sensor(context: dg.SensorEvaluationContext, home: PipelineHome) -> dg.SensorResult:
        h = home.paths()
        if not home.remote and not h.landing.is_dir():
            return dg.SensorResult(skip_reason=f"landing folder {h.landing} does not exist")
        known = set(context.instance.get_dynamic_partitions(batches.name))
        taken = {b for b in known if h.accepted_path(b).is_file()}
        found, skipped = complete_batches(home, quiet, taken=taken)
        # new: not a partition yet, or registered (by `sslpipe run --select ...`) but never ingested. A batch whose
        # run is queued or failed is asked for again under the same run key, which Dagster never launches twice.
        new = [b for b in found if b not in known or not h.accepted_path(b).is_file()]
        waiting = {k: v for k, v in skipped.items() if k not in known}
        if not new:
            return dg.SensorResult(skip_reason=f"no new complete batch folder in {home.landing_label}"
                                               + (f" (waiting: {_waiting(waiting)})" if waiting else ""))
        if read_record(h.root, "eval_images") is None:  # image_shards needs the eval set's record
            return dg.SensorResult(
                run_requests=[dg.RunRequest(job_name=ingest_eval, run_key=f"eval:{h.eval_dir}",
                                            tags={"sslpipe/trigger": "landing_sensor"})])
        return dg.SensorResult(
            run_requests=[dg.RunRequest(job_name=ingest_batch, partition_key=b, run_key=f"ingest:{b}",
                                        tags={"sslpipe/trigger": "landing_sensor"}) for b in new],
            dynamic_partitions_requests=[batches.build_add_request([b for b in new if b not in known])],
        )

    return landing_sensor


def training_window(h, known: list[str], train: dict) -> dict[str, dict]:
    """{batch: {digest, samples}} of the batches ssl_encoder would train on now: sharded, no failed blocking
    check, within the configured window (train.batches, train.last_batches)."""
    wanted = list(train.get("batches") or known)
    registered = set(known)  # one lookup per batch: a list search here made every tick O(N^2) in the batches
    window = {}
    for b in wanted:
        index = h.shard_index_path(b)
        if b not in registered or not index.is_file() or blocking_failures(h, b):
            continue
        try:
            d = json.loads(index.read_text())
        except (OSError, ValueError):  # being rewritten, or damaged: training would refuse it and say why
            continue
        if d.get("samples"):
            window[b] = {"digest": d["digest"], "samples": d["samples"]}
    last = train.get("last_batches") or 0
    return dict(list(window.items())[-last:]) if last else window


def seen_by_models(mlflow: MlflowTracking) -> dict[str, set[str]]:
    """{batch: shard index digests} the champion and the candidate were trained on (from their MLflow tags)."""
    from assets.mlflow_registry import Registry

    reg, seen = Registry(mlflow), {}
    for alias in ("champion", "candidate"):
        v = reg.alias(alias)
        if v is not None:
            for b, d in json.loads(v.tags.get("sslpipe.shard_index_digests", "{}")).items():
                seen.setdefault(b, set()).add(d)
    return seen


def new_images(window: dict[str, dict], seen: dict[str, set[str]]) -> int:
    """Images in the window's batches whose shards (as they are now) no registered champion or candidate saw."""
    return sum(w["samples"] for b, w in window.items() if w["digest"] not in seen.get(b, set()))


def build_retrain_sensor(train_job: str, auto: dict, train: dict) -> dg.SensorDefinition:
    need = auto["min_new_images"]

    @dg.sensor(name="retrain_sensor", job_name=train_job, minimum_interval_seconds=auto["sensor_interval_seconds"],
               default_status=STATUS[auto["retrain_sensor"]],
               description=f"Runs {train_job} (leakage decision, training, probes, registration) when at least {need} "
                           "accepted, sharded images in the training window are new to the champion and candidate.")
    def retrain_sensor(context: dg.SensorEvaluationContext, home: PipelineHome,
                       mlflow: MlflowTracking) -> dg.SensorResult:
        h = home.paths()
        window = training_window(h, list(context.instance.get_dynamic_partitions(batches.name)), train)
        if not window:
            return dg.SensorResult(skip_reason="no batch has passed its checks and been sharded yet")
        try:
            seen = seen_by_models(mlflow)
        except Exception as e:  # noqa: BLE001 - the tracking server is away: ask again on the next tick
            return dg.SensorResult(skip_reason=f"the MLflow registry is unreachable ({type(e).__name__}: {e}); "
                                               "trying again on the next tick")
        n = new_images(window, seen)
        if n < need:
            return dg.SensorResult(skip_reason=f"{n} new image(s) in the window of {len(window)} batch(es) since the "
                                               f"champion's and candidate's data; retraining at {need}")
        key = hashlib.sha256(json.dumps(sorted((b, w["digest"]) for b, w in window.items())).encode()).hexdigest()[:16]
        context.log.info(f"retrain_sensor: {n} new image(s) in {len(window)} batch(es): requesting {train_job}")
        return dg.SensorResult(run_requests=[dg.RunRequest(
            run_key=f"retrain:{key}", tags={"sslpipe/trigger": "retrain_sensor", "sslpipe/new_images": str(n),
                                             "sslpipe/window": ",".join(window)[:1000]})])

    return retrain_sensor


def build_retrain_schedule(train_job: str, auto: dict) -> dg.ScheduleDefinition | None:
    if not auto.get("retrain_cron"):
        return None
    return dg.ScheduleDefinition(
        name="retrain_schedule", job_name=train_job, cron_schedule=auto["retrain_cron"],
        execution_timezone=auto["timezone"], default_status=SCHEDULE_STATUS[auto["retrain_schedule"]],
        tags={"sslpipe/trigger": "retrain_schedule"},
        description=f"Runs {train_job} on the cron {auto['retrain_cron']} ({auto['timezone']}); unchanged data reuses "
                    "the encoder and registers nothing new.")
