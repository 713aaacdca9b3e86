"""ssl_encoder trained by TorchrunTraining: `torchrun` with 2 CPU ranks (gloo) launched through Dagster Pipes
(dg.materialize on a real instance, real MLflow on SQLite, the demo's real shards): what comes back over Pipes,
reuse, a failure that names its cause, and a killed job resumed from its checkpoint by the retry policy."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from assets import InProcessTraining, TorchrunTraining, build_assets
from data_contracts import load_contract
from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance, resources_for, train_defaults
from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.train import load_encoder

TRAIN = "train:\n  method: byol\n  backbone: resnet18\n  width: 8\n  batch_size: {batch}\n  steps: {steps}\n" \
        "  warmup_steps: 1\n  workers: 0\n  checkpoint_every: {ckpt}\n  health_every: 2\n  device: cpu\n"
INGEST = "raw_images,validated_images,bias_report,image_shards,eval_images,eval_leakage"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """The demo's three batches ingested, sharded and checked for leakage (no training yet)."""
    home = tmp_path_factory.mktemp("torchrun") / "home"
    write_demo(Home.resolve(home).ensure())
    assert main(["run", "--home", str(home), "--select", INGEST]) == 0
    return home


@pytest.fixture
def home(ingested, tmp_path):
    h = tmp_path / "home"
    shutil.copytree(ingested, h)
    return h


def materialize(home: Path, trainer, steps=6, ckpt=0, batch=32) -> dg.ExecuteInProcessResult:
    cfg = home.parent / f"train-{steps}-{ckpt}-{batch}.yaml"
    cfg.write_text(TRAIN.format(steps=steps, ckpt=ckpt, batch=batch))
    s = Settings.from_env(home=home).with_config_file(cfg)
    assets = build_assets(load_contract(s.contract), load_contract(s.eval_contract), s.shards, train_defaults(s.train))
    return dg.materialize(assets, selection=["ssl_encoder"], instance=prepare_instance(s),
                          resources={**resources_for(s), "trainer": trainer}, raise_on_error=False)


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (m,) = result.asset_materializations_for_node("ssl_encoder")
    return {k: v.value for k, v in m.metadata.items()}


def messages(home: Path, result: dg.ExecuteInProcessResult) -> list[str]:
    """The run's log lines (context.log and Pipes), from the instance's event log."""
    inst = prepare_instance(Settings.from_env(home=home))
    return [e.user_message or "" for e in inst.all_logs(result.run_id)]


def mlflow_runs(home: Path):
    c = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("sslpipe")
    return c, (c.search_runs([exp.experiment_id]) if exp else [])


def test_two_ranks_report_each_step_and_the_result_over_pipes_then_the_encoder_is_reused(home):
    r = materialize(home, TorchrunTraining(nproc_per_node=2))
    assert r.success
    m = metadata(r)
    assert m["world_size"] == 2 and m["steps"] == 6 and m["images_seen"] == 6 * 32 and m["device"] == "cpu"
    assert not m["reused"] and m["resumed_from_step"] == -1 and m["final_loss"] > 0
    out = home / "models" / m["run_key"]
    result = json.loads((out / "result.json").read_text())
    assert result["world"] == 2 and result["steps"] == 6 and result["mlflow_run_id"] == m["mlflow_run_id"]
    assert json.loads((out / "train.json").read_text())["batch_size"] == 32  # the config the job was given
    assert load_encoder(m["encoder"])[1]["steps"] == 6
    # it went through Pipes: rank 0 opened it, its step messages became progress lines
    text = messages(home, r)
    assert any("[pipes] external process successfully opened dagster pipes" in t for t in text)
    assert any("-m pipelines.train_pipes" in t and "--nproc-per-node 2" in t for t in text)
    assert any("ssl_encoder: step 6/6 loss" in t for t in text)
    # torchrun kept each rank's output beside the checkpoint
    (launch,) = (out / "logs").iterdir()
    assert sorted(p.parent.name for p in launch.glob("attempt_0/*/stderr.log")) == ["0", "1"]

    client, runs = mlflow_runs(home)
    (run,) = runs
    assert run.info.run_id == m["mlflow_run_id"] and run.info.status == "FINISHED"
    assert [h.step for h in client.get_metric_history(run.info.run_id, "loss")] == list(range(6))  # once each
    for key in ("lr", "images_per_s", "data_wait_share", "embedding_std", "effective_rank"):
        assert client.get_metric_history(run.info.run_id, key), key
    assert client.get_metric_history(run.info.run_id, "final_loss")[0].step == 6

    # same data and config: reused, whichever launcher is configured; nothing launched, no second MLflow run
    again = materialize(home, TorchrunTraining(nproc_per_node=2))
    assert again.success
    m2 = metadata(again)
    assert m2["reused"] and m2["run_key"] == m["run_key"] and m2["mlflow_run_id"] == m["mlflow_run_id"]
    assert m2["world_size"] == 2 and len(list((out / "logs").iterdir())) == 1
    assert metadata(materialize(home, InProcessTraining()))["reused"]
    assert len(mlflow_runs(home)[1]) == 1


