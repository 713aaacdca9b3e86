"""The landing sensor: each new, settled batch folder becomes a partition and an ingest_batch run."""


import time
from pathlib import Path

import dagster as dg

from assets.partitions import batches
from assets.resources import PipelineHome
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS
from ssl_ops.home import EVAL_BATCH

SETTLE_SECONDS = 60  # a folder whose newest file is younger than this is still landing


def batch_problem(folder: Path) -> str | None:
    """Why a landing folder cannot become a batch partition, or None when it can."""
    name = folder.name
    if name.startswith("."):
        return "hidden folder"
    if name == EVAL_BATCH:
        return f"'{EVAL_BATCH}' is reserved for the eval set's manifests; rename the folder"
    bad = [s for s in INVALID_PARTITION_SUBSTRINGS if s in name] + [c for c in ",[]" if c in name]
    if bad:
        return f"folder name contains {bad!r}, which a Dagster partition key cannot hold; rename it"
    if not any(p.is_file() for p in folder.rglob("*")):
        return "empty folder (no files yet)"
    return None


def newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


def landing_batches(landing: Path) -> tuple[list[str], dict[str, str]]:
    """(usable batch folder names, sorted; {skipped folder name: why})."""
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist: create it and put one folder per batch of "
                                f"images in it (or run `sslpipe demo`)")
    ok, skipped = [], {}
    for f in sorted(p for p in landing.iterdir() if p.is_dir()):
        why = batch_problem(f)
        if why:
            skipped[f.name] = why
        else:
            ok.append(f.name)
    return ok, skipped


def build_landing_sensor(job, settle_seconds: int = SETTLE_SECONDS) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
               description="Registers each new landing folder as a batch partition and runs ingest_batch on it, "
                           f"once its newest file is {settle_seconds}s old.")
    def landing_sensor(context: dg.SensorEvaluationContext, home: PipelineHome) -> dg.SensorResult:
        landing = home.paths().landing
        if not landing.is_dir():
            return dg.SensorResult(skip_reason=f"landing folder {landing} does not exist")
        found, skipped = landing_batches(landing)
        known = set(context.instance.get_dynamic_partitions(batches.name))
        now = time.time()
        new = [b for b in found if b not in known and now - newest_mtime(landing / b) >= settle_seconds]
        if not new:
            return dg.SensorResult(skip_reason=f"no new settled batch folder in {landing} ({len(skipped)} skipped)")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=b, run_key=f"ingest:{b}", tags={"sslpipe/trigger": "sensor"})
                          for b in new],
            dynamic_partitions_requests=[batches.build_add_request(new)],
        )

    return landing_sensor
