"""Scale benchmark: 100, 300, 1,000 batch partitions registered; nothing may grow faster than linearly.

    python bench/scale_partitions.py                        # N = 100, 300, 1000 (about 10 minutes on 2 cores)
    python bench/scale_partitions.py --sizes 5,10 --repeat 1   # a quick look (the smoke test's)

For each N, a fresh home (Settings.from_env(home=...), the Dagster instance on SQLite as prepare_instance makes
it) whose landing folder holds N batch folders, each with a _READY file and 1-2 tiny real JPEGs; the eval set is
really ingested first (`sslpipe run --select eval_images`, before any batch lands). Measured, in this order:

1. sensor, N new: the landing sensor's tick (build_sensor_context + evaluate_tick, as the daemon does) while
   none of the N folders is a partition yet: it must ask for N ingest_batch runs and register N partitions.
2. sensor, nothing new: the same tick once all N are registered (assets.partitions.add_batches) and ingested as
   far as the sensor looks (a real accepted manifest per batch, written by ssl_ops' scan_batch): no request.
3. retrain sensor: its tick (the same way, with the MLflow resource on the home's SQLite store, no model
   registered) once the N batches are sharded (real shards and index, by ssl_ops' shard_batch, from the
   manifests of 2.; no check records: no blocking failure): min_new_images is 1, so it asks for a training
   on a window of all N batches.
4. plan, nothing new: `sslpipe run` (pipelines.runner.run_pipeline, the whole graph) with runner._execute (which
   creates each run in the instance and executes it) replaced by a recorder: instance, orphaned runs, registering
   batches, definitions, job order, the loop over the plan of runs. `sslpipe run` has no dry-run flag, and no
   planning function apart from run_pipeline. The plan is checked (N ingest_batch runs:
   `sslpipe run` re-runs every present batch, the assets being idempotent).
5. UI backfill: the `launchPartitionBackfill` mutation the UI sends (the 4 assets of ingest_batch, all N
   partitions; as tests/pipelines/test_daemon.py) executed by dagster-graphql against the workspace of
   workspace.yaml (its own gRPC code server, as `dagster dev` starts), then the backfill daemon's iteration
   (dagster._daemon.backfill.execute_backfill_iteration) in this process until N runs exist. The instance's
   run coordinator is Dagster's default QueuedRunCoordinator and no run-queue daemon runs, so the runs stay
   QUEUED: launch is measured, not execution. The assets have no BackfillPolicy: one run per partition.

Printed per measure and N: seconds (the least of --repeat: the machine is shared, and the least is the cost
with the least interference) and seconds per partition; then per measure the ratio
per-partition(largest N) / per-partition(smallest N) and the marginal ratio (the extra seconds per extra
partition over the upper interval / over the lower one: fixed costs cancel out, noise does not). A
per-partition ratio above 1.5 is flagged "SUPERLINEAR"; a marginal ratio above 1.5 alone is pointed out (a
superlinear term hidden under fixed costs, or noise: look at larger N, e.g. --sizes 1000,3000,10000
--no-backfill). The figures also go to bench/_data/scale/results.json.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / "_data" / "scale"
LIMIT = 1.5  # ratio above which a measure is called superlinear
MEASURES = {"sensor_new": "landing sensor tick, N new batches",
            "sensor_known": "landing sensor tick, nothing new",
            "retrain": "retrain sensor tick, N sharded batches",
            "plan": "sslpipe run plan, nothing new",
            "backfill": "UI backfill, N runs created (queued)"}
BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack }
    ... on UnauthorizedError { message } ... on PartitionSetNotFoundError { message }
  }
}"""
BATCH_ASSETS = ["raw_images", "validated_images", "bias_report", "image_shards"]


def jpeg(seed: int, size=(40, 32)) -> bytes:
    """A small, real, smooth JPEG (as tests/imagefiles.py jpeg_bytes)."""
    import numpy as np
    from PIL import Image

    base = np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def batch_names(n: int) -> list[str]:
    return [f"b{i:05d}" for i in range(1, n + 1)]  # sorted order = registration order


