"""The GPU speedrun (bench/speedrun.py), run tiny on the CPU so that it cannot rot: real shards of real
CIFAR-10 images, real training steps and kNN evaluations; its figures must be real numbers and its exit status
must say whether the target was reached. Without a GPU, --device cuda must fail at once with a clear message.
torch.compile on CPU takes minutes on 2 cores: that path runs only with SSLPIPE_SPEEDRUN_COMPILE=1."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--device", "cpu", "--subset", "1000", "--test-subset", "500", "--batch", "64", "--width", "8",
        "--options", '{"hidden_dim": 64, "proj_dim": 32}', "--workers", "1", "--log-every", "5"]


def speedrun(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "speedrun.py"), *args, "--work", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def check_figures(r: dict) -> None:
    for key in ("views_per_s", "images_per_s", "train_s"):
        assert math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    assert r["views_per_s"] == pytest.approx(2 * r["images_per_s"])
    assert 0 <= r["data_wait_share"] <= 1 and 0 <= r["augment_share"] <= 1
    assert r["data_wait_share"] + r["augment_share"] < 1
    # the first (warm) steps are left out of views/s, unless the run was too short to have others
    assert r["timed_steps"] >= 1
    assert (r["timed_from_step"] > 0 and r["steps"] == r["timed_steps"] + r["timed_from_step"]) or (
        r["timed_from_step"] == 0 and r["steps"] == r["timed_steps"])
    assert math.isfinite(r["final_loss"])
    assert r["curve"], "no evaluation"
    for p in r["curve"]:
        assert 0 <= p["knn"] <= 1 and p["eval_s"] > 0 and 0 <= p["train_s"] <= r["train_s"]
    assert [p["step"] for p in r["curve"]] == sorted({p["step"] for p in r["curve"]})
    assert r["curve"][-1]["step"] <= r["steps"]
    assert r["best_knn"] == max(p["knn"] for p in r["curve"])
    assert r["config"]["train_images"] == 1000 and r["config"]["test_images"] == 500


@pytest.mark.shared_data
def test_tiny_cpu_run_reaches_a_low_target_and_reports_real_figures(tmp_path):
    from imagefiles import need_shared

    need_shared("cifar10-jpg", "train.zip")
    p = speedrun([*TINY, "--target", "0.05", "--budget-minutes", "0.5", "--eval-every", "5s", "--warm-steps", "1",
                  "--json", "-"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)  # --json -: stdout holds the JSON only, progress went to stderr
    check_figures(r)
    assert r["reached"] and r["stop_reason"].startswith("target reached")
    assert r["time_to_target_s"] == r["curve"][-1]["train_s"] > 0  # it stops at the first evaluation at the target
    assert r["time_to_target_after_first_step_s"] == pytest.approx(r["time_to_target_s"] - r["first_step_s"])
    assert r["curve"][-1]["knn"] >= 0.05
    assert r["schedule_steps"] is not None  # fitted to the budget from the measured steps (at 15% of it, 4.5 s)
    assert r["config"]["method"] == "byol" and r["config"]["optimizer"] == "lars"
    assert r["config"]["precision"] == "fp32" and r["config"]["compile"] is False and r["config"]["data"] == "resident"
    assert "time to 5% kNN" in p.stderr and "views/s" in p.stderr and "data wait" in p.stderr


@pytest.mark.shared_data
def test_a_missed_target_exits_3_and_the_streaming_loader_bf16_and_a_too_short_run_are_reported(tmp_path):
    from imagefiles import need_shared

    need_shared("cifar10-jpg", "train.zip")
    out = tmp_path / "r.json"
    p = speedrun([*TINY, "--target", "1.0", "--budget-minutes", "0.1", "--eval-every", "0", "--data", "stream",
                  "--precision", "bf16", "--warm-steps", "1000", "--json", str(out)], tmp_path)
    assert p.returncode == 3, p.stderr[-3000:]
    r = json.loads(out.read_text())
    check_figures(r)
    assert not r["reached"] and r["time_to_target_s"] is None and r["stop_reason"] == "budget spent"
    assert r["time_to_target_after_first_step_s"] is None
    # every step is within --warm-steps 1000: no schedule fitted, and the figures are over all the steps
    assert r["timed_from_step"] == 0 and r["schedule_steps"] is None
    assert "the figures below include them" in p.stdout
    assert len(r["curve"]) == 1 and r["curve"][0]["step"] == r["steps"]  # --eval-every 0: once, at the end
    assert 6 <= r["train_s"] <= 6 + 2 * r["train_s"] / r["steps"]  # the budget is the training clock
    assert r["config"]["data"] == "stream" and r["config"]["precision"] == "bf16"
    assert "NOT reached" in p.stdout and "time to" not in p.stdout


def test_cuda_without_a_gpu_fails_at_once_with_a_clear_message(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    p = speedrun(["--device", "cuda"], tmp_path, timeout=120)
    assert p.returncode == 2
    assert "--device cuda:" in p.stderr and "use --device auto or cpu" in p.stderr
    assert not any(tmp_path.iterdir())  # it stopped before preparing any data


def test_command_line_checks():
    sys.path.insert(0, str(ROOT))
    from bench.speedrun import parse_every, run

    assert parse_every("10") == ("epochs", 10.0) and parse_every("90s") == ("seconds", 90.0)
    assert parse_every("0") == ("epochs", 0.0)
    for bad in (["--target", "90"], ["--budget-minutes", "0"], ["--eval-every", "soon"], ["--options", "[1]"],
                ["--options", '{"no_such_option": 1}'], ["--options", '{"momentum": 2}']):
        with pytest.raises(SystemExit) as e:
            run(bad + ["--device", "cpu"])
        assert e.value.code == 2


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(os.environ.get("SSLPIPE_SPEEDRUN_COMPILE") != "1",
                    reason="torch.compile on CPU takes minutes on 2 cores: set SSLPIPE_SPEEDRUN_COMPILE=1")
def test_compiled_bf16_run_on_cpu(tmp_path):
    p = speedrun([*TINY, "--target", "1.0", "--budget-minutes", "4", "--epochs", "0.2", "--eval-every", "0",
                  "--compile", "on", "--precision", "bf16", "--warm-steps", "1", "--json", "-"], tmp_path, timeout=900)
    assert p.returncode == 3, p.stderr[-3000:]
    r = json.loads(p.stdout)
    check_figures(r)
    assert r["config"]["compile"] is True and r["stop_reason"] == "schedule ended" and r["steps"] == 3
    assert r["first_step_s"] > 5 * (r["train_s"] - r["first_step_s"]) / (r["steps"] - 1)  # compiling


@pytest.mark.shared_data
def test_the_resident_set_holds_the_shards_images_with_their_classes(tmp_path):
    """What the speedrun trains on and uses as its kNN bank: every sharded image, decoded as the zip's own, with
    the class of its path (a label mix-up would only show as a poor kNN)."""
    from imagefiles import need_shared

    need_shared("cifar10-jpg", "train.zip")
    sys.path.insert(0, str(ROOT))
    from bench.cifar_data import labelled, train_shards
    from bench.speedrun_data import load_train

    x, names, entries = load_train(train_shards(tmp_path, every=50), workers=2)
    xz, yz = labelled("train", every=50)
    assert x.shape == xz.shape == (1000, 3, 32, 32) and x.dtype == xz.dtype
    assert sum(n for _, n in entries) == 1000
    classes = sorted(set(names))
    assert len(classes) == 10
    ours = sorted((classes.index(c), x[i].numpy().tobytes()) for i, c in enumerate(names))
    theirs = sorted((int(yz[i]), xz[i].numpy().tobytes()) for i in range(len(yz)))
    assert ours == theirs
