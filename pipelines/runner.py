"""`sslpipe run`: register new batches, choose what to run, start it through the instance, report.

    outcomes = run_pipeline(Settings.from_env(home=".sslpipe"), select=["raw_images", "image_shards"])

New, complete landing folders (a _READY file, or unchanged for automation.quiet_seconds) are registered as
batch partitions. The runs are those of the jobs in pipelines/definitions.py (the ones the sensors, the
schedule and the UI start), ordered by the assets' declared dependencies: a job runs after every job holding
an asset upstream of one of its assets (so ingest_eval, then ingest_batch once per batch, then train_encoder,
whose eval_leakage check blocks training when it fails). Each run is created in the instance with the code
location's origin (pipelines/launch.py) and executed in this process, since the embedded default has no
daemon: the UI shows it and can re-execute it. Failed checks are collected with their reason.

Several `sslpipe run`s may share a home: batch registration is idempotent under a lock. Each run is tagged
with the process executing it (sslpipe/pid, sslpipe/host), so that the next `sslpipe run` marks FAILED the
runs whose process is gone. A full disk, in a step or as Dagster writes its event log, ends everything with
DiskFull (ssl_ops.diskfull): one line saying where and how much is free, and the run recorded as failed.
"""

from __future__ import annotations

import contextlib
import graphlib
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg

from assets import BATCH_ASSETS, GLOBAL_ASSETS, TRAIN_ASSETS, batches
from assets.partitions import add_batches
from pipelines.definitions import BATCH_JOB, JOB_ASSETS, build_definitions
from pipelines.launch import create_run, execute
from pipelines.sensors import complete_batches
from pipelines.settings import Settings, SettingsError, prepare_instance, resources_for
from ssl_ops.escape import terminal
from ssl_ops.locks import pid_alive
from ssl_ops.diskfull import DiskFull, is_disk_full, path_in_error

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
    """Add every complete, usable landing folder not yet known as a partition; return the batches present and
    complete, in registration order."""
    home = resources_for(settings)["home"]
    h = settings.home
    taken = {b for b in instance.get_dynamic_partitions(batches.name) if h.accepted_path(b).is_file()}
    found, skipped = complete_batches(home, settings.auto["quiet_seconds"], taken=taken)
    for name, why in skipped.items():
        echo(f"skipping landing/{terminal(name)}: {terminal(why)}")
    new = add_batches(instance, found, settings.home.dagster_home / ".partitions.lock")
    if new:
        echo(f"registered {len(new)} new batch(es): {', '.join(map(terminal, new))}")
    present = set(found)
    return [b for b in instance.get_dynamic_partitions(batches.name) if b in present]


def job_order(defs: dg.Definitions) -> list[str]:
    """The jobs of JOB_ASSETS ordered by the asset graph: a job after every job that holds an asset upstream of
    one of its assets."""
    graph = defs.resolve_asset_graph()
    upstream = {job: {k.to_user_string() for k in dg.AssetSelection.assets(*assets).upstream().resolve(graph)}
                for job, assets in JOB_ASSETS.items()}
    deps = {job: {other for other, assets in JOB_ASSETS.items() if other != job and set(assets) & upstream[job]}
            for job in JOB_ASSETS}
    return list(graphlib.TopologicalSorter(deps).static_order())


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
            msg = root_cause(err)  # the assets' own messages already start with their name
            out.errors.append(msg if msg.startswith(f"{ev.step_key}: ") else f"{ev.step_key}: {msg}")
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            out.materialized.append(ev.asset_key.to_user_string())
    return out


def run_pipeline(settings: Settings, select: str | list[str] | None = None, only_batches: list[str] | None = None,
                 echo: Callable[[str], None] = print, log_level: str = "INFO") -> list[RunOutcome]:
    """Raises DiskFull (one line: what, where, how much is free) when the disk fills, wherever that happens."""
    selected = parse_selection(select)
    reserve = SpaceReserve(settings.home.dagster_home)
    try:
        return _run_pipeline(settings, selected, only_batches, echo, log_level, reserve)
    except DiskFull:
        raise
    except Exception as e:
        if is_disk_full(e, settings.home.root):
            raise DiskFull.at(path_in_error(e) or settings.home.dagster_home, SpaceReserve.SIZE, at_least=True) from e
        raise
    finally:
        reserve.release()


