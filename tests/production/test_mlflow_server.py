"""The MLflow tracking server of the production services: runs in PostgreSQL (database mlflow), artifacts in
the S3 bucket (moto), and the server stopped and started again on the same port and backend loses nothing."""

import time
import uuid

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services import MLFLOW_BUCKET


def log_run(client: MlflowClient, tmp_path, name: str) -> tuple[str, str]:
    exp = client.create_experiment(f"{name}-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp)
    rid = run.info.run_id
    client.log_param(rid, "method", "simclr")
    client.log_metric(rid, "knn_top1", 0.875, step=3)
    card = tmp_path / f"{name}-card.md"
    card.write_text(f"# model card of {name}\n")
    client.log_artifact(rid, str(card), artifact_path="card")
    client.set_terminated(rid)
    return rid, card.name


def bucket_keys(services) -> list[str]:
    pages = services.s3().get_paginator("list_objects_v2").paginate(Bucket=MLFLOW_BUCKET)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_run_in_postgres_artifact_in_bucket(services, tmp_path):
    client = MlflowClient(tracking_uri=services.mlflow_uri)
    rid, card = log_run(client, tmp_path, "stored")
    run = client.get_run(rid)
    assert run.data.metrics == {"knn_top1": 0.875} and run.data.params == {"method": "simclr"}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client needs no S3 credentials

    # the backend store is the services' PostgreSQL, read without MLflow
    conn = services.connect("mlflow")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (rid,))
            assert cur.fetchall() == [("FINISHED",)]
            cur.execute("SELECT key, value, step FROM metrics WHERE run_uuid = %s", (rid,))
            assert cur.fetchall() == [("knn_top1", 0.875, 3)]
    finally:
        conn.close()

    # the artifact is an object in the moto bucket, read with boto3
    keys = [k for k in bucket_keys(services) if rid in k]
    assert len(keys) == 1 and keys[0].startswith("artifacts/") and keys[0].endswith(f"{rid}/artifacts/card/{card}")
    body = services.s3().get_object(Bucket=MLFLOW_BUCKET, Key=keys[0])["Body"].read()
    assert body == b"# model card of stored\n"


@pytest.mark.slow  # the MLflow server stopped and started again: about 12 s on 2 cores
def test_mlflow_server_stopped_and_started_again(mlflow_restarted_after, tmp_path, monkeypatch):
    services = mlflow_restarted_after
    client = MlflowClient(tracking_uri=services.mlflow_uri)
    before, card = log_run(client, tmp_path, "before")

    services.stop_mlflow()
    assert not services.mlflow_healthy()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now instead of retrying for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    t0 = time.monotonic()
    with pytest.raises(MlflowException):
        client.get_run(before)
    assert time.monotonic() - t0 < 30

    services.start_mlflow()
    assert services.mlflow_healthy()
    run = client.get_run(before)  # same URI: same port, same PostgreSQL backend, same bucket
    assert run.data.metrics == {"knn_top1": 0.875}
    got = client.download_artifacts(before, f"card/{card}", str(tmp_path / "dl"))
    assert open(got).read() == "# model card of before\n"
    after, _ = log_run(client, tmp_path, "after")
    assert client.get_run(after).info.status == "FINISHED"
