"""The real daemon and the real UI: `dagster dev` (webserver + daemon) on loopback over a home that
`sslpipe run` started, with the sensors turned on in its config.

With no run started by hand: two complete batches (a _READY file each) and one incomplete one land; the
landing sensor ingests and shards the complete ones, the retrain sensor sees enough new images and runs
train_encoder (the leakage decision, training, probes, registration), and a new version is registered beside
the champion with its gate decision (a 3-step model: the challenger, since it loses to raw pixels). The incomplete batch is untouched until its _READY appears.
Then, through the webserver's GraphQL API as the UI does: a run that `sslpipe run` started is re-executed,
and a backfill of two batches gives the same shards, byte for byte, and starts no training.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.mlflow_registry import Registry
from devserver import DagsterDev, finished, runs, wait_for
from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance, resources_for
from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.ingest.ready import READY_MARKER

pytestmark = pytest.mark.slow

# workers 1, as shipped: the daemon's run workers start DataLoader workers by spawn/forkserver (pickled stages)
TRAIN = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 16, "batch_size": 32, "steps": 3,
         "warmup_steps": 1, "workers": 1, "checkpoint_every": 0, "health_every": 1}
BATCH_ASSETS = ["raw_images", "validated_images", "bias_report", "image_shards"]

REEXECUTE = """mutation($id: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $id, strategy: ALL_STEPS}) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message stack }
  }
}"""
BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack }
  }
}"""
BACKFILL_STATUS = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } }
}"""


def shard_bytes(home: Path, batch: str) -> dict[str, str]:
    d = home / "shards" / batch
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def succeeded(instance, job: str, **tags) -> list:
    return [r for r in finished(instance, job, **tags) if r.status == dg.DagsterRunStatus.SUCCESS]


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    yield _operate(tmp_path_factory.mktemp("daemon"))


def _operate(tmp: Path) -> dict:
    home, staging = tmp / "home", tmp / "staging"
    write_demo(Home.resolve(home).ensure(), batches=4)  # ~300 images per batch, each with _READY
    staging.mkdir()
    for b in ("demo-002", "demo-003", "demo-004"):
        shutil.move(home / "landing" / b, staging / b)
    cfg = tmp / "operate.yaml"
    cfg.write_text(yaml.safe_dump({
        "workers": 1, "train": TRAIN,
        # a 3-step model cannot beat raw pixels: the gate fails it (every new model must), so the daemon's
        # retrain is registered as the challenger, not the candidate
        "registry": {"approval": "human", "tolerance": 1.0, "group_tolerance": 1.0, "min_embedding_std": 0.0},
        "automation": {"landing_sensor": "running", "retrain_sensor": "running", "quiet_seconds": 3600,
                       "sensor_interval_seconds": 5, "min_new_images": 500}}))

    # by hand, before the daemon: the first batch and a first model, made champion by a (forced) approval
    assert main(["run", "--home", str(home), "--config", str(cfg)]) == 0
    settings = Settings.from_env(home=str(home)).with_config_file(str(cfg))
    env = settings.environment()  # the settings as values, for the dev server's environment
    instance = prepare_instance(settings)
    reg = Registry(resources_for(settings)["mlflow"])
    reg.approve("1", "seed", "the daemon test's first champion")
    by_hand = {r.job_name: r for r in runs(instance)}
    obs: dict = {"home": home, "instance": instance, "reg": reg, "by_hand": by_hand}

    with DagsterDev(env, tmp / "dagster-dev.log") as dev:
        obs["dev_url"] = dev.url
        # two complete batches and one incomplete one land
        for b in ("demo-002", "demo-003"):
            shutil.move(staging / b, home / "landing" / b)
        (staging / "demo-004" / READY_MARKER).unlink()
        shutil.move(staging / "demo-004", home / "landing" / "demo-004")
        t0 = time.time()

        for b in ("demo-002", "demo-003"):
            wait_for(f"the landing sensor's ingest_batch run of {b}", lambda b=b: finished(
                instance, "ingest_batch", **{"dagster/partition": b}), 300, dev)
        obs["ingested"] = {b: [r.status for r in runs(instance, "ingest_batch", **{"dagster/partition": b})]
                           for b in ("demo-002", "demo-003")}
        train = wait_for("the retrain sensor's train_encoder run", lambda: finished(
            instance, "train_encoder", **{"sslpipe/trigger": "retrain_sensor"}), 420, dev)
        obs["train_runs"] = train
        obs["seconds_to_candidate"] = time.time() - t0
        obs["challenger"], obs["candidate"] = reg.alias("challenger"), reg.alias("candidate")
        obs["champion"] = reg.alias("champion")
        obs["incomplete_before"] = ("demo-004" in instance.get_dynamic_partitions("batches"),
                                    (home / "manifests" / "demo-004").exists())

        (home / "landing" / "demo-004" / READY_MARKER).touch()
        wait_for("the ingest_batch run of demo-004 once its _READY appeared", lambda: finished(
            instance, "ingest_batch", **{"dagster/partition": "demo-004"}), 240, dev)
        obs["incomplete_after"] = [r.status for r in runs(instance, "ingest_batch", **{"dagster/partition": "demo-004"})]

        # the UI: re-execute the ingest_batch run that `sslpipe run` started
        parent = by_hand["ingest_batch"]
        got = dev.query(REEXECUTE, {"id": parent.run_id})["launchPipelineReexecution"]
        assert got["__typename"] == "LaunchRunSuccess", got
        child_id = got["run"]["runId"]
        obs["reexecuted"] = wait_for("the re-execution", lambda: (lambda r: r if r and r.is_finished else None)(
            instance.get_run_by_id(child_id)), 240, dev)
        obs["reexecuted_parent"] = parent

        # the UI: backfill two batches; same shards, no training
        before = {b: shard_bytes(home, b) for b in ("demo-001", "demo-002")}
        trainings = len(runs(instance, "train_encoder"))
        got = dev.query(BACKFILL, {"params": {"assetSelection": [{"path": [a]} for a in BATCH_ASSETS],
                                              "partitionNames": ["demo-001", "demo-002"]}})["launchPartitionBackfill"]
        assert got["__typename"] == "LaunchBackfillSuccess", got
        bid = got["backfillId"]
        obs["backfill_status"] = wait_for("the backfill", lambda: (lambda s: s if s.startswith("COMPLETED") or s in (
            "FAILED", "CANCELED") else None)(dev.query(BACKFILL_STATUS, {"id": bid})["partitionBackfillOrError"]
                                               ["status"]), 300, dev)
        obs["backfill_runs"] = [r for r in runs(instance) if r.tags.get("dagster/backfill") == bid]
        time.sleep(15)  # three retrain_sensor ticks: it must find nothing new
        obs["shards_before"], obs["shards_after"] = before, {b: shard_bytes(home, b) for b in before}
        obs["trainings_before_backfill"], obs["trainings_after_backfill"] = trainings, len(runs(instance, "train_encoder"))
        obs["log"] = dev.tail(20000)
    return obs


def test_the_daemon_ingests_complete_batches_and_retrains_into_a_candidate_with_no_run_started_by_hand(operated):
    o = operated
    for b, statuses in o["ingested"].items():
        assert statuses == [dg.DagsterRunStatus.SUCCESS], (b, statuses)
    train = o["train_runs"]
    assert len(train) == 1 and train[0].status == dg.DagsterRunStatus.SUCCESS
    assert int(train[0].tags["sslpipe/new_images"]) >= 500 and train[0].tags["sslpipe/window"] == \
        "demo-001,demo-002,demo-003"
    assert all(r.tags.get("sslpipe/command") != "run" for r in runs(o["instance"]) if r.run_id not in
               {x.run_id for x in o["by_hand"].values()} and r.parent_run_id is None), "a run was started by hand"
    # the leakage decision ran in the training run, before training; the candidate waits for a person
    steps = [e.step_key for e in o["instance"].all_logs(train[0].run_id) if e.dagster_event and
             e.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS]
    assert steps == ["eval_leakage", "ssl_encoder", "probe_report", "registered_model"]
    # registered as version 2 with its gate decision; a 3-step model loses to raw pixels, so it is the challenger,
    # not the candidate (every new model must beat the baselines), and the champion stays
    assert o["challenger"] is not None and str(o["challenger"].version) == "2" and o["candidate"] is None
    assert str(o["champion"].version) == "1", "champion moved without a reviewer"
    assert o["reg"].review_state("2")["status"] == "gate_failed"
    assert json.loads(o["challenger"].tags["sslpipe.shard_index_digests"]).keys() == {"demo-001", "demo-002", "demo-003"}
    print(f"daemon: from landing to a registered version in {o['seconds_to_candidate']:.0f}s")


def test_an_incomplete_batch_is_untouched_until_its_ready_file_appears(operated):
    assert operated["incomplete_before"] == (False, False)
    assert operated["incomplete_after"] == [dg.DagsterRunStatus.SUCCESS]


def test_a_run_started_by_sslpipe_run_is_re_executed_from_the_ui(operated):
    child, parent = operated["reexecuted"], operated["reexecuted_parent"]
    assert parent.tags["sslpipe/command"] == "run" and parent.remote_job_origin is not None
    assert child.status == dg.DagsterRunStatus.SUCCESS, operated["log"][-4000:]
    assert child.parent_run_id == parent.run_id and child.job_name == "ingest_batch"
    assert child.tags["dagster/partition"] == parent.tags["dagster/partition"] == "demo-001"


def test_a_ui_backfill_rewrites_the_same_shards_and_starts_no_training(operated):
    o = operated
    assert o["backfill_status"] == "COMPLETED_SUCCESS", o["log"][-4000:]
    assert {r.tags["dagster/partition"] for r in o["backfill_runs"]} == {"demo-001", "demo-002"}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in o["backfill_runs"])
    assert o["shards_after"] == o["shards_before"] and all(o["shards_before"].values())
    assert o["trainings_after_backfill"] == o["trainings_before_backfill"]
