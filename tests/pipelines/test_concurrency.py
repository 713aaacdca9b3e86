"""One home shared by concurrent `sslpipe` processes, for real: first use of the MLflow store and of the Dagster
instance, registration of the same new batches, and a run whose process was killed."""

import os
import signal
import subprocess
import sys

import dagster as dg

from realproc import BARRIER, PROJECT, clean_env, finish, python, tiny_home, wait_for
from ssl_ops.locks import file_lock

ROUNDS = 4  # fresh homes per test: two processes race on each; the unguarded code failed in most rounds

MLFLOW_RACER = BARRIER + '''
import sys
from pathlib import Path
from assets.mlflow_registry import Registry
from assets.mlflow_tracking import MlflowTracking
root, me = Path(sys.argv[1]), sys.argv[2]
for k in range(int(sys.argv[3])):
    home = root / f"home{k}"
    barrier(root / f"go{k}", me, 2)
    try:
        t = MlflowTracking(tracking_uri=f"sqlite:///{home}/mlflow/mlflow.db", artifact_root=f"{home}/mlflow/artifacts")
        client = t.client()
        exp = t.experiment_id(client)
        Registry(t).ensure()
        print(k, exp, [e.name for e in client.search_experiments()], flush=True)
    except Exception as e:  # said, and on to the next round (the other process must not wait for this one)
        print(k, "ERROR", type(e).__name__, str(e).splitlines()[0], flush=True)
'''

DAGSTER_RACER = BARRIER + '''
import sys
from pathlib import Path
from pipelines.runner import register_batches
from pipelines.settings import Settings, prepare_instance
root, me = Path(sys.argv[1]), sys.argv[2]
for k in range(int(sys.argv[3])):
    settings = Settings.from_env(home=root / f"home{k}")
    barrier(root / f"instance{k}", me, 2)  # both make the instance of a new home at once
    try:
        instance = prepare_instance(settings)
    except Exception as e:
        print(k, "ERROR", type(e).__name__, str(e).splitlines()[0], flush=True)
        instance = prepare_instance(settings)  # the other process has made it by now
    barrier(root / f"register{k}", me, 2)  # then both register the same new batches at once
    try:
        present = register_batches(settings, instance, echo=lambda m: None)
        print(k, ",".join(present), ",".join(instance.get_dynamic_partitions("batches")), flush=True)
    except Exception as e:
        print(k, "ERROR", type(e).__name__, str(e).splitlines()[0], flush=True)
'''


def race(code: str, root, rounds: int = ROUNDS) -> list[str]:
    procs = [python(code, str(root), me, str(rounds)) for me in ("a", "b")]
    results = finish(procs)
    for rc, out, err in results:
        assert rc == 0, err[-4000:]
    return [out for _, out, _ in results]


def test_two_processes_create_the_mlflow_store_of_a_new_home_at_once(tmp_path):
    outs = race(MLFLOW_RACER, tmp_path)
    for out in outs:
        assert out.split("\n")[:ROUNDS] == [f"{k} 1 ['sslpipe', 'Default']" for k in range(ROUNDS)], out
    for k in range(ROUNDS):
        assert (tmp_path / f"home{k}" / "mlflow" / "mlflow.db.lock").is_file()


def test_two_processes_register_the_same_new_batches_and_both_see_every_batch(tmp_path):
    for k in range(ROUNDS):
        for b in ("b1", "b2", "b3"):
            (tmp_path / f"home{k}" / "landing" / b).mkdir(parents=True)
            (tmp_path / f"home{k}" / "landing" / b / "x.jpg").write_bytes(b"x")
            (tmp_path / f"home{k}" / "landing" / b / "_READY").touch()
    outs = race(DAGSTER_RACER, tmp_path)
    for out in outs:
        assert out.strip().split("\n") == [f"{k} b1,b2,b3 b1,b2,b3" for k in range(ROUNDS)], out
    for k in range(ROUNDS):
        cfg = (tmp_path / f"home{k}" / "dagster" / "dagster.yaml").read_text()
        assert cfg.startswith("# Dagster instance of this sslpipe home") and "default_limit: 1" in cfg