def _run_pipeline(settings: Settings, selected: list[str], only_batches: list[str] | None,
                  echo: Callable[[str], None], log_level: str, reserve: "SpaceReserve") -> list[RunOutcome]:
    instance = prepare_instance(settings)
    end_mlflow_runs(settings, fail_orphaned_runs(instance, echo))
    SpaceReserve.remove_orphans(settings.home.dagster_home)
    reserve.take()
    present = register_batches(settings, instance, echo)
    if only_batches:
        missing = [b for b in only_batches if b not in present]
        if missing:
            raise SettingsError(f"batch(es) {missing} not found (or not complete) in "
                                f"{resources_for(settings)['home'].landing_label}; "
                                f"present and complete: {present}")
        present = [b for b in present if b in only_batches]
    defs = build_definitions(settings)
    # verbose: Dagster's full event stream; otherwise only the assets' own messages (progress, findings)
    logger = "console" if log_level == "DEBUG" else "sslpipe_console"
    run_config: dict = {"loggers": {logger: {"config": {"log_level": log_level}}}}
    outcomes = []
    for job in job_order(defs):
        assets = [a for a in JOB_ASSETS[job] if a in selected]
        if not assets:
            continue
        if job == BATCH_JOB and not present:
            echo(f"no complete batch folders in {terminal(resources_for(settings)['home'].landing_label)}: "
                 f"nothing to ingest")
        for partition in (present if job == BATCH_JOB else [None]):
            where = f"[{terminal(partition)}]" if partition else "[global]"
            echo(f"{where} running {', '.join(assets)}")
            r = _execute(defs, job, settings, instance, reserve, run_config=run_config, partition=partition,
                         assets=None if assets == list(JOB_ASSETS[job]) else assets)
            outcomes.append(_outcome(job, partition, r))
            echo(_describe(outcomes[-1]))
    return outcomes


