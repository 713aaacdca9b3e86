"""Operating it every day, in-process against a real instance in a temp folder: the landing sensor (complete
folders only, _READY or a quiet period), the retrain sensor and schedule, retries where they help and not
where they cannot, and idempotent backfills after a contract change."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from imagefiles import jpeg_bytes, write
from pipelines.definitions import build_definitions
from pipelines.runner import run_pipeline
from pipelines.settings import Settings, SettingsError, prepare_instance, resources_for
from ssl_ops.ingest.ready import READY_MARKER, batch_readiness

CONTRACTS = Path(__file__).resolve().parents[2] / "data_contracts" / "contracts"


def land(home: Path, batch: str, n: int = 8, base: int = 0, ready: bool = True) -> Path:
    for i in range(n):
        write(home / "landing" / batch / f"{i:02d}.jpg", jpeg_bytes(base + i, size=(40, 32)))
    if ready:
        (home / "landing" / batch / READY_MARKER).touch()
    return home / "landing" / batch


def eval_set(home: Path) -> None:
    for c in ("cat", "dog"):
        for i in range(6):
            write(home / "eval" / c / f"{i}.jpg", jpeg_bytes(900 + 10 * (c == "dog") + i, size=(36, 36)))


def settings_for(home: Path, tmp: Path, **automation) -> Settings:
    cfg = tmp / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"workers": 1, "automation": {"quiet_seconds": 3600, **automation}}))
    return Settings.from_env(home=str(home)).with_config_file(str(cfg))


def evaluate_sensor(settings: Settings, name: str):
    defs = build_definitions(settings)
    instance = prepare_instance(settings)
    from dagster._core.definitions.partitions.context import partition_loading_context

    with dg.build_sensor_context(instance=instance, resources=resources_for(settings), sensor_name=name,
                                 definitions=defs) as ctx, partition_loading_context(dynamic_partitions_store=instance):
        return defs.get_sensor_def(name).evaluate_tick(ctx)  # as the daemon does: partitions from the instance


# --- completeness --------------------------------------------------------------------------------------------

@pytest.mark.quiet_period
def test_a_folder_is_complete_by_its_ready_file_or_after_the_quiet_period(tmp_path):
    d = land(tmp_path, "b1", 2, ready=False)
    assert batch_readiness(d, quiet_seconds=60)[0] is False
    assert "still landing" in batch_readiness(d, 60)[1] and READY_MARKER in batch_readiness(d, 60)[1]
    assert batch_readiness(d, quiet_seconds=60, now=time.time() + 61) == (True, batch_readiness(d, 60, time.time() + 61)[1])
    (d / READY_MARKER).touch()
    assert batch_readiness(d, quiet_seconds=60) == (True, f"marked {READY_MARKER}")  # the marker wins


@pytest.mark.quiet_period
def test_a_copy_that_keeps_old_mtimes_is_still_landing(tmp_path):
    d = land(tmp_path, "b1", 2, ready=False)
    for p in d.iterdir():
        os.utime(p, (1, 1))  # cp -p / rsync -t: mtimes from 1970; their ctime is now
    assert batch_readiness(d, quiet_seconds=60)[0] is False


@pytest.mark.quiet_period
def test_a_first_run_on_a_batch_still_landing_says_how_a_folder_becomes_complete(tmp_path, capsys):
    """A user unpacks images and runs at once: the batch is skipped as still landing, and training's error says
    what makes a folder complete (its _READY file, or the quiet period) instead of only "land images"."""
    from pipelines.cli import main

    home = tmp_path / "home"
    eval_set(home)
    land(home, "b1", ready=False)
    assert main(["run", "--home", str(home)]) == 1
    out, err = capsys.readouterr()
    assert "no accepted batch has shards to train on" in err
    assert f"with a {READY_MARKER} file in it (sslpipe land writes one)" in err
    assert "automation.quiet_seconds of the settings" in err
    assert "60 s by default" not in err  # the value in force is on the skip line, not a fixed default
    assert "skipping landing/b1: still landing" in out and "it is taken once nothing in it changed for 60s" in out
    assert not (home / "manifests" / "b1").exists()  # nothing of the batch was taken


def test_ready_in_an_empty_folder_and_a_vanishing_folder_are_answers_not_errors(tmp_path, monkeypatch):
    empty = tmp_path / "landing" / "empty"
    empty.mkdir(parents=True)
    (empty / READY_MARKER).touch()
    ready, why = batch_readiness(empty, 0)
    assert not ready and "holds no files" in why
    gone = land(tmp_path, "gone", 2)
    import ssl_ops.ingest.ready as ready_mod

    real_walk = os.walk

    def walk_after_delete(top, **kw):  # the producer deletes the folder while the sensor looks
        shutil.rmtree(top)
        return real_walk(top, **kw)

    monkeypatch.setattr(ready_mod.os, "walk", walk_after_delete)
    ready, why = batch_readiness(gone, 0)
    assert not ready and "gone" in why


@pytest.mark.quiet_period
def test_landing_sensor_requests_the_eval_set_first_then_only_complete_new_batches(tmp_path):
    home = tmp_path / "home"
    eval_set(home)
    land(home, "b1")
    land(home, "b2", base=50, ready=False)  # still landing: no _READY, changed just now
    empty = home / "landing" / "b3"
    empty.mkdir()
    (empty / READY_MARKER).touch()
    s = settings_for(home, tmp_path, landing_sensor="running")
    first = evaluate_sensor(s, "landing_sensor")
    assert [(r.job_name, r.partition_key) for r in first.run_requests] == [("ingest_eval", None)]
    assert prepare_instance(s).get_dynamic_partitions("batches") == []
    assert run_pipeline(s, select="eval_images")[0].success  # registers b1 but does not ingest it
    second = evaluate_sensor(s, "landing_sensor")
    assert [(r.job_name, r.partition_key, r.run_key) for r in second.run_requests] == [("ingest_batch", "b1", "ingest:b1")]
    assert second.dynamic_partitions_requests[0].partition_keys == []  # known already
    defs = build_definitions(s)
    assert defs.get_sensor_def("landing_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    # what the sensor says while nothing is new: the incomplete folders and why
    assert run_pipeline(s, select="raw_images", only_batches=["b1"])[-1].success
    third = evaluate_sensor(s, "landing_sensor")
    assert not third.run_requests and "b2: still landing" in third.skip_message and "b3: _READY" in third.skip_message


def test_landing_folder_missing_is_a_skip_reason(tmp_path):
    s = settings_for(tmp_path / "home", tmp_path)
    assert "does not exist" in evaluate_sensor(s, "landing_sensor").skip_message


def test_sslpipe_run_never_ingests_an_incomplete_folder(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    eval_set(home)
    land(home, "b1")
    land(home, "b2", base=50, ready=False)
    s = settings_for(home, tmp_path)  # quiet period 3600 s from the config
    outcomes = run_pipeline(s, select="eval_images,raw_images")
    assert [o.partition for o in outcomes] == [None, "b1"]
    assert "skipping landing/b2: still landing" in capsys.readouterr().out
    assert not (home / "manifests" / "b2").exists()


# --- retraining trigger ---------------------------------------------------------------------------------------

@pytest.fixture
def sharded(tmp_path):
    home = tmp_path / "home"
    eval_set(home)
    land(home, "b1", 12)
    land(home, "b2", 12, base=100)
    s = settings_for(home, tmp_path, retrain_sensor="running", min_new_images=20)
    outcomes = run_pipeline(s, select="eval_images,raw_images,validated_images,bias_report,image_shards")
    assert all(o.success for o in outcomes), outcomes
    return home, s, tmp_path


def test_retrain_sensor_counts_new_sharded_images_against_the_threshold(sharded):
    home, s, tmp = sharded
    got = evaluate_sensor(s, "retrain_sensor")
    assert len(got.run_requests) == 1
    req = got.run_requests[0]
    assert req.tags["sslpipe/new_images"] == "24" and req.tags["sslpipe/window"] == "b1,b2"
    assert req.run_key.startswith("retrain:") and evaluate_sensor(s, "retrain_sensor").run_requests[0].run_key == req.run_key
    high = settings_for(home, tmp, min_new_images=25)
    assert "24 new image(s)" in evaluate_sensor(high, "retrain_sensor").skip_message
    window = settings_for(home, tmp, min_new_images=20)
    window = Settings(**{**window.__dict__, "train": {"last_batches": 1}})
    assert "12 new image(s)" in evaluate_sensor(window, "retrain_sensor").skip_message  # the window applies


def test_retrain_sensor_finds_nothing_new_once_the_champion_trained_on_it(sharded, monkeypatch):
    home, s, tmp = sharded
    outcomes = run_pipeline(s, select="eval_leakage,ssl_encoder,probe_report,registered_model")
    assert outcomes[-1].success, outcomes
    from assets.mlflow_registry import Registry

    Registry(resources_for(s)["mlflow"]).approve("1", "tester", "seen")
    assert "0 new image(s)" in evaluate_sensor(s, "retrain_sensor").skip_message
    land(home, "b3", 30, base=300)
    run_pipeline(s, select="raw_images,validated_images,bias_report,image_shards", only_batches=["b3"])
    assert evaluate_sensor(s, "retrain_sensor").run_requests[0].tags["sslpipe/new_images"] == "30"


def test_retrain_schedule_from_the_cron_and_its_status(tmp_path):
    s = settings_for(tmp_path / "home", tmp_path, retrain_cron="0 3 * * *", retrain_schedule="running",
                     timezone="Europe/Paris")
    sched = build_definitions(s).get_schedule_def("retrain_schedule")
    assert (sched.cron_schedule, sched.execution_timezone, sched.job_name) == ("0 3 * * *", "Europe/Paris", "train_encoder")
    assert sched.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.build_schedule_context(instance=prepare_instance(s)) as ctx:
        assert [r.tags["sslpipe/trigger"] for r in sched.evaluate_tick(ctx).run_requests] == ["retrain_schedule"]
    none = build_definitions(settings_for(tmp_path / "home", tmp_path))
    assert not list(none.schedules or [])


@pytest.mark.parametrize("section, needle", [
    ({"landing_sensor": "on"}, "automation.landing_sensor must be one of"),
    ({"quiet_seconds": -1}, "automation.quiet_seconds must be a whole number >= 0"),
    ({"min_new_images": "many"}, "automation.min_new_images"),
    ({"retrain_cron": "every night"}, "automation.retrain_cron must be a cron string"),
    ({"timezone": "Mars/Olympus"}, "not a known time zone"),
    ({"sensor_interval_seconds": 0}, "automation.sensor_interval_seconds"),
    ({"quiet": 5}, "automation: unknown key(s) ['quiet']"),
])
def test_bad_automation_settings_are_refused_with_the_key_named(tmp_path, section, needle):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"automation": section}))
    with pytest.raises(SettingsError, match=None) as e:
        Settings.from_env(home=str(tmp_path)).with_config_file(str(cfg))
    assert needle in str(e.value)


# --- retries ----------------------------------------------------------------------------------------------------

def step_events(instance, run_id: str, step: str) -> list[str]:
    return [e.dagster_event.event_type_value for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.step_key == step]


def test_a_tracking_server_briefly_away_is_retried_and_a_failed_decision_is_not(sharded, monkeypatch):
    home, s, tmp = sharded
    from assets.mlflow_registry import Registry

    real, calls = Registry.ensure, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("tracking server at http://mlflow:5000 refused the connection")
        return real(self)

    monkeypatch.setattr(Registry, "ensure", flaky)
    o = run_pipeline(s, select="eval_leakage,ssl_encoder,probe_report,registered_model")[-1]
    assert o.success and o.materialized[-1] == "registered_model", o
    instance = prepare_instance(s)
    assert step_events(instance, o.run_id, "registered_model").count("STEP_UP_FOR_RETRY") == 1

    # a batch sharded after the leakage decision: training refuses, once, with no retry
    land(home, "b3", 12, base=500)
    run_pipeline(s, select="raw_images,validated_images,bias_report,image_shards", only_batches=["b3"])
    o = run_pipeline(s, select="ssl_encoder")[-1]
    assert not o.success and "leakage decision does not cover the shards of batch(es) ['b3']" in o.errors[0]
    assert "STEP_UP_FOR_RETRY" not in step_events(instance, o.run_id, "ssl_encoder")


# --- idempotent backfills --------------------------------------------------------------------------------------

def shard_state(home: Path) -> dict:
    return {b.name: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(b.iterdir())}
            for b in sorted((home / "shards").iterdir()) if b.is_dir()}


def test_a_backfill_after_a_contract_change_gives_the_same_shards_and_does_not_retrain(sharded, monkeypatch):
    home, s, tmp = sharded
    first = run_pipeline(s)
    assert all(o.success for o in first), first
    before = shard_state(home)
    model_dirs = sorted(p.name for p in (home / "models").iterdir())
    # the contract changes (a looser size limit, a new contract version): re-materialize both batches
    contract = yaml.safe_load((CONTRACTS / "unlabeled_images.yaml").read_text())
    contract["version"] = str(contract.get("version", "1")) + ".1"
    contract["images"]["max_side"] = int(contract["images"].get("max_side", 4096)) * 2
    (tmp / "contract2.yaml").write_text(yaml.safe_dump(contract))
    s2 = Settings(**{**s.__dict__, "contract": str(tmp / "contract2.yaml")})
    again = run_pipeline(s2)
    assert all(o.success for o in again), again
    assert shard_state(home) == before
    assert sorted(p.name for p in (home / "models").iterdir()) == model_dirs  # the same run key: no new training
    from assets.records import read_record

    assert read_record(home, "ssl_encoder").reused is True
    assert read_record(home, "registered_model").version == "1"  # nothing new registered
    versions = json.loads((home / "reports" / "b1" / "validated_images.checks.json").read_text())["contract"]
    assert contract["version"] in versions


def test_a_failed_blocking_check_is_not_retried_though_its_asset_has_a_retry_policy(tmp_path):
    home = tmp_path / "home"
    for c in ("cat", "dog"):  # two images: under the eval contract's minimum rows and per class
        write(home / "eval" / c / "0.jpg", jpeg_bytes(900 + (c == "dog"), size=(36, 36)))
    (home / "landing").mkdir(parents=True)
    s = settings_for(home, tmp_path)
    o = run_pipeline(s, select="eval_images")[0]
    assert [c.check for c in o.blocked] and not o.success
    events = step_events(prepare_instance(s), o.run_id, "eval_images")
    assert events.count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in events and events[-1] == "STEP_FAILURE"
