"""The scale benchmark (bench/scale_partitions.py) at very small N, so that it cannot rot: every measure runs
for real (sensor ticks, the plan of `sslpipe run`, a UI backfill through GraphQL and the backfill daemon) and
its own checks hold (N requests when N are new, none when nothing is; N ingest_batch runs planned; N queued
runs made by the backfill)."""

from __future__ import annotations

import json

from bench.scale_partitions import MEASURES, main


def test_the_scale_bench_runs_at_small_n_and_prints_its_figures(tmp_path, capsys):
    result = main(["--sizes", "5,10", "--repeat", "1", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert [r["n"] for r in result["rows"]] == [5, 10]
    for key, label in MEASURES.items():
        assert label in out and key in result["verdicts"]
        assert all(r[key] > 0 for r in result["rows"])
    assert "per-partition ratio N=10/N=5" in out
    assert [r["plan_runs"] for r in result["rows"]] == [5 + 2, 10 + 2]  # ingest_eval, N x ingest_batch, train_encoder
    assert [r["backfill_detail"]["runs"] for r in result["rows"]] == [5, 10]
    assert result["rows"][0]["backfill_detail"]["run_assets"] == ["bias_report", "image_shards", "raw_images",
                                                                   "validated_images"]
    assert json.loads((tmp_path / "results.json").read_text())["sizes"] == [5, 10]
    assert not (tmp_path / "n5").exists()  # the homes are removed
