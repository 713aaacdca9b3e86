"""The whole data graph through Dagster on a real instance in a temporary home, as `sslpipe run` runs it."""

import json
import os
import shutil

import dagster as dg
import pytest

from imagefiles import ZOO_EXPECTED, jpeg_bytes, write
from assets.records import read_record
from pipelines.cli import main
from pipelines.runner import run_pipeline
from pipelines.settings import Settings, prepare_instance
from ssl_ops.manifest import read_manifest
from ssl_ops.shards import load_index


@pytest.fixture
def home(tmp_path, zoo):
    root = tmp_path / "home"
    shutil.copytree(zoo, root / "landing" / "b1")
    write(root / "landing" / "b2" / "again.jpg", (zoo / "good.jpg").read_bytes())  # duplicate of b1
    for i in range(5):
        write(root / "landing" / "b2" / f"new {i}.jpg", jpeg_bytes(200 + i))
    (root / "landing" / "empty-batch").mkdir(parents=True)
    for c in ("cat", "dog"):
        for i in range(6):
            write(root / "eval" / c / f"{i}.jpg", jpeg_bytes(500 + 10 * (c == "dog") + i, size=(36, 36)))
    return root


def latest(instance, asset, partition=None):
    ev = instance.get_latest_materialization_event(dg.AssetKey(asset)) if partition is None else next(
        e for e in sorted(instance.fetch_materializations(dg.AssetKey(asset), limit=100).records,
                          key=lambda r: -r.storage_id) if e.partition_key == partition)
    return {k: v.value for k, v in ev.asset_materialization.metadata.items()}


def test_whole_graph_runs_accounts_for_every_file_and_is_idempotent(home, capsys):
    settings = Settings.from_env(home=home, workers=1)
    ours = ("SSLPIPE_", "DAGSTER_", "MLFLOW_")
    before = {k: v for k, v in os.environ.items() if k.startswith(ours)}
    outcomes = run_pipeline(settings)
    # settings travel as values: nothing was put into the process's environment (the home, the instance, MLflow)
    assert {k: v for k, v in os.environ.items() if k.startswith(ours)} == before
    assert [(o.job, o.partition, o.success) for o in outcomes] == [
        ("ingest_eval", None, True), ("ingest_batch", "b1", True), ("ingest_batch", "b2", True),
        ("train_encoder", None, True)]
    assert "skipping landing/empty-batch: empty folder" in capsys.readouterr().out
    assert not [c for o in outcomes for c in o.blocked]

    instance = prepare_instance(settings)
    assert list(instance.get_dynamic_partitions("batches")) == ["b1", "b2"]
    pool = instance.event_log_storage.get_concurrency_info("sslpipe_ingest")
    assert pool.limit == 1 and pool.claimed_slots == []  # ingestion is serialised across runs, and released
    assert len(instance.get_run_records()) == 4  # visible in `dagster dev`
    # each run carries the code location's origin, so the UI can re-execute it (tests/pipelines/test_daemon.py)
    assert {r.dagster_run.remote_job_origin.location_name for r in instance.get_run_records()} == {"sslpipe"}
    assert prepare_instance(settings).event_log_storage.get_concurrency_info("sslpipe_train").limit == 1
    m1 = latest(instance, "raw_images", "b1")
    assert (m1["files_seen"], m1["accepted"], m1["quarantined"], m1["accounted_for"]) == (12, 6, 6, True)
    assert m1["quarantine_reasons"] == {"decompression_bomb": 1, "duplicate": 1, "empty": 1, "not_an_image": 1,
                                        "too_small": 1, "truncated": 1}
    q2 = read_manifest(home / "manifests" / "b2" / "quarantine.parquet").to_pylist()
    assert [(q["path"], q["reason"], q["duplicate_of"]) for q in q2] == [("again.jpg", "duplicate", "b1/good.jpg")]

    accepted = {p for p, v in ZOO_EXPECTED.items() if v == "accepted"}
    idx = load_index(home / "shards" / "b1" / "index.json")
    assert idx.samples == len(accepted) and (home / "shards" / "b1" / idx.shards[0]["name"]).is_file()
    shards = latest(instance, "image_shards", "b1")
    assert shards["index_digest"] == idx.digest and shards["reused"] is False
    assert (home / "reports" / "b1" / "data_docs" / "index.html").is_file()
    assert json.loads((home / "reports" / "b1" / "validation.json").read_text())["success"] is True
    assert "near_duplicates" in (home / "reports" / "b2" / "bias.md").read_text()
    ev = latest(instance, "eval_images")
    assert (ev["accepted"], ev["classes"]) == (12, 2)
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    # the decision records which shards it covered: each batch's shard index digest, as the encoder trained on them
    digests = {b: load_index(home / "shards" / b / "index.json").digest for b in ("b1", "b2")}
    assert leak["batches_checked"] == digests and leak["exact"] == leak["near"] == [] and leak["passed"] is True
    assert leak["eval_digest"] == ev["eval_digest"] == read_record(home, "eval_images").digest
    assert latest(instance, "eval_leakage")["batches_checked"] == 2
    assert read_record(home, "eval_leakage").batches == digests == read_record(home, "ssl_encoder").shard_index_digests

    def shard_version():
        rec = instance.get_latest_data_version_record(dg.AssetKey("image_shards"), partition_key="b1")
        return rec.asset_materialization.tags["dagster/data_version"]

    version = shard_version()
    assert version == idx.digest  # the index digest is the asset's data version
    again = run_pipeline(settings, select="raw_images,image_shards", only_batches=["b1"])
    assert [o.success for o in again] == [True]
    assert latest(instance, "image_shards", "b1")["reused"] is True
    assert latest(instance, "image_shards", "b1")["index_digest"] == idx.digest
    assert shard_version() == version  # unchanged data, unchanged data version

    write(home / "landing" / "b1" / "late arrival.jpg", jpeg_bytes(777))  # new data in the batch, and a subset
    stale = run_pipeline(settings, select="raw_images,image_shards", only_batches=["b1"])  # that skips validation
    assert "validated_images last ran on an older manifest" in stale[0].errors[0]
    assert load_index(home / "shards" / "b1" / "index.json").digest == idx.digest  # nothing unvalidated was sharded
    run_pipeline(settings, only_batches=["b1"], select="raw_images,validated_images,bias_report,image_shards")
    grown = load_index(home / "shards" / "b1" / "index.json")
    assert grown.samples == idx.samples + 1 and grown.digest != idx.digest  # shards were built from the new manifest
    assert latest(instance, "image_shards", "b1")["reused"] is False


