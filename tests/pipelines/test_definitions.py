"""The code location loads; jobs, checks and the sensor behave as users rely on."""

import os
import time

import dagster as dg
import pytest

from assets import PipelineHome, batches
from imagefiles import jpeg_bytes, write
from data_contracts import load_contract
from pipelines.definitions import BATCH_JOB, EVAL_JOB, TRAIN_JOB, build_definitions
from pipelines.sensors import build_landing_sensor, landing_batches
from pipelines.settings import Settings, SettingsError


def test_definitions_load_with_the_graph_and_contract_checks(tmp_path):
    defs = build_definitions(Settings.from_env(home=tmp_path))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_images", "validated_images", "bias_report", "image_shards", "eval_images", "ssl_encoder",
                    "probe_report", "registered_model"}
    # the encoder trains on every partition of image_shards (the window is chosen in its config)
    assert graph.get(dg.AssetKey("ssl_encoder")).parent_keys == {dg.AssetKey("image_shards")}
    assert graph.get(dg.AssetKey("probe_report")).parent_keys == {dg.AssetKey("ssl_encoder"), dg.AssetKey("eval_images")}
    assert dg.AssetKey("probe_report") in graph.get(dg.AssetKey("registered_model")).parent_keys
    assert {k.to_user_string() for k in defs.resolve_job_def(TRAIN_JOB).asset_layer.executable_asset_keys} >= {
        "ssl_encoder", "probe_report", "registered_model"}
    assert defs.resolve_job_def(TRAIN_JOB).partitions_def is None
    # every per-batch asset reads raw_images' manifest: a direct edge keeps the order in any --select subset
    assert graph.get(dg.AssetKey("image_shards")).parent_keys == {
        dg.AssetKey("raw_images"), dg.AssetKey("validated_images"), dg.AssetKey("bias_report")}
    assert dg.AssetKey("raw_images") in graph.get(dg.AssetKey("bias_report")).parent_keys
    contract = load_contract("unlabeled_images")
    specs = {s.key.name: s for s in graph.get(dg.AssetKey("validated_images")).check_keys and
             defs.resolve_assets_def("validated_images").check_specs}
    assert set(specs) == {"schema", "row_count", "unique_ids", "image_constraints", "required_attributes", "group_values"}
    assert all(s.blocking == contract.blocking(n) for n, s in specs.items())
    assert defs.resolve_job_def(BATCH_JOB).partitions_def == batches
    assert defs.resolve_job_def(EVAL_JOB)


def test_workspace_module_loads_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLPIPE_HOME", str(tmp_path))
    import importlib

    import pipelines.definitions as mod

    importlib.reload(mod)
    assert mod.defs.resources["home"].root == str(tmp_path.resolve())


def test_sensor_registers_settled_batches_only(tmp_path):
    landing = tmp_path / "landing"
    write(landing / "b1" / "a.jpg", jpeg_bytes(1))
    write(landing / "b2" / "a.jpg", jpeg_bytes(2))
    (landing / "empty").mkdir()
    (landing / ".partial").mkdir()
    write(landing / ".partial" / "x.jpg", jpeg_bytes(3))
    write(landing / "eval" / "x.jpg", jpeg_bytes(4))
    old = time.time() - 3600
    for f in (landing / "b1" / "a.jpg",):
        os.utime(f, (old, old))
    found, skipped = landing_batches(landing)
    assert found == ["b1", "b2"] and set(skipped) == {"empty", ".partial", "eval"}

    instance = dg.DagsterInstance.ephemeral()
    job = dg.define_asset_job("ingest_batch", selection=["raw_images"], partitions_def=batches)
    sensor = build_landing_sensor(job, settle_seconds=60)
    home = PipelineHome(root=str(tmp_path), landing=str(landing))
    result = sensor(dg.build_sensor_context(instance=instance, resources={"home": home}))
    assert [r.partition_key for r in result.run_requests] == ["b1"]  # b2 is still landing
    assert result.dynamic_partitions_requests[0].partition_keys == ["b1"]
    instance.add_dynamic_partitions(batches.name, ["b1"])
    result = sensor(dg.build_sensor_context(instance=instance, resources={"home": home}))
    assert not result.run_requests and "no new settled batch" in str(result.skip_reason)


