"""Helpers of the production tests: a config file as a user writes it, a database per test, batches landed as
objects."""

import uuid
from pathlib import Path

import yaml

from ssl_ops.home import Home
from ssl_ops.storage import ObjectStore

TRAIN = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 16, "batch_size": 32,
         "warmup_steps": 1, "workers": 0, "checkpoint_every": 0, "health_every": 1}


def production_config(tmp: Path, services, prefix: str, db: str, steps: int, model: str = "ssl-encoder",
                      training: dict | None = None) -> Path:
    """A config file as a user writes it: hosts and URLs from the environment, the password by its variable's name."""
    cfg = tmp / f"prod-{steps}.yaml"
    cfg.write_text(yaml.safe_dump({
        "deployment": {
            "env": "production",
            "dagster": {"postgres": {"host": {"env": "SSLPIPE_PG_HOST"}, "port": {"env": "SSLPIPE_PG_PORT"},
                                     "db": db, "user": {"env": "SSLPIPE_PG_USER"},
                                     "password_env": "SSLPIPE_PG_PASSWORD"}},
            "mlflow": {"tracking_uri": {"env": "MLFLOW_TRACKING_URI"}},
            "storage": {"url": prefix, "endpoint_url": {"env": "SSLPIPE_S3_ENDPOINT"}},
            **({"training": training} if training else {})},
        "workers": 1,
        "registry": {"model_name": model, "approval": "human", "tolerance": 1.0, "min_embedding_std": 0},
        "train": {**TRAIN, "steps": steps}}))
    return cfg


def fresh_database(services) -> str:
    """A database of its own for this test's Dagster instance (the server is shared by the session)."""
    import psycopg2

    name = f"dagster_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(**services.pg_dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name


def land(store: ObjectStore, staging: Home, batches: list[str], ready: bool = True) -> None:
    """Upload the batches as objects: with their _READY object last (as a producer marks a batch it finished), or
    without one (still landing)."""
    for b in batches:
        marker = staging.landing / b / "_READY"
        marker.unlink(missing_ok=True)
        store.publish(staging.landing / b, f"landing/{b}")
        if ready:
            store.write_bytes(f"landing/{b}/_READY", b"")