def test_a_killed_run_is_marked_failed_by_the_next_run(tmp_path):
    home = tmp_path / "home"
    cfg = tiny_home(home, batches=("b1",))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--home", str(home), "--config", str(cfg)],
                            cwd=PROJECT, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        def started():
            if not (home / "dagster" / "dagster.yaml").is_file():
                return None
            with file_lock(home / "dagster" / ".instance.lock"):  # as sslpipe itself: not while it creates it
                runs = dg.DagsterInstance.from_config(str(home / "dagster")).get_runs(
                    filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            return runs[0] if runs else None

        run = wait_for(started, 60, "the run to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-run: no chance to record anything
        proc.wait()
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert run.tags["sslpipe/pid"] == str(proc.pid)

    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--home", str(home), "--config", str(cfg),
                        "--select", "eval_images,raw_images"], cwd=PROJECT, env=clean_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"marked run {run.run_id[:8]} ({run.job_name}) FAILED: its process (pid {proc.pid}) is gone" in r.stdout
    killed = instance.get_run_by_id(run.run_id)
    assert killed.status == dg.DagsterRunStatus.FAILURE
    assert any("is gone" in (e.message or "") for e in instance.all_logs(run.run_id))
    assert instance.event_log_storage.get_concurrency_info("sslpipe_ingest").claimed_slots == []
    others = [r.status for r in instance.get_runs() if r.run_id != run.run_id]  # the next run's two, and any of
    assert len(others) >= 2 and set(others) == {dg.DagsterRunStatus.SUCCESS}  # the killed process that ended


def test_mlflow_runs_left_running_by_a_failed_dagster_run_are_ended(tmp_path):
    """A training killed (or stopped by a full disk) leaves its MLflow run RUNNING: when its Dagster run is marked
    failed, the MLflow runs it was writing into are ended FAILED; other runs are left alone."""
    from pipelines.runner import end_mlflow_runs
    from pipelines.settings import Settings, resources_for

    s = Settings.from_env(home=tmp_path / "home")
    assert end_mlflow_runs(s, ["dead-run"]) == 0  # no store yet: nothing to do, nothing created
    tracking = resources_for(s)["mlflow"]
    dead = tracking.start_run("ssl_encoder", tags={"dagster.run_id": "dead-run"})
    alive = tracking.start_run("ssl_encoder", tags={"dagster.run_id": "live-run"})
    assert end_mlflow_runs(s, ["dead-run"]) == 1
    client = tracking.client()
    assert client.get_run(dead.run_id).info.status == "FAILED"
    assert client.get_run(alive.run_id).info.status == "RUNNING"
    assert end_mlflow_runs(s, ["dead-run"]) == 0  # already ended


HISTORY_RACER = BARRIER + '''
import sys
from pathlib import Path
from assets.mlflow_registry import Registry
from assets.mlflow_tracking import MlflowTracking
root, me = Path(sys.argv[1]), sys.argv[2]
home = root / "home"
t = MlflowTracking(tracking_uri=f"sqlite:///{home}/mlflow/mlflow.db", artifact_root=f"{home}/mlflow/artifacts")
reg = Registry(t)
barrier(root / "go", me, 2)  # two reviewers record decisions at the same moment
for k in range(int(sys.argv[3])):
    reg.record_history({"reviewer": me, "k": k})  # what every alias move writes
print("done", flush=True)
'''


def test_two_reviewers_recording_at_once_never_overwrite_each_others_history(tmp_path):
    from assets.mlflow_registry import Registry
    from assets.mlflow_tracking import MlflowTracking

    home = tmp_path / "home"
    t = MlflowTracking(tracking_uri=f"sqlite:///{home}/mlflow/mlflow.db", artifact_root=f"{home}/mlflow/artifacts")
    Registry(t).ensure()  # the store exists before the race (its creation is raced in another test)
    race(HISTORY_RACER, tmp_path, rounds=15)
    entries = [(h["reviewer"], h["k"]) for h in Registry(t).history()]
    assert sorted(entries) == sorted((me, k) for me in "ab" for k in range(15))  # 30 entries, none lost
    for me in "ab":  # each process's own entries in the order it wrote them
        assert [k for r, k in entries if r == me] == list(range(15))
