"""The code location loads; jobs, checks and the sensor behave as users rely on."""

import os
import time

import dagster as dg
import pytest

from assets import PipelineHome, batches
from imagefiles import jpeg_bytes, write
from data_contracts import load_contract
from pipelines.definitions import BATCH_JOB, EVAL_JOB, TRAIN_JOB, build_definitions
from pipelines.settings import Settings, SettingsError


def test_definitions_load_with_the_graph_and_contract_checks(tmp_path):
    defs = build_definitions(Settings.from_env(home=tmp_path))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_images", "validated_images", "bias_report", "image_shards", "eval_images", "eval_leakage",
                    "ssl_encoder", "probe_report", "registered_model"}
    parents = lambda a: {k.to_user_string() for k in graph.get(dg.AssetKey(a)).parent_keys}  # noqa: E731
    # the order the runner once knew alone, declared: the eval set before the shards (its copies are left out),
    # the leakage decision after every shard, training after the decision (the window is chosen in its config)
    assert parents("image_shards") == {"raw_images", "validated_images", "bias_report", "eval_images"}
    assert parents("eval_leakage") == {"image_shards", "eval_images"}
    assert parents("ssl_encoder") == {"image_shards", "eval_leakage", "eval_images"}  # the probe while training
    assert parents("probe_report") == {"ssl_encoder", "eval_images"}
    assert parents("registered_model") == {"ssl_encoder", "probe_report", "eval_images", "eval_leakage"}
    leak = defs.resolve_assets_def("eval_leakage").check_specs
    assert [(s.name, s.blocking) for s in leak] == [("leakage", load_contract("eval_images").blocking("leakage"))]
    assert defs.resolve_assets_def("ssl_encoder").op.pool == "sslpipe_train"
    assert {k.to_user_string() for k in defs.resolve_job_def(TRAIN_JOB).asset_layer.executable_asset_keys} >= {
        "eval_leakage", "ssl_encoder", "probe_report", "registered_model"}
    assert defs.resolve_job_def(TRAIN_JOB).partitions_def is None
    # retries where they can help, none where they cannot
    policy = {a: defs.resolve_assets_def(a).op.retry_policy for a in keys}
    assert all(policy[a] is None for a in ("validated_images", "bias_report", "eval_leakage"))
    assert all(policy[a] is not None for a in ("raw_images", "image_shards", "eval_images", "ssl_encoder",
                                                "probe_report", "registered_model"))
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
