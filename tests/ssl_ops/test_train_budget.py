"""Training for a wall-clock budget: the total fitted after calibration and kept on resume, refitted when the
first steps were slow, and refitted late so that a run that slows after half of its budget still ends on time."""

import json
import re
import time

import pytest

from ssl_ops.data import shard_urls
from ssl_ops.train import ShardSource, TrainConfig, lr_at, train
from ssl_ops.train.checkpoint import load, save_atomic
from test_train import SMALL


def test_a_budget_fixes_the_total_after_calibration_and_a_resume_keeps_it(cifar_shards, tmp_path):
    from ssl_ops.train.budget import CALIBRATION_STEPS

    urls = shard_urls([cifar_shards])
    cfg = TrainConfig.from_dict({**SMALL, "budget_minutes": 0.25, "warmup_steps": 12, "checkpoint_every": 5,
                                 "workers": 0})
    assert cfg.total_steps() is None
    res = train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path / "b")
    # (how close to the budget it ends is measured by bench/time_to_accuracy.py, not here: the machine is shared)
    assert res.total_steps == res.steps > CALIBRATION_STEPS and res.budget_minutes == 0.25
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(res.steps))
    # the cosine ends at the fitted total: the last step's lr is the schedule's end, not a truncated middle
    assert rows[-1]["lr"] == pytest.approx(lr_at(res.steps - 1, res.steps, cfg.lr, cfg.warmup_steps))
    ckpt = load(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["total"] == res.total_steps
    # a run killed after the total was fixed resumes with that total, not a new measurement
    blob = load(tmp_path / "b" / "checkpoint.pt")
    step = (CALIBRATION_STEPS // 5 + 1) * 5  # a checkpoint after the calibration
    blob["step"] = step
    save_atomic(blob, tmp_path / "b" / "checkpoint.pt")
    again = train(cfg, ShardSource(urls, 32, 32, workers=0), tmp_path / "b")
    assert again.resumed_from == step and again.total_steps == res.total_steps


def test_a_budget_refits_its_total_when_the_first_steps_were_slow(cifar_shards, tmp_path, capsys):
    """The first timed steps wait 0.6 s each for data (as when another process holds the CPU at the start); the
    first total is fitted on them, the next on the steps after (REFIT_STEPS, or a quarter of those the first
    total leaves), which run at full speed: the run
    plans more steps than the first measurement allowed, and the cosine ends at that final total."""
    from ssl_ops.train.budget import CALIBRATION_STEPS

    inner = ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0)

    def slow_start(start_step, n_steps):
        for i, batch in enumerate(inner(start_step, n_steps)):
            if start_step + i <= CALIBRATION_STEPS:
                time.sleep(0.6)
            yield batch

    cfg = TrainConfig.from_dict({**SMALL, "budget_minutes": 0.5, "checkpoint_every": 0, "workers": 0})
    res = train(cfg, slow_start, tmp_path / "r")
    out = capsys.readouterr().out
    first = int(re.search(r"measured over \d+ steps -> (\d+) steps", out).group(1))
    refits = [int(n) for n in re.findall(r"over the last \d+ steps -> (\d+) steps", out)]
    assert refits and refits[0] > 1.5 * first and res.total_steps == res.steps > 1.5 * first, out
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] == pytest.approx(lr_at(res.steps - 1, res.steps, cfg.lr, cfg.warmup_steps))


def test_a_budget_still_ends_on_time_when_the_steps_slow_down_after_half_of_it(cifar_shards, tmp_path, capsys,
                                                                               monkeypatch):
    """After 60% of the budget every batch waits 0.15 s more (another process takes the CPU late in the run).
    The loop refits its total until the last 2 * REFIT_STEPS steps, so the run ends near its budget; a total
    fixed at halfway would go on at the planned count of fast steps and overrun by more than half. (A run of
    ~250 steps: fits every 10 steps here, as one of thousands every 40.)"""
    import ssl_ops.train.loop as loop

    monkeypatch.setattr(loop, "REFIT_STEPS", 10)
    inner = ShardSource(shard_urls([cifar_shards]), 32, 32, workers=0)
    budget_s = 18.0
    t0 = time.perf_counter()

    def slow_end(start_step, n_steps):
        for batch in inner(start_step, n_steps):
            if time.perf_counter() - t0 > 0.6 * budget_s:
                time.sleep(0.15)
            yield batch

    cfg = TrainConfig.from_dict({**SMALL, "budget_minutes": budget_s / 60, "checkpoint_every": 0, "workers": 0})
    res = train(cfg, slow_end, tmp_path / "r")
    wall = time.perf_counter() - t0
    totals = [int(n) for n in re.findall(r"-> (\d+) steps", capsys.readouterr().out)]
    assert res.total_steps == res.steps < max(totals), totals  # a late fit cut the total
    assert wall < 1.2 * budget_s, (wall, totals)


def test_a_refit_that_moves_the_probe_interval_does_not_probe_twice_a_few_steps_apart(tmp_path):
    """Probes come every ceil(total / 10) steps; a refit from 3,610 to 3,620 steps moves that from 361 to 362, and
    8 x 362 = 2,896 is 8 steps after the probe at 8 x 361 = 2,888. That one is skipped; the next and the last are
    not."""
    from ssl_ops.train.loop import _Probes

    probes = _Probes(lambda *a: 0.5, TrainConfig(probe_every=None), tmp_path, None, "cpu", None)
    probes.rows = [{"step": k * 361, "knn20": 0.5, "seconds": 1.0} for k in range(9)]  # 0, 361, ..., 2,888
    assert probes.due(2888 + 361, 3610)
    assert not probes.due(2896, 3620)
    assert probes.due(9 * 362, 3620) and probes.due(3620, 3620)
    assert not probes.due(3000, 3620)  # not a multiple
