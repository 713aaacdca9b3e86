"""The Dagster instance of a home: its dagster.yaml, SQLite storage in the folder or PostgreSQL, and the instance.

    instance = prepare_instance(home / "dagster")                                  # local: SQLite in the folder
    instance = prepare_instance(home / "dagster", {"host": "127.0.0.1", "port": 5432, "db": "dagster",
                                                   "user": "sslpipe", "password_env": "SSLPIPE_PG_PASSWORD"})

With PostgreSQL (dagster-postgres), runs, the event log (asset events, dynamic partitions) and schedules live in
the database; dagster.yaml names the environment variable that holds the password, never the password itself.
The caller chooses the folder; nothing here sets DAGSTER_HOME.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dagster as dg
import yaml

log = logging.getLogger(__name__)

POSTGRES_KEYS = ("host", "port", "db", "user", "password_env")  # the `postgres` dict of instance_yaml

_CONCURRENCY = ("# Steps in a pool run one at a time across runs: raw_images and eval_images (pool "
                "sslpipe_ingest), ssl_encoder (pool sslpipe_train: one training at a time).\n"
                "concurrency:\n  pools:\n    default_limit: 1\n")
SQLITE_YAML = ("# Dagster instance of this sslpipe home: SQLite storage in this folder.\n"
               "telemetry:\n  enabled: false\n" + _CONCURRENCY)


class InstanceConfigError(ValueError):
    """The PostgreSQL settings cannot make an instance (a key or the password's environment variable missing)."""


def _check_postgres(postgres: dict) -> None:
    if not isinstance(postgres, dict):
        raise InstanceConfigError(f"postgres settings must be a mapping with keys {list(POSTGRES_KEYS)}, got {postgres!r}")
    missing = [k for k in POSTGRES_KEYS if k not in postgres]
    unknown = sorted(set(postgres) - set(POSTGRES_KEYS))
    if missing or unknown:
        raise InstanceConfigError(f"postgres settings: missing {missing}, unknown {unknown}; the keys are "
                                  f"{list(POSTGRES_KEYS)} (password_env: the NAME of the variable holding the password)")
    port = postgres["port"]
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        raise InstanceConfigError(f"postgres settings: port must be a TCP port number, got {port!r}")
    env = postgres["password_env"]
    if not isinstance(env, str) or not env.replace("_", "").isalnum() or env[0].isdigit():
        raise InstanceConfigError(f"postgres settings: password_env must be the name of an environment variable "
                                  f"(e.g. SSLPIPE_PG_PASSWORD), got {env!r}")


def instance_yaml(postgres: dict | None) -> str:
    """The dagster.yaml of a home: SQLite in its folder (postgres None), else dagster-postgres storage.

    postgres: {host, port, db, user, password_env}; the password is read by Dagster from the environment
    variable password_env whenever the instance is made.
    """
    if postgres is None:
        return SQLITE_YAML
    _check_postgres(postgres)
    storage = {"storage": {"postgres": {"postgres_db": {
        "username": str(postgres["user"]),
        "password": {"env": postgres["password_env"]},
        "hostname": str(postgres["host"]),
        "db_name": str(postgres["db"]),
        "port": int(postgres["port"]),
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project installs psycopg2
        "scheme": "postgresql+psycopg2",
    }}}}
    return ("# Dagster instance of this sslpipe home: runs, event log and schedules in PostgreSQL (dagster-postgres).\n"
            f"# The password is read from the environment variable {postgres['password_env']}, never written here.\n"
            "telemetry:\n  enabled: false\n"
            + yaml.safe_dump(storage, sort_keys=False, default_flow_style=False) + _CONCURRENCY)


def prepare_instance(dagster_home: Path, postgres: dict | None = None) -> dg.DagsterInstance:
    """The Dagster instance in dagster_home, its dagster.yaml written (or rewritten) first.

    Dagster creates its storages (SQLite databases in the folder, or the PostgreSQL tables) and their tables when
    an instance is first made; two processes doing that at once on a new home fail ("table ... already exists").
    So the config is written, and the instance made and its storages touched, under a lock beside them
    (dagster_home/.instance.lock); on a home already created this only reads. A dagster.yaml that differs from
    the wanted one (say, a home switched from SQLite to PostgreSQL) is replaced whole, the former one kept as
    dagster.yaml.previous, and a warning says so. DAGSTER_HOME is left alone: the caller sets it where processes
    it starts need it.
    """
    from ssl_ops.locks import file_lock

    want = instance_yaml(postgres)
    if postgres is not None:
        env = postgres["password_env"]
        if env not in os.environ:
            raise InstanceConfigError(f"the PostgreSQL password of the Dagster instance comes from the environment "
                                      f"variable {env}, which is not set (export {env}=...; `source .services/env` "
                                      f"after `bash scripts/services start`)")
        if not os.environ[env]:
            raise InstanceConfigError(f"the environment variable {env} (the PostgreSQL password of the Dagster "
                                      f"instance) is empty")
    d = Path(dagster_home)
    d.mkdir(parents=True, exist_ok=True)
    with file_lock(d / ".instance.lock", what=f"creating the Dagster instance in {d}"):
        cfg = d / "dagster.yaml"
        have = cfg.read_text() if cfg.exists() else None
        if have != want:  # written whole or not at all: a reader never sees half a config
            tmp = d / f".dagster.yaml.{os.getpid()}.tmp"
            tmp.write_text(want)
            if have is not None:
                (d / "dagster.yaml.previous").write_text(have)
                log.warning("%s differed from the wanted config (%s storage): rewritten; the former one is in %s",
                            cfg, "PostgreSQL" if postgres else "SQLite", d / "dagster.yaml.previous")
            os.replace(tmp, cfg)
        instance = dg.DagsterInstance.from_config(str(d))
        instance.get_runs(limit=1)  # the run, event log and schedule storages: created by now, read here
        instance.get_dynamic_partitions("batches")
    return instance
