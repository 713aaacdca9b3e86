"""Integrity through the graph, on a tiny real home (2 batches of 24 real JPEGs, shards of 10):
ssl_encoder and the leakage check refuse damaged shards naming them; the run key follows the verified bytes;
one training per run key across two real concurrent processes."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from imagefiles import jpeg_bytes, write
from pipelines.cli import main
from ssl_ops.home import Home

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ("shards:\n  max_samples: 10\n"
          "train:\n  method: simclr\n  backbone: resnet18\n  width: 4\n  image_size: 16\n  batch_size: 8\n"
          "  steps: {steps}\n  warmup_steps: 1\n  workers: 0\n  checkpoint_every: 0\n  health_every: 0\n"
          "  device: cpu\n")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A home whose two batches went through raw_images .. image_shards (built once, copied per test)."""
    root = tmp_path_factory.mktemp("integrity")
    home = root / "home"
    for b, base in (("b1", 0), ("b2", 100)):
        for i in range(24):
            write(home / "landing" / b / f"img{i:02d}.jpg", jpeg_bytes(base + i, size=(40, 32)))
        (home / "landing" / b / "_READY").touch()  # complete, for the subprocesses too
    for c, base in (("zero", 900), ("one", 950)):  # image_shards needs the eval set
        for i in range(6):  # the eval contract asks for at least 10 images
            write(home / "eval" / c / f"e{i}.jpg", jpeg_bytes(base + i, size=(40, 32)))
    cfg = root / "cfg.yaml"
    cfg.write_text(CONFIG.format(steps=4))
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select",
                 "eval_images,raw_images,validated_images,bias_report,image_shards,eval_leakage"]) == 0
    return home


@pytest.fixture
def home(ingested, tmp_path):
    dst = tmp_path / "home"
    shutil.copytree(ingested, dst)
    return dst


def config(tmp_path, steps=4) -> Path:
    p = tmp_path / f"cfg-{steps}.yaml"
    p.write_text(CONFIG.format(steps=steps))
    return p


def flip_header(shard: Path, member: int = 4) -> None:
    with tarfile.open(shard) as t:
        offset = t.getmembers()[member].offset
    data = bytearray(shard.read_bytes())
    data[offset + 3] ^= 0xFF
    shard.write_bytes(bytes(data))


def mlflow_runs(home):
    c = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("sslpipe")
    return c, (c.search_runs([exp.experiment_id]) if exp else [])


def test_ssl_encoder_refuses_a_damaged_shard_naming_it_and_how_to_rebuild(home, tmp_path, capsys):
    shard = home / "shards" / "b2" / "shard-000001.tar"
    flip_header(shard)
    assert main(["run", "--home", str(home), "--config", str(config(tmp_path)), "--select", "ssl_encoder"]) == 1
    err = capsys.readouterr().err
    assert f"{shard}: sha256" in err
    assert f"sslpipe run --home {home.resolve()} --select image_shards --batches b2" in err
    assert not list(home.glob("models/*/encoder.pt"))  # nothing trained on it
    assert not mlflow_runs(home)[1]


def test_the_leakage_check_verifies_the_shards_it_relies_on(home, tmp_path):
    leaked = (home / "landing" / "b1" / "img03.jpg").read_bytes()
    write(home / "eval" / "zero" / "a.jpg", leaked)  # an exact copy of a training image
    cfg = config(tmp_path)
    main(["run", "--home", str(home), "--config", str(cfg), "--select", "eval_images,eval_leakage"])
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert not leak["passed"] and len(leak["exact"]) == 1 and sorted(leak["batches_checked"]) == ["b1", "b2"]
    # a hand edit of the index that claims the copy was left out of the shards (it was not): still found
    index = home / "shards" / "b1" / "index.json"
    d = json.loads(index.read_text())
    d["excluded"] = [{"sample_id": leak["exact"][0]["train_sample_id"] if "train_sample_id" in leak["exact"][0]
                      else __import__("hashlib").sha256(leaked).hexdigest(), "reason": "hand edit"}]
    index.write_text(json.dumps(d))
    main(["run", "--home", str(home), "--config", str(cfg), "--select", "eval_images,eval_leakage"])
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert not leak["passed"] and len(leak["exact"]) == 1
    # an edited count: the index no longer matches its digest, so the check cannot pass
    d["excluded"] = []
    d["shards"][0]["samples"] -= 1
    index.write_text(json.dumps(d))
    main(["run", "--home", str(home), "--config", str(cfg), "--select", "eval_images,eval_leakage"])
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert not leak["passed"] and "digest does not match its shard list" in leak["damaged"][0]
    assert "--select image_shards --batches b1" in leak["damaged"][0]


def test_the_run_key_follows_the_verified_bytes_across_damage_and_rebuild(home, tmp_path):
    from assets.ssl_encoder import run_key, select_window, verify_window
    from ssl_ops.shards import ShardConfig, shard_batch
    from ssl_ops.shards.verify import ShardDamaged
    from ssl_ops.train import TrainConfig
    from ssl_ops.manifest import read_manifest

    h = Home.resolve(home)
    cfg = TrainConfig.from_dict({"method": "simclr", "width": 4, "image_size": 32, "steps": 4, "device": "cpu"})

    def key():
        window, _ = select_window(h, ["b1", "b2"], [], 0)
        return run_key(cfg, verify_window(h, window))

    before = key()
    shard = home / "shards" / "b1" / "shard-000002.tar"
    good = shard.read_bytes()
    flip_header(shard, 2)
    with pytest.raises(ShardDamaged, match=r"shard-000002\.tar: sha256"):
        key()  # no key, so no training and no reuse, on damaged bytes
    # the rebuild, exactly as printed: image_shards rewrites the damaged shard (deterministic: same bytes)
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--home", str(home.resolve()), "--config",
           str(config(tmp_path)), "--select", "image_shards", "--batches", "b1"]
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shard.read_bytes() == good
    assert key() == before  # identical bytes rewritten: the same key, the same encoder may be reused
    # other content (here another sample order) in a shard: another key, never the old encoder
    shard_batch(read_manifest(h.accepted_path("b1")), h.batch_dir("b1"), h.shard_dir("b1"),
                ShardConfig(max_samples=10, seed=5))
    assert key() != before


@pytest.mark.slow
def test_two_concurrent_runs_of_one_key_train_once_and_log_each_step_once(home, tmp_path):
    steps = 40
    cfg = config(tmp_path, steps=steps)
    # create the MLflow store once (two processes creating it at once would race on its migrations)
    from assets.mlflow_tracking import MlflowTracking

    MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                   artifact_root=str(home / "mlflow" / "artifacts")).client()
    cmd = [sys.executable, "-m", "pipelines.cli", "run", "--home", str(home), "--config", str(cfg),
           "--select", "ssl_encoder"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [o for o in outs if "MLflow run" in o and "reusing" not in o]
    reused = [o for o in outs if "reusing the encoder trained on the same data and config" in o]
    assert len(trained) == 1 and len(reused) == 1, outs
    # it waited (for the pool sslpipe_train, one training at a time; or for the run key's lock) and said why
    assert "waiting for a free slot of pool sslpipe_train" in reused[0] or "waiting for another process" in reused[0]
    client, runs = mlflow_runs(home)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")]
    assert sorted(history) == list(range(steps))  # each step logged once
