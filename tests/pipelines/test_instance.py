"""pipelines.instance without services: the dagster.yaml it writes, and the SQLite instance (the PostgreSQL
instance on a real server: tests/production/test_instance_postgres.py)."""

import logging
import os

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from pipelines.instance import SQLITE_YAML, InstanceConfigError, instance_yaml, prepare_instance

PG = {"host": "db.internal", "port": 6543, "db": "dagster", "user": "sslpipe", "password_env": "SSLPIPE_PG_PASSWORD"}


def test_sqlite_yaml_is_todays():
    assert instance_yaml(None) == SQLITE_YAML
    assert yaml.safe_load(SQLITE_YAML) == {"telemetry": {"enabled": False}, "concurrency": {"pools": {"default_limit": 1}}}
    assert SQLITE_YAML.startswith("# Dagster instance of this sslpipe home: SQLite storage in this folder.\n")
    assert "(pool sslpipe_train: one training at a time)" in SQLITE_YAML


def test_postgres_yaml_names_the_variable_and_passes_dagsters_schema(tmp_path):
    text = instance_yaml(PG)
    assert yaml.safe_load(text) == {
        "telemetry": {"enabled": False},
        "storage": {"postgres": {"postgres_db": {"username": "sslpipe", "password": {"env": "SSLPIPE_PG_PASSWORD"},
                                                 "hostname": "db.internal", "db_name": "dagster", "port": 6543,
                                                 "scheme": "postgresql+psycopg2"}}},
        "concurrency": {"pools": {"default_limit": 1}}}
    (tmp_path / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own schema check (no connection)
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "SSLPIPE_PG_PASSWORD"}


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in PG.items() if k != "password_env"}, r"missing \['password_env'\]"),
    ({**PG, "password": "hunter2"}, r"unknown \['password'\]"),  # a password itself is refused
    ({**PG, "port": "5432x"}, "port must be a TCP port number"),
    ({**PG, "password_env": "not a name"}, "password_env must be the name of an environment variable"),
])
def test_bad_postgres_settings(bad, message):
    with pytest.raises(InstanceConfigError, match=message):
        instance_yaml(bad)


def test_sqlite_instance_leaves_dagster_home_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    d = tmp_path / "home" / "dagster"
    instance = prepare_instance(d)
    assert os.environ["DAGSTER_HOME"] == str(tmp_path / "elsewhere")
    assert instance.root_directory == str(d)
    assert (d / "dagster.yaml").read_text() == SQLITE_YAML
    assert instance.get_runs() == [] and (d / "history" / "runs.db").exists()
    instance.dispose()


def test_a_differing_config_is_rewritten_and_said(tmp_path, caplog):
    d = tmp_path / "dagster"
    d.mkdir()
    hand = "# edited by hand\ntelemetry:\n  enabled: true\n"
    (d / "dagster.yaml").write_text(hand)
    with caplog.at_level(logging.WARNING, logger="pipelines.instance"):
        prepare_instance(d).dispose()
    assert "differed from the wanted config (SQLite storage): rewritten" in caplog.text
    assert (d / "dagster.yaml").read_text() == SQLITE_YAML
    assert (d / "dagster.yaml.previous").read_text() == hand
    assert not list(d.glob(".dagster.yaml.*.tmp"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipelines.instance"):
        prepare_instance(d).dispose()  # as wanted now: only read
    assert caplog.text == ""


def test_missing_password_variable_fails_before_touching_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("SSLPIPE_PG_PASSWORD", raising=False)
    with pytest.raises(InstanceConfigError, match="environment variable SSLPIPE_PG_PASSWORD, which is not set"):
        prepare_instance(tmp_path / "dagster", PG)
    assert not (tmp_path / "dagster").exists()