def test_a_config_file_in_the_environment_reaches_the_code_location(tmp_path, monkeypatch):
    """`dagster dev`, the sensor and UI backfills load the definitions module: SSLPIPE_CONFIG must reach it."""
    (tmp_path / "cfg.yaml").write_text("shards: {max_samples: 100}\nworkers: 1\n")
    monkeypatch.setenv("SSLPIPE_HOME", str(tmp_path))
    monkeypatch.setenv("SSLPIPE_CONFIG", str(tmp_path / "cfg.yaml"))
    import importlib

    import pipelines.definitions as mod

    importlib.reload(mod)
    job = mod.defs.resolve_job_def(BATCH_JOB)
    shard_cfg = job.run_config_schema.config_type.fields["ops"].config_type.fields["image_shards"]
    defaults = shard_cfg.config_type.fields["config"].default_value
    assert defaults["max_samples"] == 100 and defaults["seed"] == 0
    assert mod.defs.resources["home"].workers == 1
    monkeypatch.setenv("SSLPIPE_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="config file .*missing.yaml does not exist"):
        importlib.reload(mod)
    monkeypatch.delenv("SSLPIPE_CONFIG")
    importlib.reload(mod)  # leave the module as the other tests expect it


@pytest.mark.parametrize("section, why", [
    ("probe: {test_fraction: 1.5}", "probe: probe test_fraction must be in"),
    ("probe: {seeds: 3}", "probe: unknown key.*seeds"),
    ("probe: {draws: two}", "probe.draws must be a int"),
    ("registry: {primary_metric: f1}", "registry: gate primary_metric 'f1'"),
    ("registry: {tolerance: -1}", "registry: gate tolerance must be a number from 0 to 1"),
    ("registry: {min_embedding_std: .nan}", "registry: gate min_embedding_std must be a number from 0 to 1"),
    ("probe: {seed: -1}", "probe: probe seed must be >= 0"),
    ("train: {method_options: {temperature: -1}}", r"train.method_options.temperature must be > 0, got -1"),
    ("train: {method: byol, method_options: {momentum: 2}}", r"train.method_options.momentum must be >= 0 and <= 1"),
    ("train: {method_options: {crop_scale: [0.9, 0.1]}}", r"train.method_options.crop_scale must be \[low, high\]"),
    ("train: {lr: .inf}", r"train.lr: inf is not a valid float"),
    ("train: {seed: -1}", "train.seed must not be negative"),
    ("train: {last_batches: -2}", "train.last_batches must be an integer >= 0"),
    ("shards: {max_samples: 0}", "shards.max_samples must be an integer >= 1"),
    ("registry: {model_name: ''}", "registry.model_name must be a non-empty name"),
    ("registry: {model_name: 'a/b<script>'}", "registry.model_name 'a/b<script>' is not a usable MLflow model name"),
    ("registry: [a]", "registry must be a mapping"),
])
def test_numeric_settings_are_checked_when_read_with_the_key_named(tmp_path, section, why):
    p = tmp_path / "c.yaml"
    p.write_text(section + "\n")
    with pytest.raises(SettingsError, match=why):
        Settings.from_env(home=tmp_path).with_config_file(p)


def test_registry_section_names_the_model_and_sets_the_gate_defaults(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("registry: {model_name: my-encoder, tolerance: 0.02, primary_metric: knn20}\nprobe: {draws: 5}\n")
    s = Settings.from_env(home=tmp_path).with_config_file(p)
    defs = build_definitions(s)
    assert defs.resources["mlflow"].model_name == "my-encoder"
    cfg = defs.resolve_assets_def("registered_model").op.config_schema.as_field().config_type.fields
    assert cfg["tolerance"].default_value == 0.02 and cfg["primary_metric"].default_value == "knn20"
    assert defs.resolve_assets_def("probe_report").op.config_schema.as_field().config_type.fields[
        "draws"].default_value == 5