def make_home(work: Path, n: int):
    """A fresh home: config, eval set, empty landing folder, the eval set ingested; -> Settings."""
    from pipelines.runner import run_pipeline
    from pipelines.settings import Settings

    home = work / f"n{n}"
    shutil.rmtree(home, ignore_errors=True)
    for c in ("cat", "dog"):
        for i in range(6):
            p = home / "eval" / c / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(jpeg(900 + 10 * (c == "dog") + i, size=(36, 36)))
    (home / "landing").mkdir(parents=True)
    cfg = home / "config.yaml"
    # complete by _READY only; the retrain sensor asks for a training as soon as anything is new
    cfg.write_text("workers: 1\nautomation: {quiet_seconds: 3600, min_new_images: 1}\n")
    s = Settings.from_env(home=str(home), landing=str(home / "landing"), eval_dir=str(home / "eval"))
    s = s.with_config_file(str(cfg))
    out = run_pipeline(s, select="eval_images", echo=lambda m: None, log_level="WARNING")
    if not (out and all(o.success for o in out)):
        sys.exit(f"ingesting the eval set failed: {out}")
    return s


def land(s, names: list[str]) -> None:
    from ssl_ops.ingest.ready import READY_MARKER

    for i, b in enumerate(names):
        d = s.home.landing / b
        d.mkdir(parents=True)
        for j in range(1 + i % 2):  # 1 or 2 images
            (d / f"{j}.jpg").write_bytes(jpeg(10_000 + 2 * i + j))
        (d / READY_MARKER).touch()


def mark_ingested(s, instance, names: list[str]) -> None:
    """What the landing sensor takes for "already ingested": a registered partition with an accepted manifest
    (pipelines/sensors.py landing_sensor); and what the retrain sensor takes for sharded: a shard index
    (training_window). Both real: scan_batch and shard_batch on the batch's files."""
    from assets.partitions import add_batches
    from data_contracts import load_contract
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.manifest import write_table_atomic
    from ssl_ops.shards import ShardConfig, shard_batch

    added = add_batches(instance, names, s.home.dagster_home / ".partitions.lock")
    assert added == names, (len(added), len(names))
    im = load_contract(s.contract).images
    limits = ImageLimits(im.min_side, im.max_side, im.max_pixels, im.max_bytes, im.formats, im.modes)
    for b in names:
        r = scan_batch(s.home.batch_dir(b), b, limits, workers=1)
        assert r.accepted.num_rows == r.seen, (b, r.reasons)
        write_table_atomic(r.accepted, s.home.accepted_path(b))
        write_table_atomic(r.quarantine, s.home.quarantine_path(b))
        shard_batch(r.accepted, s.home.batch_dir(b), s.home.shard_dir(b), ShardConfig())


def tick(defs, instance, s, name: str = "landing_sensor"):
    """One tick of the sensor `name`, as tests/pipelines/test_operate.py evaluates it, with the instance's ref as the
    daemon's code server has it (so the partitions the tick asks to add count when its run requests are
    resolved); -> (seconds, result)."""
    import dagster as dg
    from dagster._core.definitions.partitions.context import partition_loading_context

    from pipelines.settings import resources_for

    t = time.perf_counter()
    with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), resources=resources_for(s), sensor_name=name,
                                 definitions=defs) as ctx, partition_loading_context(dynamic_partitions_store=instance):
        res = defs.get_sensor_def(name).evaluate_tick(ctx)
    return time.perf_counter() - t, res


class _FakeResult:
    def __init__(self, run_id: str):
        self.run_id, self.success, self.all_events = run_id, True, []

    def get_asset_check_evaluations(self):
        return []


def plan(s) -> tuple[float, list]:
    """`sslpipe run` (run_pipeline, the whole graph) with the creation and execution of each run replaced by a
    recorder: -> (seconds, [(job, partition)] planned)."""
    import pipelines.runner as runner

    planned = []
    real = runner._execute

    def record(defs, job, settings, instance, reserve, run_config, partition, assets):
        planned.append((job, partition))
        return _FakeResult(f"planned-{len(planned)}")

    runner._execute = record
    try:
        t = time.perf_counter()
        runner.run_pipeline(s, echo=lambda m: None, log_level="WARNING")
        return time.perf_counter() - t, planned
    finally:
        runner._execute = real