def test_a_training_that_stops_fails_without_retry_naming_the_cause_and_the_ranks_stderr(home):
    # a config the asset accepts, but that the two ranks cannot run: a global batch of 33 does not split in two
    r = materialize(home, TorchrunTraining(nproc_per_node=2), batch=33)
    assert not r.success
    (failure,) = [e for e in r.all_events if e.is_step_failure]
    text = failure.step_failure_data.error.message
    assert "ssl_encoder: train.batch_size 33 does not split evenly over 2 ranks" in text
    assert "local rank 1, last lines of" in text and "stderr.log" in text  # the tail of each rank's stderr
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in r.all_events)  # a retry cannot help
    (run,) = mlflow_runs(home)[1]
    assert run.info.status == "FAILED"
    assert not list(home.glob("models/*/result.json"))


def _torchrun_processes() -> list[int]:
    """This process's descendants that belong to a torchrun job (the agent and its ranks)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"torch.distributed.run" in cmd or b"pipelines.train_pipes" in cmd:
            found.append(pid)
        todo += children.get(pid, [])
    return found


@pytest.mark.slow
def test_a_killed_job_is_relaunched_by_the_retry_policy_and_resumes_from_its_checkpoint(home):
    steps, ckpt = 40, 5
    killed: list[int] = []

    def kill_after_the_first_checkpoint():
        deadline = time.time() + 300
        while time.time() < deadline and not list(home.glob("models/*/checkpoint.pt")):
            time.sleep(0.02)
        pids = _torchrun_processes()
        for pid in pids:  # the agent and both ranks at once, as an OOM kill or a lost machine would
            os.kill(pid, signal.SIGKILL)
        killed.extend(pids)

    killer = threading.Thread(target=kill_after_the_first_checkpoint, daemon=True)
    killer.start()
    r = materialize(home, TorchrunTraining(nproc_per_node=2), steps=steps, ckpt=ckpt)
    killer.join(timeout=5)
    assert len(killed) == 3  # torchrun and its two ranks
    assert r.success
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in r.all_events)
    assert any("ssl_encoder: the training job was killed (signal 9); the next attempt resumes" in t
               for t in messages(home, r))
    m = metadata(r)
    assert m["steps"] == steps and m["world_size"] == 2 and m["resumed_from_step"] >= ckpt
    client, runs = mlflow_runs(home)
    (run,) = runs  # the relaunch logged into the same run
    assert run.info.status == "FINISHED"
    assert {h.step for h in client.get_metric_history(run.info.run_id, "loss")} == set(range(steps))
    out = home / "models" / m["run_key"]
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(steps))
    assert len(list((out / "logs").iterdir())) == 2  # two launches