# Runs launched here carry the process that executes them, so that a later `sslpipe run` can tell a run whose
# process is gone (killed, out of memory, a machine restart) from one still going.
PID_TAG, HOST_TAG, START_TAG = "sslpipe/pid", "sslpipe/host", "sslpipe/pid_start"
_UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _process_start(pid: int) -> str:
    """When the process started (clock ticks since boot, from /proc), to tell it from a later one given the
    same pid; "" where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, start: str) -> bool:
    return pid_alive(pid) and (not start or _process_start(pid) in ("", start))


def launch_tags() -> dict[str, str]:
    pid = os.getpid()
    return {"sslpipe/command": "run", PID_TAG: str(pid), HOST_TAG: socket.gethostname(),
            START_TAG: _process_start(pid)}


def fail_orphaned_runs(instance: dg.DagsterInstance, echo: Callable[[str], None] = print) -> list[str]:
    """Mark FAILED the runs that `sslpipe run` started on this host whose process is gone; -> their run ids.

    A run executed in-process stays STARTED forever when its process dies (SIGKILL, out of memory, power) or
    when an error outside any step escapes execute_in_process (a full disk as Dagster writes its event log).
    Dagster's own run monitoring would notice, but it runs in the dagster-daemon and watches runs started
    through a run launcher; the embedded default runs no daemon and `sslpipe run` launches nothing, so it
    would never look. Runs of other hosts, or of another tool, are left alone: their process cannot be
    checked from here."""
    host, failed = socket.gethostname(), []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED)):
        pid = run.tags.get(PID_TAG)
        if not pid or not pid.isdigit() or run.tags.get(HOST_TAG) != host:
            continue
        if run.parent_run_id is not None:  # a re-execution from the UI may copy the tags; its process is another
            continue
        if _alive(int(pid), run.tags.get(START_TAG, "")):
            continue
        where = f" [{run.tags['dagster/partition']}]" if "dagster/partition" in run.tags else ""
        if _mark_failed(instance, run.run_id, f"sslpipe: the process that ran it (pid {pid} on {host}) is gone: it "
                                              "was killed or crashed; marked failed by a later `sslpipe run`"):
            echo(f"marked run {run.run_id[:8]} ({run.job_name}{terminal(where)}) FAILED: its process (pid {pid}) is gone")
            failed.append(run.run_id)
    return failed


def end_mlflow_runs(settings: Settings, dagster_run_ids: list[str]) -> int:
    """End as FAILED the MLflow runs that these failed Dagster runs left RUNNING (a training killed, or stopped by
    a full disk before it could end its MLflow run); -> how many. Their tag `dagster.run_id` names the Dagster run
    writing into them. Never raises: the next `sslpipe run` tries again."""
    if not dagster_run_ids:
        return 0
    tracking = resources_for(settings)["mlflow"]
    if tracking.missing_store() is not None:
        return 0  # no store yet: nothing ran
    ended = 0
    try:
        client = tracking.client()
        exp = client.get_experiment_by_name(tracking.experiment)
        for run_id in dagster_run_ids if exp is not None else []:
            for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`dagster.run_id` = '{run_id}' "
                                                                         "AND attributes.status = 'RUNNING'"):
                client.set_terminated(r.info.run_id, "FAILED")
                ended += 1
    except Exception:  # noqa: BLE001 - e.g. the disk is still full or the store is away: tried again next time
        return ended
    return ended


def _mark_failed(instance: dg.DagsterInstance, run_id: str, message: str) -> bool:
    """Report the run failed (if it is not finished) and free the pool slots it held; False if that failed too."""
    try:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - e.g. the disk is still full: the next `sslpipe run` marks it
        return False


class SpaceReserve:
    """A little disk space held back while runs execute, so that when the disk fills, the run can still be
    recorded as failed: released (removed) first, then the failure is written into the space it frees."""

    SIZE = 1 << 20  # bytes: room for a run's failure event and its status (a few SQLite pages and journals)
    PREFIX = ".space-reserve."

    def __init__(self, folder: Path):
        self.path = folder / f"{self.PREFIX}{socket.gethostname()}.{os.getpid()}"

    def take(self) -> None:
        with contextlib.suppress(OSError):  # no room for it: then there is no room for anything else either
            with open(self.path, "wb") as f:
                f.write(b"\0" * self.SIZE)
                f.flush()
                os.fsync(f.fileno())

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @classmethod
    def remove_orphans(cls, folder: Path) -> None:
        """Remove the reserves left by processes of this host that are gone."""
        host = socket.gethostname()
        for p in folder.glob(f"{cls.PREFIX}{host}.*"):
            pid = p.name.rsplit(".", 1)[1]
            if pid.isdigit() and not _alive(int(pid), ""):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def _execute(defs: dg.Definitions, job: str, settings: Settings, instance: dg.DagsterInstance,
             reserve: SpaceReserve, run_config: dict, partition: str | None, assets: list[str] | None):
    """Create the run in the instance (with the code location's origin) and execute it here, with this process's
    tags. An error that escapes it (outside any step: Dagster writing its event log) leaves the run STARTED; it
    is reported failed here, in the space of the reserve when the disk is full, and a full disk is raised as
    DiskFull."""
    run_id = str(uuid.uuid4())
    try:
        run = create_run(instance, defs, job, partition=partition, assets=assets, run_config=run_config,
                         tags=launch_tags(), run_id=run_id)
        result = execute(instance, defs, run)
    except Exception as e:
        if not is_disk_full(e, settings.home.dagster_home):
            _mark_failed(instance, run_id, f"sslpipe: {type(e).__name__}: {e}")
            raise
        # Dagster could not write its event log (a step's own failure is recorded in the run, see below)
        full = DiskFull.at(path_in_error(e) or settings.home.dagster_home / "storage", SpaceReserve.SIZE,
                           during=_running_steps(instance, run_id, partition), at_least=True)
        reserve.release()
        _mark_failed(instance, run_id, f"sslpipe: {full}")
        end_mlflow_runs(settings, [run_id])
        raise full from e
    full = _disk_full_in_steps(result, settings, partition)
    if full is not None:
        raise full
    return result


def _running_steps(instance: dg.DagsterInstance, run_id: str, partition: str | None) -> str:
    """The steps of a run that started and never ended, e.g. "validated_images [b1]" ("" if unknown)."""
    try:
        started, ended = [], set()
        for rec in instance.all_logs(run_id):
            ev = rec.dagster_event
            if ev is not None and ev.event_type == dg.DagsterEventType.STEP_START:
                started.append(ev.step_key)
            elif ev is not None and (ev.is_step_success or ev.is_step_failure or ev.is_step_skipped):
                ended.add(ev.step_key)
    except Exception:  # noqa: BLE001 - the event log is unreadable: say nothing rather than fail again
        return ""
    running = [s for s in started if s not in ended]
    return f"{', '.join(running)}{f' [{partition}]' if partition else ''}" if running else ""


def _error_text(err) -> str:
    """A Dagster error's message with those of its causes and contexts, one per line."""
    lines, todo = [], [err]
    while todo:
        e = todo.pop()
        if e is not None:
            lines.append(f"{e.cls_name}: {e.message}")
            todo += [e.cause, e.context]
    return "\n".join(lines)


def _disk_full_in_steps(result, settings: Settings, partition: str | None) -> DiskFull | None:
    """The first step of the run that failed for a full disk, as DiskFull naming what it was writing."""
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data.error is not None:
            text = _error_text(ev.step_failure_data.error)
            if is_disk_full(text, settings.home.root):
                path, needed = _step_output(settings, ev.step_key, partition, text)
                return DiskFull.at(path_in_error(text) or path, needed,
                                   f"{ev.step_key}{f' [{partition}]' if partition else ''}")
    return None


def _step_output(settings: Settings, step_key: str, partition: str | None, error: str) -> tuple[Path, int | None]:
    """Where a step writes (for an error that does not name the file), and about how many bytes it needs: for
    image_shards the batch's images (shards hold them as they are); for the others, as much as the largest
    output of the same kind already in the home (None where there is none yet)."""
    h, batch = settings.home, partition or "eval"
    step = step_key.split(".")[0]
    if "sqlite" in error.lower() and step in TRAIN_ASSETS:  # the MLflow store (Dagster writes outside steps)
        return h.mlflow_dir / "mlflow.db", _largest_output(h.root, "models/*/encoder.pt")
    if step == "image_shards":
        landing = h.batch_dir(batch)
        return h.shard_dir(batch), sum(p.stat().st_size for p in landing.rglob("*") if p.is_file())
    where = {"raw_images": (h.manifest_dir(batch), "manifests/*"), "eval_images": (h.manifest_dir("eval"), "manifests/*"),
             "validated_images": (h.report_dir(batch), "reports/*/data_docs"),
             "bias_report": (h.report_dir(batch), "reports/*/bias.*"),
             "ssl_encoder": (h.root / "models", "models/*"), "registered_model": (h.mlflow_dir, "models/*/encoder.pt")}
    path, kind = where.get(step, (h.root, None))
    return path, _largest_output(h.root, kind) if kind else None


def _largest_output(root: Path, pattern: str) -> int | None:
    """The size of the largest file or folder matching `pattern` under root (None if there is none)."""
    sizes = [p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
             for p in root.glob(pattern)]
    return max(sizes, default=0) or None


def _describe(o: RunOutcome) -> str:
    """The run's outcome for the terminal; batch names, check findings and errors come from the data, so each
    is escaped (ssl_ops.escape.terminal: no control sequences, one line each)."""

    where = f"[{terminal(o.partition)}]" if o.partition else "[global]"
    done = ", ".join(terminal(m) for m in o.materialized) or "nothing"
    lines = [f"{where} {'ok' if o.success else 'FAILED'}: run {o.run_id[:8]}, materialized {done}"]
    lines += [f"{where}   {'BLOCKING' if c.blocking else 'warning'} check {terminal(c.asset)}:{terminal(c.check)} "
              f"failed: {terminal(c.why)}" for c in o.failed_checks]
    lines += [f"{where}   error in {terminal(e)}" for e in o.errors]
    return "\n".join(lines)