def backfill(s, instance, names: list[str]) -> dict:
    """The UI's launchPartitionBackfill, then the backfill daemon's iterations until len(names) runs exist."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    # the code server (a subprocess, as `dagster dev` starts it) loads this home's definitions from these
    # variables, as from the shell that starts `dagster dev` (main() restores the environment after each N)
    os.environ.update(s.environment())
    log = logging.getLogger("scale_partitions.backfill")
    log.setLevel(logging.WARNING)
    t0 = time.perf_counter()
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(ROOT / "workspace.yaml")]),
                                 code_server_log_level="WARNING") as wpc:
        ctx = wpc.create_request_context()
        errs = [e for e in ctx.get_code_location_entries().values() if e.load_error]
        if errs:
            sys.exit(f"the code location did not load: {errs[0].load_error}")
        load_s = time.perf_counter() - t0
        t = time.perf_counter()
        got = execute_dagster_graphql(ctx, BACKFILL, {"params": {
            "assetSelection": [{"path": [a]} for a in BATCH_ASSETS], "partitionNames": names}})
        res = (got.data or {}).get("launchPartitionBackfill") or {}
        if res.get("__typename") != "LaunchBackfillSuccess":
            sys.exit(f"launchPartitionBackfill failed: {got.errors or res}")
        mutation_s = time.perf_counter() - t
        bid = res["backfillId"]
        tags = dg.RunsFilter(tags={"dagster/backfill": bid})
        iterations, made = [], 0
        while made < len(names):
            ti = time.perf_counter()
            for err in execute_backfill_iteration(wpc, log):
                if err is not None and hasattr(err, "message"):
                    sys.exit(f"the backfill daemon failed: {err.message}")
            iterations.append(time.perf_counter() - ti)
            before, made = made, instance.get_runs_count(tags)
            if made == before and len(iterations) > 3:
                sys.exit(f"the backfill made no progress: {made} of {len(names)} runs after {len(iterations)} iterations")
        total = time.perf_counter() - t
    records = sorted(instance.get_run_records(tags), key=lambda r: r.create_timestamp)
    runs = [r.dagster_run for r in records]
    statuses = {r.status.value for r in runs}
    parts = sorted(r.tags.get("dagster/partition") for r in runs)
    if parts != sorted(names) or statuses - {"QUEUED"}:
        sys.exit(f"backfill: expected one queued run per partition, got {len(runs)} runs, statuses {statuses}")
    # within this one backfill: seconds per run while the first tenth of the runs was created, and the last tenth
    stamps = [r.create_timestamp.timestamp() for r in records]
    k = max(2, len(stamps) // 10)
    first_tenth = (stamps[k - 1] - stamps[0]) / (k - 1)
    last_tenth = (stamps[-1] - stamps[-k]) / (k - 1)
    return {"seconds": total, "first_tenth_s_per_run": first_tenth, "last_tenth_s_per_run": last_tenth,
            "mutation_s": mutation_s, "daemon_iterations": len(iterations),
            "daemon_s": sum(iterations), "code_location_load_s": load_s, "runs": len(runs),
            "run_assets": sorted(k.to_user_string() for k in (runs[0].asset_selection or []))}


def measure(work: Path, n: int, repeat: int, do_backfill: bool) -> dict:
    from pipelines.definitions import build_definitions
    from pipelines.settings import prepare_instance

    s = make_home(work, n)
    names = batch_names(n)
    land(s, names)
    instance = prepare_instance(s)
    defs = build_definitions(s)
    out: dict = {"n": n}

    secs = []
    for _ in range(repeat):
        sec, res = tick(defs, instance, s)
        secs.append(sec)
        keys = [r.partition_key for r in res.run_requests]
        if keys != names or res.dynamic_partitions_requests[0].partition_keys != names:
            sys.exit(f"N new: expected {n} ingest requests and {n} partitions to add, got {len(keys)}")
    out["sensor_new"] = min(secs)

    mark_ingested(s, instance, names)
    secs = []
    for _ in range(repeat):
        sec, res = tick(defs, instance, s)
        secs.append(sec)
        if res.run_requests or "no new complete batch" not in (res.skip_message or ""):
            sys.exit(f"nothing new: expected no request, got {len(res.run_requests)} ({res.skip_message})")
    out["sensor_known"] = min(secs)

    tick(defs, instance, s, "retrain_sensor")  # the MLflow store is created on first use: not counted
    secs = []
    for _ in range(repeat):
        sec, res = tick(defs, instance, s, "retrain_sensor")
        secs.append(sec)
        if len(res.run_requests) != 1 or res.run_requests[0].tags["sslpipe/window"] != ",".join(names)[:1000]:
            sys.exit(f"retrain: expected one training request on all {n} batches, got {res.run_requests} "
                     f"({res.skip_message})")
    out["retrain"] = min(secs)

    secs = []
    for _ in range(repeat):
        sec, planned = plan(s)
        secs.append(sec)
        batch_runs = [p for j, p in planned if j == "ingest_batch"]
        if batch_runs != names or [j for j, _ in planned if j != "ingest_batch"] != ["ingest_eval", "train_encoder"]:
            sys.exit(f"plan: expected ingest_eval, {n} x ingest_batch, train_encoder; got {len(planned)} runs")
    out["plan"] = min(secs)
    out["plan_runs"] = len(planned)

    if do_backfill:
        b = backfill(s, instance, names)
        out["backfill"] = b.pop("seconds")
        out["backfill_detail"] = b
    return out


def report(rows: list[dict]) -> dict:
    lo, hi = rows[0], rows[-1]
    verdicts = {}
    for key, label in MEASURES.items():
        if key not in lo:
            continue
        print(f"\n{label}")
        for r in rows:
            print(f"  N={r['n']:5d}: {r[key]:8.3f} s total, {1000 * r[key] / r['n']:8.3f} ms per partition")
        ratio = (hi[key] / hi["n"]) / (lo[key] / lo["n"])
        marginal = None
        if len(rows) >= 3:
            m = rows[-2]
            lower = (m[key] - lo[key]) / (m["n"] - lo["n"])
            upper = (hi[key] - m[key]) / (hi["n"] - m["n"])
            marginal = upper / lower if lower > 0 else float("inf")
        if ratio > LIMIT:
            flag = "SUPERLINEAR"
        elif marginal is not None and marginal > LIMIT:
            flag = "linear per partition, but the marginal cost grows: a superlinear term under fixed costs?"
        else:
            flag = "linear"
        print(f"  per-partition ratio N={hi['n']}/N={lo['n']}: {ratio:.2f}"
              + (f"; marginal ratio (s per extra partition, N {rows[-2]['n']}->{hi['n']} over {lo['n']}->"
                 f"{rows[-2]['n']}): {marginal:.2f}" if marginal is not None else "") + f"  => {flag}")
        verdicts[key] = {"ratio": round(ratio, 3), "marginal_ratio": None if marginal is None else round(marginal, 3),
                         "verdict": flag}
    if "backfill" in lo:
        print("\nbackfill detail (seconds): " + "; ".join(
            f"N={r['n']}: mutation {r['backfill_detail']['mutation_s']:.2f}, daemon {r['backfill_detail']['daemon_s']:.2f}"
            f" in {r['backfill_detail']['daemon_iterations']} iteration(s), code location load "
            f"{r['backfill_detail']['code_location_load_s']:.1f} (not counted)" for r in rows))
        print("backfill, within one backfill: s per run while the first tenth / the last tenth of its runs were "
              "created: " + "; ".join(
                  f"N={r['n']}: {r['backfill_detail']['first_tenth_s_per_run']:.3f} / "
                  f"{r['backfill_detail']['last_tenth_s_per_run']:.3f} (ratio "
                  f"{r['backfill_detail']['last_tenth_s_per_run'] / r['backfill_detail']['first_tenth_s_per_run']:.2f})"
                  for r in rows))
    return verdicts


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,300,1000", help="comma-separated numbers of batch partitions")
    ap.add_argument("--repeat", type=int, default=5, help="sensor ticks and plans per N (the least is kept)")
    ap.add_argument("--no-backfill", action="store_true", help="skip the UI backfill")
    ap.add_argument("--work", default=str(DATA), help="where the homes are made (removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the homes")
    a = ap.parse_args(argv)
    sizes = sorted(int(x) for x in a.sizes.split(","))
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = dict(os.environ)
    logging.disable(logging.INFO)  # the sensors' own log lines (once per tick) and Dagster's, not figures
    rows = []
    try:
        for n in sizes:
            t = time.perf_counter()
            rows.append(measure(work, n, a.repeat, not a.no_backfill))
            os.environ.clear()  # the backfill set this home's settings for its code server
            os.environ.update(saved)
            print(f"N={n}: measured in {time.perf_counter() - t:.0f}s "
                  f"{ {k: round(v, 3) for k, v in rows[-1].items() if isinstance(v, float)} }", flush=True)
    finally:
        logging.disable(logging.NOTSET)
        os.environ.clear()
        os.environ.update(saved)
        if not a.keep:
            for n in sizes:
                shutil.rmtree(work / f"n{n}", ignore_errors=True)
    verdicts = report(rows)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"python {platform.python_version()}", "sizes": sizes, "repeat": a.repeat,
              "rows": rows, "verdicts": verdicts}
    (work / "results.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
