"""Run the graph through Dagster against the home's instance, the way `sslpipe run` does.

    outcomes = run_pipeline(Settings.from_env(home=".sslpipe"), select=["raw_images", "image_shards"])

New landing folders are registered as batch partitions. The eval set runs first (so that image_shards
leaves copies of eval images out of every batch), then the per-batch assets once per batch in arrival
order (so duplicates are checked against earlier batches), then the eval set's leakage check on the
final shards, and last the encoder's pretraining on the accepted batches, its probes and its registration
(unless that check failed). Runs are
recorded in the instance, so they show in `dagster dev`. Failed checks are collected with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from assets import BATCH_ASSETS, GLOBAL_ASSETS, TRAIN_ASSETS, batches
from pipelines.definitions import BATCH_JOB, EVAL_JOB, LEAKAGE_JOB, TRAIN_JOB, build_definitions
from pipelines.sensors import landing_batches
from pipelines.settings import Settings, SettingsError, prepare_instance

ALL_ASSETS = BATCH_ASSETS + GLOBAL_ASSETS + TRAIN_ASSETS


@dataclass
class FailedCheck:
    asset: str
    check: str
    blocking: bool
    why: str


@dataclass
class RunOutcome:
    job: str
    partition: str | None
    run_id: str
    success: bool
    materialized: list[str] = field(default_factory=list)
    failed_checks: list[FailedCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> list[FailedCheck]:
        return [c for c in self.failed_checks if c.blocking]


def parse_selection(select: str | list[str] | None) -> list[str]:
    if not select:
        return list(ALL_ASSETS)
    names = [s.strip() for s in (select.split(",") if isinstance(select, str) else select) if s.strip()]
    unknown = [n for n in names if n not in ALL_ASSETS]
    if unknown:
        raise SettingsError(f"unknown asset(s) {unknown} in --select; known: {', '.join(ALL_ASSETS)}")
    return names


def register_batches(settings: Settings, instance: dg.DagsterInstance, echo: Callable[[str], None] = print) -> list[str]:
    """Add every usable landing folder not yet known as a partition; return the batches present, in arrival order."""
    found, skipped = landing_batches(settings.home.landing)
    for name, why in skipped.items():
        echo(f"skipping landing/{name}: {why}")
    known = list(instance.get_dynamic_partitions(batches.name))
    new = [b for b in found if b not in known]
    if new:
        instance.add_dynamic_partitions(batches.name, new)
        echo(f"registered {len(new)} new batch(es): {', '.join(new)}")
    present = set(found)
    return [b for b in instance.get_dynamic_partitions(batches.name) if b in present]


def root_cause(err) -> str:
    """The innermost error of a Dagster error chain, as 'Class: message' (the library's own message)."""
    if err is None:
        return "failed"
    while err.cause is not None:
        err = err.cause
    msg = err.message.strip()
    head, sep, rest = msg.partition(": ")
    if sep and head.split(".")[-1] == err.cls_name:  # "package.module.Class: text"
        msg = rest
    return msg if err.cls_name == "Failure" else f"{err.cls_name}: {msg}"


def _outcome(job: str, partition: str | None, result) -> RunOutcome:
    out = RunOutcome(job, partition, result.run_id, result.success)
    for ev in result.get_asset_check_evaluations():
        if not ev.passed:
            blocking = bool(ev.blocking) and ev.severity == dg.AssetCheckSeverity.ERROR
            out.failed_checks.append(FailedCheck(ev.asset_key.to_user_string(), ev.check_name, blocking,
                                                 ev.description or ""))
    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.step_failure_data.error
            if err is not None and err.cls_name == "DagsterAssetCheckFailedError":
                continue  # already reported as a failed blocking check, with its reason
            out.errors.append(f"{ev.step_key}: {root_cause(err)}")
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            out.materialized.append(ev.asset_key.to_user_string())
    return out


def run_pipeline(settings: Settings, select: str | list[str] | None = None, only_batches: list[str] | None = None,
                 echo: Callable[[str], None] = print, log_level: str = "INFO") -> list[RunOutcome]:
    selected = parse_selection(select)
    settings.export()
    instance = prepare_instance(settings)
    present = register_batches(settings, instance, echo)
    if only_batches:
        missing = [b for b in only_batches if b not in present]
        if missing:
            raise SettingsError(f"batch(es) {missing} not found in {settings.home.landing}; present: {present}")
        present = [b for b in present if b in only_batches]
    defs = build_definitions(settings)
    # verbose: Dagster's full event stream; otherwise only the assets' own messages (progress, findings)
    logger = "console" if log_level == "DEBUG" else "sslpipe_console"
    run_config: dict = {"loggers": {logger: {"config": {"log_level": log_level}}}}
    outcomes = []
    glob_sel = [dg.AssetKey(a) for a in GLOBAL_ASSETS if a in selected]
    if glob_sel:
        echo(f"[global] running {', '.join(k.to_user_string() for k in glob_sel)}")
        # the job's own selection (no asset_selection here: that would bring in every check of eval_images,
        # the leakage check too, which must wait for the final shards)
        r = defs.resolve_job_def(EVAL_JOB).execute_in_process(run_config=run_config, instance=instance,
                                                              raise_on_error=False, tags={"sslpipe/command": "run"})
        outcomes.append(_outcome(EVAL_JOB, None, r))
        echo(_describe(outcomes[-1]))
    batch_sel = [dg.AssetKey(a) for a in BATCH_ASSETS if a in selected]
    if batch_sel:
        if not present:
            echo(f"no batch folders in {settings.home.landing}: nothing to ingest")
        job = defs.resolve_job_def(BATCH_JOB)
        for b in present:
            echo(f"[{b}] running {', '.join(k.to_user_string() for k in batch_sel)}")
            r = job.execute_in_process(run_config=run_config, instance=instance, partition_key=b,
                                       asset_selection=batch_sel, raise_on_error=False,
                                       tags={"sslpipe/command": "run"})
            outcomes.append(_outcome(BATCH_JOB, b, r))
            echo(_describe(outcomes[-1]))
    if "eval_images" in selected and LEAKAGE_JOB in {j.name for j in defs.jobs}:
        echo("[global] checking the eval set against every training shard")
        r = defs.resolve_job_def(LEAKAGE_JOB).execute_in_process(run_config=run_config, instance=instance,
                                                                 raise_on_error=False, tags={"sslpipe/command": "run"})
        outcomes.append(_outcome(LEAKAGE_JOB, None, r))
        echo(_describe(outcomes[-1]))
    train_sel = [dg.AssetKey(a) for a in TRAIN_ASSETS if a in selected]
    if train_sel:
        leak = [o for o in outcomes if o.job == LEAKAGE_JOB]
        if leak and not leak[-1].success:
            echo("[global] not training: the eval set's leakage check failed (see above)")
        else:
            echo(f"[global] running {', '.join(k.to_user_string() for k in train_sel)} (pretrain, probe, register)")
            r = defs.resolve_job_def(TRAIN_JOB).execute_in_process(run_config=run_config, instance=instance,
                                                                   asset_selection=train_sel, raise_on_error=False,
                                                                   tags={"sslpipe/command": "run"})
            outcomes.append(_outcome(TRAIN_JOB, None, r))
            echo(_describe(outcomes[-1]))
    return outcomes


def _describe(o: RunOutcome) -> str:
    where = f"[{o.partition}]" if o.partition else "[global]"
    lines = [f"{where} {'ok' if o.success else 'FAILED'}: run {o.run_id[:8]}, materialized {', '.join(o.materialized) or 'nothing'}"]
    lines += [f"{where}   {'BLOCKING' if c.blocking else 'warning'} check {c.asset}:{c.check} failed: {c.why}"
              for c in o.failed_checks]
    lines += [f"{where}   error in {e}" for e in o.errors]
    return "\n".join(lines)
