"""ssl_encoder through Dagster and MLflow on a real instance: what it records, reuse, resume after a kill,
the window of batches, and config errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance
from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.train import TrainConfig, load_encoder

ROOT = Path(__file__).resolve().parents[2]
TRAIN = "train:\n  method: {method}\n  backbone: resnet18\n  width: 8\n  batch_size: 32\n  steps: {steps}\n" \
        "  warmup_steps: 1\n  workers: 0\n  checkpoint_every: {ckpt}\n  health_every: 2\n  device: cpu\n"


@pytest.fixture
def demo_home(tmp_path):
    home = tmp_path / "home"
    write_demo(Home.resolve(home).ensure())
    return home


def config(tmp_path, method="byol", steps=6, ckpt=0, extra=""):
    p = tmp_path / f"cfg-{method}-{steps}.yaml"
    p.write_text(TRAIN.format(method=method, steps=steps, ckpt=ckpt) + extra)
    return p


def materializations(home):
    s = Settings.from_env(home=home)
    inst = prepare_instance(s)
    recs = inst.fetch_materializations(dg.AssetKey("ssl_encoder"), limit=100).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in
            sorted(recs, key=lambda r: r.storage_id)]


def mlflow_runs(home):
    c = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("sslpipe")
    return c, (c.search_runs([exp.experiment_id]) if exp else [])


def test_trains_on_every_accepted_batch_records_lineage_in_dagster_and_mlflow_then_reuses(demo_home, tmp_path,
                                                                                          capsys):
    cfg = config(tmp_path)
    assert main(["run", "--home", str(demo_home), "--config", str(cfg)]) == 0
    (m,) = materializations(demo_home)
    assert m["batches"] == ["demo-001", "demo-002", "demo-003"] and m["method"] == "byol"
    digests = {b: json.loads((demo_home / "shards" / b / "index.json").read_text())["digest"] for b in m["batches"]}
    assert m["shard_index_digests"] == digests
    assert m["steps"] == 6 and m["images_seen"] == 6 * 32 and m["device"] == "cpu" and not m["reused"]
    assert m["images_per_s"] > 0 and 0 <= m["data_wait_share"] <= 1 and m["effective_rank"] >= 1
    assert m["final_loss"] > 0 and "embedding_std" in m
    assert m["mlflow_run"].endswith(f"/runs/{m['mlflow_run_id']}")
    encoder, meta = load_encoder(m["encoder"])
    assert meta["method"] == "byol" and meta["steps"] == 6

    client, runs = mlflow_runs(demo_home)
    (run,) = runs
    assert run.info.run_id == m["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.params["method"] == "byol" and run.data.params["batches"] == "demo-001,demo-002,demo-003"
    assert json.loads(run.data.params["shard_index_digests"]) == digests
    assert run.data.tags["dagster.run_id"]
    assert [h.step for h in client.get_metric_history(run.info.run_id, "loss")] == list(range(6))
    for key in ("lr", "images_per_s", "data_wait_share", "embedding_std", "effective_rank"):
        assert client.get_metric_history(run.info.run_id, key), key
    arts = {a.path for d in ("encoder", "training") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"encoder/encoder.pt", "training/metrics.jsonl", "training/config.json"} <= arts
    assert "mlflow ui --backend-store-uri" in capsys.readouterr().out

    # same data, same config: no second training, no second MLflow run
    assert main(["run", "--home", str(demo_home), "--config", str(cfg)]) == 0
    again = materializations(demo_home)[-1]
    assert again["reused"] and again["mlflow_run_id"] == m["mlflow_run_id"]
    assert len(mlflow_runs(demo_home)[1]) == 1


def test_the_window_of_batches_and_blocked_or_unknown_batches(demo_home, tmp_path, capsys):
    cfg = config(tmp_path, "simclr", extra="  last_batches: 2\n")
    assert main(["run", "--home", str(demo_home), "--config", str(cfg)]) == 0
    assert materializations(demo_home)[-1]["batches"] == ["demo-002", "demo-003"]
    # a batch whose blocking checks failed is left out, with a warning naming it; the window is the latest
    # two *accepted* batches
    report = demo_home / "reports" / "demo-003" / "bias_report.checks.json"
    rec = json.loads(report.read_text())
    rec["checks"]["near_duplicates"].update(passed=False, blocking=True, summary="too many near duplicates")
    report.write_text(json.dumps(rec))
    assert main(["run", "--home", str(demo_home), "--config", str(cfg), "--select", "ssl_encoder"]) == 0
    assert materializations(demo_home)[-1]["batches"] == ["demo-001", "demo-002"]
    assert "leaving out demo-003: failed blocking check(s)" in capsys.readouterr().out
    bad = config(tmp_path, "vicreg", extra="  batches: [demo-001, nope]\n")
    assert main(["run", "--home", str(demo_home), "--config", str(bad), "--select", "ssl_encoder"]) == 1
    assert "unknown batch(es) ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize("section,message", [
    ("train:\n  method: swav\n", "train.method 'swav' is unknown"),
    ("train:\n  method: mae\n  backbone: resnet18\n", "mae needs a ViT backbone"),
    ("train:\n  stpes: 10\n", r"unknown key\(s\) \['stpes'\]"),
    ("train:\n  last_batches: -1\n", "train.last_batches must be an integer >= 0"),
    ("train: [1, 2]\n", "train must be a mapping"),
])
def test_a_bad_train_section_exits_2_before_touching_data(demo_home, tmp_path, capsys, section, message):
    p = tmp_path / "bad.yaml"
    p.write_text(section)
    assert main(["run", "--home", str(demo_home), "--config", str(p)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (demo_home / "manifests").exists()


def test_a_budget_run_shows_its_progress_in_minutes_of_the_budget(demo_home, tmp_path):
    p = tmp_path / "budget.yaml"
    p.write_text(TRAIN.replace("  steps: {steps}\n", "  budget_minutes: 0.2\n").format(method="simclr", ckpt=0))
    assert main(["run", "--home", str(demo_home), "--config", str(p)]) in (0, 3)
    inst = prepare_instance(Settings.from_env(home=demo_home))
    (run,) = [r for r in inst.get_runs() if any(
        "ssl_encoder" in (e.user_message or "") for e in inst.all_logs(r.run_id))]
    lines = [e.user_message for e in inst.all_logs(run.run_id) if "ssl_encoder: step" in (e.user_message or "")]
    # a line every tenth of the budget, naming the minutes done of those planned; never "step N/?"
    assert len(lines) >= 3 and all(" of 0.2 minutes, loss " in t for t in lines), lines
    assert not any("/?" in t for t in lines)


def test_the_launchpad_defaults_are_the_configured_train_section(tmp_path):
    from pipelines.definitions import build_definitions

    cfg = config(tmp_path, "dino", steps=17, extra="  method_options: {local_crops: 2}\n")
    s = Settings.from_env(home=tmp_path / "h").with_config_file(cfg)
    asset = build_definitions(s).resolve_assets_def("ssl_encoder")
    fields = asset.op.config_schema.as_field().config_type.fields
    assert fields["steps"].default_value == 17 and fields["method"].default_value == "dino"
    assert json.loads(fields["method_options"].default_value) == {"local_crops": 2}
    assert fields["width"].default_value == 8 and fields["last_batches"].default_value == 0


def test_a_recipe_lies_under_the_section_its_view_options_follow_the_chosen_method(tmp_path):
    from ssl_ops.demo_data import DEMO_TRAIN

    views = DEMO_TRAIN["method_options"]
    assert views["hflip"] is False and views["rotate"] > 0  # the digits' views
    p = tmp_path / "dino.yaml"
    p.write_text("train: {method: dino, backbone: vit_tiny, image_size: 32, patch_size: 4}\n")
    s = Settings.from_env(home=tmp_path / "h").with_config_file(p).with_train_recipe(DEMO_TRAIN)
    assert s.train["method_options"] == {}  # DINO has no hflip or rotate: not inherited
    assert s.train["image_size"] == 32 and s.train["steps"] == DEMO_TRAIN["steps"]
    base = Settings.from_env(home=tmp_path / "h2")
    assert base.with_train_recipe(DEMO_TRAIN).train["method_options"] == views
    p.write_text("train: {method: byol, budget_minutes: 3}\n")
    s = base.with_config_file(p).with_train_recipe(DEMO_TRAIN)
    assert s.train["method_options"] == views and s.train["budget_minutes"] == 3 and "steps" not in s.train
    p.write_text("train: {method_options: {temperature: 0.5}}\n")
    assert base.with_config_file(p).with_train_recipe(DEMO_TRAIN).train["method_options"] == {"temperature": 0.5}
    # without a recipe or a section: TrainConfig's own defaults, image size and width to be fitted, a budget
    from pipelines.settings import train_config_dict

    cfg = TrainConfig.from_dict(train_config_dict(base.train))
    assert cfg.image_size is None and cfg.width is None and cfg.budget_minutes == TrainConfig().budget_minutes
    assert cfg.backbone is None and cfg.batch_size is None and not cfg.fitted  # by device, when it trains
    assert cfg.steps is None and cfg.method_options == {}


def test_a_killed_run_resumes_from_its_checkpoint_into_the_same_mlflow_run(demo_home, tmp_path):
    steps = 120
    cfg = config(tmp_path, "simclr", steps=steps, ckpt=20)
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--home", str(demo_home), "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while not list(demo_home.glob("models/*/checkpoint.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, as an OOM kill or a lost machine would
    proc.wait()
    (ckpt,) = demo_home.glob("models/*/checkpoint.pt")
    assert not (ckpt.parent / "result.json").exists()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "resuming from the checkpoint" in run.stdout
    m = materializations(demo_home)[-1]
    assert m["steps"] == steps and m["resumed_from_step"] >= 20
    client, runs = mlflow_runs(demo_home)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged = {h.step for h in client.get_metric_history(runs[0].info.run_id, "loss")}
    assert logged == set(range(steps))  # the curve continues; steps the kill kept from MLflow are filled in
    rows = [json.loads(x)["step"] for x in (ckpt.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(steps))  # each step once in the run's own log
