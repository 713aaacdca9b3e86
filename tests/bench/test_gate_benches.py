"""The gate's benches at a tiny size, so that they cannot rot: bench/seed_spread.py (the seed-to-seed spread the
gate's seed_margin must cover) and bench/probe_cost.py (probe_report's wall time against the training), each
training for real on the demo's digits and probing for real."""

from __future__ import annotations

import json

from bench import probe_cost, seed_spread

TINY = json.dumps({"width": 8, "batch_size": 32, "workers": 0, "warmup_steps": 0, "checkpoint_every": 0})


def test_seed_spread_trains_each_seed_and_prints_the_spread(tmp_path, capsys):
    result = seed_spread.main(["--seeds", "2", "--steps", "2", "--train", TINY, "--work", str(tmp_path / "w"),
                               "--json", str(tmp_path / "spread.json")])
    out = capsys.readouterr().out
    assert [r["seed"] for r in result["runs"]] == [0, 1] and result["train"]["steps"] == 2
    for k in ("linear", "knn20", "knn200"):
        s = result["metrics"][k]
        vals = [r[k] for r in result["runs"]]
        assert s["values"] == vals and s["range"] == max(vals) - min(vals) and 0 <= s["std"] <= s["range"]
        (pair,) = result["pairs"][k]
        assert pair["ci"][0] <= pair["delta"] <= pair["ci"][1]
        assert f"{k:<8} mean {100 * s['mean']:.1f}  max-min {100 * s['range']:.1f}" in out
    assert result["runs"][0]["final_loss"] != result["runs"][1]["final_loss"]  # two seeds, two trainings
    assert "seed_margin should be at least" in out and "599 eval images" in out
    assert json.loads((tmp_path / "spread.json").read_text())["largest_range"] == result["largest_range"]
    assert not (tmp_path / "w").exists()


def test_probe_cost_times_the_probes_against_the_training(tmp_path, capsys):
    result = probe_cost.main(["--data", "demo", "--steps", "2", "--train", TINY, "--work", str(tmp_path / "w")])
    out = capsys.readouterr().out
    (row,) = result["rows"]
    assert row["steps"] == 2 and row["train_s"] > 0 and row["probe_s"] > 0
    assert row["ratio"] == row["probe_s"] / row["train_s"] and row["projected_ratio"] < row["ratio"]
    assert row["default_steps"] == seed_spread.default_train("demo")["steps"]  # the demo trains its own recipe
    assert seed_spread.default_train("pacs", {}, [64, 64])["budget_minutes"] == 10  # user data: the budget
    for stage in ("model: linear probe", "raw pixels: kNN", "random init: linear probe", "champion: linear probe",
                  "probes done in", "demo: probe_report"):
        assert stage in out, stage
    assert "at default steps" in out and "(target <= 15%)" in out