def custom_contract(tmp_path, edit):
    from data_contracts.contract import CONTRACTS_DIR

    p = tmp_path / "contract.yaml"
    p.write_text(edit((CONTRACTS_DIR / "unlabeled_images.yaml").read_text()))
    cfg = tmp_path / "config.yaml"
    cfg.write_text("contract: contract.yaml\nworkers: 1\nshards:\n  max_samples: 3\n")
    return cfg


def test_a_failed_blocking_check_stops_sharding_and_the_command_names_it(home, tmp_path, capsys):
    cfg = custom_contract(tmp_path, lambda t: t.replace("required: []", "required: [site]"))
    code = main(["run", "--home", str(home), "--config", str(cfg), "--select", "raw_images,validated_images,image_shards,bias_report"])
    err = capsys.readouterr().err
    assert code == 1
    assert "BLOCKED: validated_images:required_attributes (b1)" in err and "attr_site" in err
    assert not (home / "shards" / "b1").exists() and (home / "manifests" / "b1" / "accepted.parquet").is_file()


def test_a_warning_check_does_not_block(home, tmp_path, capsys):
    cfg = custom_contract(tmp_path, lambda t: t.replace("near_duplicate_max_share: 0.05", "near_duplicate_max_share: 0.0"))
    from PIL import Image

    Image.open(home / "landing" / "b1" / "good.jpg").save(home / "landing" / "b1" / "good again.png")  # same picture
    assert main(["run", "--home", str(home), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "warning check bias_report:near_duplicates failed" in out
    assert json.loads((home / "reports" / "b1" / "bias.json").read_text())["near_duplicates"]["clusters"] == [
        ["good again.png", "good.jpg"]]
    idx = load_index(home / "shards" / "b1" / "index.json")
    assert [s["samples"] for s in idx.shards] == [3, 3, 1]  # the config's shard size was used


def test_leakage_blocks_in_both_directions(home, capsys):
    write(home / "landing" / "b3" / "stolen.jpg", (home / "eval" / "cat" / "0.jpg").read_bytes())
    write(home / "landing" / "b3" / "fine.jpg", jpeg_bytes(4242))
    assert main(["run", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    # the eval set runs first, so a copy of one of its images is left out of the batch's shards (and listed)
    idx = load_index(home / "shards" / "b3" / "index.json")
    assert idx.samples == 1 and [(e["path"], e["matches"], e["reason"]) for e in idx.excluded] == [
        ("stolen.jpg", "cat/0.jpg", "eval_copy_exact")]
    assert "1 image(s) are copies of eval images and are left out of the shards" in out
    trained = read_record(home, "ssl_encoder")
    assert read_record(home, "eval_leakage").passed and set(trained.batches) == {"b1", "b2", "b3"}
    # an eval image added after its twin was sharded is caught by the leakage decision (eval_leakage), whose
    # blocking check stops training in the same run
    write(home / "eval" / "dog" / "copy.jpg", (home / "landing" / "b2" / "new 0.jpg").read_bytes())
    assert main(["run", "--home", str(home), "--select", "eval_images"]) == 0  # the eval set alone is fine
    assert read_record(home, "eval_leakage").passed  # eval_images alone does not decide leakage
    capsys.readouterr()
    assert main(["run", "--home", str(home), "--select", "eval_leakage,ssl_encoder"]) == 1
    err = capsys.readouterr().err
    assert "BLOCKED: eval_leakage:leakage (global)" in err and "dog/copy.jpg = b2/new 0.jpg" in err
    decision = read_record(home, "eval_leakage")
    assert not decision.passed and decision.exact == 1
    assert read_record(home, "ssl_encoder") == trained  # not trained on shards holding an eval image
    leak = json.loads((home / "reports" / "eval" / "leakage.json").read_text())
    assert leak["passed"] is False and len(leak["exact"]) == 1
    # a whole `sslpipe run` re-shards b2 against the new eval set (image_shards takes it as input), leaving the
    # copy out, so the decision passes again and training goes ahead
    assert main(["run", "--home", str(home)]) == 0
    b2 = load_index(home / "shards" / "b2" / "index.json")
    assert [(e["path"], e["matches"], e["reason"]) for e in b2.excluded] == [
        ("new 0.jpg", "dog/copy.jpg", "eval_copy_exact")]
    decision = read_record(home, "eval_leakage")
    assert decision.passed and decision.batches["b2"] == b2.digest
    retrained = read_record(home, "ssl_encoder")
    assert retrained.run_key != trained.run_key and retrained.shard_index_digests["b2"] == b2.digest


def test_a_blocked_batch_is_not_sharded_by_a_later_partial_run(home, tmp_path, capsys):
    cfg = custom_contract(tmp_path, lambda t: t.replace("required: []", "required: [site]"))
    assert main(["run", "--home", str(home), "--config", str(cfg), "--batches", "b2"]) == 1
    capsys.readouterr()
    assert main(["run", "--home", str(home), "--config", str(cfg), "--batches", "b2", "--select", "image_shards"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: ingest_batch (b2): image_shards: batch 'b2' failed blocking check(s), so it is not sharded: " \
           "validated_images:required_attributes" in err
    assert not (home / "shards" / "b2").exists()


def test_images_of_a_blocked_batch_may_land_again(home, tmp_path):
    cfg = custom_contract(tmp_path, lambda t: t.replace("required: []", "required: [site]"))  # b1 has no site
    assert main(["run", "--home", str(home), "--config", str(cfg), "--batches", "b1"]) == 1
    main(["run", "--home", str(home), "--batches", "b2", "--select", "raw_images"])
    q = read_manifest(home / "manifests" / "b2" / "quarantine.parquet")
    assert q.num_rows == 0  # again.jpg repeats b1's good.jpg, but b1 was rejected: not a duplicate


@pytest.mark.parametrize("config,needle", [
    ("workers: two\n", "workers must be an integer"),
    ("shards: 5\n", "shards must be a mapping"),
    ("shards: {max_samples: abc}\n", "shards.max_samples must be an integer >= 1"),
    ("shards: {max_samples: 0}\n", "shards.max_samples must be an integer >= 1"),
    ("contract: 5\n", "contract must be a shipped contract name"),
    ("colour: blue\n", "unknown key(s) ['colour']"),
])
def test_bad_config_files_exit_2_with_a_clear_message(home, tmp_path, capsys, config, needle):
    (tmp_path / "bad.yaml").write_text(config)
    assert main(["run", "--home", str(home), "--config", str(tmp_path / "bad.yaml")]) == 2
    assert needle in capsys.readouterr().err


def test_a_step_error_shows_the_library_message(home, capsys):
    (home / "landing" / "b1" / "metadata.csv").write_text("file;domain\ngood.jpg;photo\n")
    assert main(["run", "--home", str(home), "--batches", "b1"]) == 1
    err = capsys.readouterr().err
    assert "MetadataError" in err and "no 'path' column" in err and "Add a 'path' column" in err


@pytest.mark.parametrize("args,needle", [
    (["run", "--landing", "/nonexistent/landing"], "landing folder /nonexistent/landing does not exist"),
    (["run", "--select", "raw_images,nope"], "unknown asset(s) ['nope']"),
    (["run", "--config", "/nonexistent.yaml"], "config file /nonexistent.yaml does not exist"),
    (["run", "--batches", "zzz"], "batch(es) ['zzz'] not found"),
])
def test_bad_arguments_exit_2_with_a_clear_message(home, capsys, args, needle):
    assert main(args + ["--home", str(home)]) == 2
    assert needle in capsys.readouterr().err


def test_sharding_needs_the_eval_set_materialized_first(home, capsys):
    """image_shards takes the eval set's record as input (to leave its copies out): no eval set, no shards."""
    assert main(["run", "--home", str(home), "--batches", "b2", "--select",
                 "raw_images,validated_images,bias_report,image_shards"]) == 1
    err = capsys.readouterr().err
    assert "eval_images has not been materialized in this home" in err and "materialize it first" in err
    assert not (home / "shards" / "b2").exists() and (home / "manifests" / "b2" / "accepted.parquet").is_file()
    assert main(["run", "--home", str(home), "--batches", "b2", "--select", "eval_images,image_shards"]) == 0
    assert load_index(home / "shards" / "b2" / "index.json").samples == 6  # b1 is not ingested here: no duplicate


def test_missing_eval_folder_fails_the_eval_run_with_a_clear_message(home, capsys):
    shutil.rmtree(home / "eval")
    assert main(["run", "--home", str(home), "--select", "eval_images"]) == 1
    assert "eval folder" in capsys.readouterr().err


# `sslpipe demo` itself (the shipped training default, ending with a champion) is round 2 of
# tests/assets/test_registered_model.py.
