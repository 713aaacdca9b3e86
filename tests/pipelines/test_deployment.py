"""The deployment section: environments chosen in one place, values not process globals, no secrets in files."""

import os

import pytest
import yaml

from pipelines.deployment import DeploymentError, parse_deployment
from pipelines.settings import Settings, SettingsError, resources_for

PROD = {"env": "production",
        "dagster": {"postgres": {"host": "127.0.0.1", "port": 5432, "db": "dagster", "user": "u",
                                 "password_env": "T_PG_PW"}},
        "mlflow": {"tracking_uri": {"env": "T_MLFLOW"}},
        "storage": {"url": "s3://bucket/prefix", "endpoint_url": "http://127.0.0.1:9"}}
ENV = {"T_PG_PW": "s3cret-value", "T_MLFLOW": "http://127.0.0.1:5999"}


def test_production_resolves_env_references_and_builds_its_resources(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "prod.yaml"
    cfg.write_text(yaml.safe_dump({"deployment": PROD}))
    s = Settings.from_env(home=tmp_path / "h").with_config_file(cfg)
    assert s.env == "production" and s.deployment.mlflow_uri == "http://127.0.0.1:5999"
    r = resources_for(s)
    assert r["mlflow"].tracking_uri == "http://127.0.0.1:5999" and r["mlflow"].artifact_root is None
    assert r["home"].remote == "s3://bucket/prefix" and r["home"].storage_options == {"endpoint_url": "http://127.0.0.1:9"}
    assert r["home"].shard_index_uri("b1") == "s3://bucket/prefix/shards/b1/index.json"
    assert "s3cret-value" not in repr(s) and "s3cret-value" not in repr(r)  # the password is never a value here
    assert "production (Dagster on PostgreSQL u@127.0.0.1:5432/dagster" in s.deployment.describe()
    # the environment another process needs (dagster dev): a value; this process's environment is untouched
    env = s.environment()
    assert env["SSLPIPE_CONFIG"] == str(cfg.resolve()) and "SSLPIPE_CONFIG" not in os.environ


def test_local_is_the_default_and_needs_nothing(tmp_path):
    s = Settings.from_env(home=tmp_path / "h")
    assert s.env == "local"
    r = resources_for(s)
    assert r["mlflow"].tracking_uri.startswith("sqlite:///") and r["home"].remote is None
    assert r["home"].shard_index_uri("b1") == str(tmp_path / "h" / "shards" / "b1" / "index.json")


def test_sslpipe_env_production_without_a_deployment_section_says_what_to_write(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLPIPE_ENV", "production")
    s = Settings.from_env(home=tmp_path / "h")  # a --config given next may still supply it
    with pytest.raises(SettingsError, match=r"env production needs .*dagster.*mlflow.*storage.*e\.g\.\n"
                                            r"deployment:\n  env: production"):
        resources_for(s)
    monkeypatch.setenv("SSLPIPE_ENV", "staging")
    with pytest.raises(SettingsError, match=r"environment 'staging' is not known .*\['local', 'production'\]"):
        Settings.from_env(home=tmp_path / "h")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["dagster"]["postgres"].update(password="x"), r"dagster.postgres.password: secrets do not go in the "
                                                              r"config file .*password_env"),
    (lambda d: d["storage"].update(secret_access_key="x"), r"storage.secret_access_key: secrets .*AWS_SECRET_ACCESS_KEY"),
    (lambda d: d["mlflow"].update(token="x"), r"mlflow.token: secrets .*MLFLOW_TRACKING_TOKEN"),
    (lambda d: d["dagster"]["postgres"].update(password_env="NOT_SET_ANYWHERE"),
     r"environment variable NOT_SET_ANYWHERE is not set; export it with the PostgreSQL password of user 'u'"),
    (lambda d: d["dagster"]["postgres"].update(password_env="has space"), r"must be the NAME of an environment var"),
    (lambda d: d["dagster"]["postgres"].pop("port"), r"postgres: missing \['port'\]"),
    (lambda d: d["dagster"]["postgres"].update(port="abc"), r"port must be a port number"),
    (lambda d: d.update(mlflow={"tracking_uri": "sqlite:///x.db"}), r"must be the URL of an MLflow tracking server"),
    (lambda d: d.update(mlflow={"tracking_uri": {"env": "T_UNSET_VAR"}}), r"'T_UNSET_VAR' is not set"),
    (lambda d: d["storage"].update(url="/local/folder"), r"storage.url must be an object-storage prefix"),
    (lambda d: d["storage"].update(bucket="b"), r"storage: unknown key\(s\) \['bucket'\]"),
    (lambda d: d.pop("storage"), r"env production needs .*storage"),
    (lambda d: d.update(training={"launcher": "slurm"}), r"launcher must be one of \['in_process', 'torchrun'\]"),
    (lambda d: d.update(training={"nproc_per_node": 0}), r"nproc_per_node must be a whole number >= 1"),
    (lambda d: d.update(env="local"), r"\['dagster', 'mlflow', 'storage'\] apply to env: production only"),
    (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
])
def test_bad_deployments_are_refused_with_what_to_fix(change, message):
    import copy

    d = copy.deepcopy(PROD)
    change(d)
    with pytest.raises(DeploymentError, match=message):
        parse_deployment(d, None, environ=ENV)


def test_sslpipe_env_wins_over_the_files_env(monkeypatch):
    d = parse_deployment({**PROD, "env": "local", "dagster": None, "mlflow": None, "storage": None}, None, environ=ENV)
    assert d.env == "local"
    assert parse_deployment(PROD, "production", environ=ENV).production
    with pytest.raises(DeploymentError, match="apply to env: production only"):
        parse_deployment(PROD, "local", environ=ENV)


def test_the_training_pool_has_one_slot_per_device_and_follows_the_config(tmp_path):
    from pipelines.settings import TRAIN_POOL, prepare_instance

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"deployment": {"training": {"launcher": "torchrun", "nproc_per_node": 2,
                                                                "gpus": 3}}}))
    s = Settings.from_env(home=tmp_path / "h").with_config_file(cfg)
    assert s.env == "local" and type(resources_for(s)["trainer"]).__name__ == "TorchrunTraining"
    assert resources_for(s)["trainer"].nproc_per_node == 2
    info = prepare_instance(s).event_log_storage.get_concurrency_info(TRAIN_POOL)
    assert info.limit == 3  # three trainings at once, one per device
    cfg.write_text("deployment: {}\n")  # back to the default: one at a time
    s = Settings.from_env(home=tmp_path / "h").with_config_file(cfg)
    assert prepare_instance(s).event_log_storage.get_concurrency_info(TRAIN_POOL).limit == 1
    assert type(resources_for(s)["trainer"]).__name__ == "InProcessTraining"
