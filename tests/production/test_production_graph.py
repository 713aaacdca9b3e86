"""The whole graph in `production` against real servers: Dagster on PostgreSQL, an MLflow tracking server (its
backend store PostgreSQL, its artifacts in the S3 bucket), landing batches, manifests, reports and shards in an
S3 bucket (moto's server) under a prefix of their own, and the registered model loaded by a fresh process."""

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from pipelines.cli import main
from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.storage import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
from prod import fresh_database, land, production_config


@pytest.mark.slow
@pytest.mark.quiet_period  # the shipped 60 s: a batch without _READY, just uploaded, is still landing
def test_the_whole_graph_in_production_against_the_real_servers(prod_env, tmp_path, capsys):
    svc = prod_env
    model = f"ssl-encoder-{uuid.uuid4().hex[:6]}"  # the server may be shared (a user's, or the session's)
    prefix = f"s3://sslpipe/t-{uuid.uuid4().hex[:8]}"
    store = ObjectStore(prefix, {"endpoint_url": svc.s3_endpoint})
    staging = Home.resolve(tmp_path / "staging").ensure()
    write_demo(staging, batches=3)
    land(store, staging, ["demo-001", "demo-002"])
    land(store, staging, ["demo-003"], ready=False)  # still landing (no _READY, quiet period 60 s)
    store.publish(staging.eval_dir, "eval")
    db = fresh_database(svc)
    home = tmp_path / "home"  # this process's working copy; the prefix is the record
    cfg3 = production_config(tmp_path, svc, prefix, db, steps=3, model=model)

    assert main(["run", "--home", str(home), "--config", str(cfg3)]) == 0
    out = capsys.readouterr().out
    assert "skipping landing/demo-003: still landing" in out
    assert f"{prefix}/shards/demo-001 " in out.replace("(", " ")  # said where it published
    assert "training runs and registered models: " + svc.mlflow_uri in out  # the server, not a local `mlflow ui`

    # manifests, reports and shards are in the bucket; each shard the index lists is there with its size and sha256
    for b in ("demo-001", "demo-002"):
        names = {n for n, _, _ in store.files(f"manifests/{b}")} | {n for n, _, _ in store.files(f"reports/{b}")}
        assert {"accepted.parquet", "quarantine.parquet", "bias.md", "validation.json"} <= names
        index = json.loads(store.read_bytes(f"shards/{b}/index.json"))
        assert index["samples"] > 300 and index["shards"]
        for s in index["shards"]:
            data = store.read_bytes(f"shards/{b}/{s['name']}")
            assert (len(data), hashlib.sha256(data).hexdigest()) == (s["bytes"], s["sha256"])
    assert not store.files("shards/demo-003") and not store.files("manifests/demo-003")

    # Dagster's runs and asset events are in PostgreSQL, not in the home's folder
    with svc.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 4  # ingest_eval, two ingest_batch, train_encoder
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                    "AND asset_key = %s", (dg.AssetKey("image_shards").to_string(),))
        assert cur.fetchone()[0] == 2
    assert not list((home / "dagster").glob("**/*.db"))  # no SQLite storage beside dagster.yaml
    assert "SSLPIPE_PG_PASSWORD" in (home / "dagster" / "dagster.yaml").read_text()
    assert svc.pg_password not in (home / "dagster" / "dagster.yaml").read_text()

    # version 1 fails against the baselines (3 steps); a reviewer forces it to champion through the server
    assert main(["approve", f"{model}@1", "--home", str(home), "--config", str(cfg3), "--force",
                 "--reason", "first production model"]) == 0
    # demo-003 completes; a second training (4 steps, as 2 torchrun processes launched through Dagster Pipes: the
    # same graph, switched by configuration) is registered as version 2, the challenger (a 4-step model cannot beat
    # raw pixels, which every new model must)
    land(store, staging, ["demo-003"])
    cfg4 = production_config(tmp_path, svc, prefix, db, steps=4, model=model,
                             training={"launcher": "torchrun", "nproc_per_node": 2})
    assert main(["run", "--home", str(home), "--config", str(cfg4)]) == 0
    out = capsys.readouterr().out
    assert "registered 1 new batch(es): demo-003" in out
    with svc.connect(db) as conn, conn.cursor() as cur:  # the training's metadata, through Pipes, in PostgreSQL
        cur.execute("SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s "
                    "ORDER BY id DESC LIMIT 1", (dg.AssetKey("ssl_encoder").to_string(),))
        assert '"world_size"' in cur.fetchone()[0]
    assert "ssl_encoder: launching 1 node(s) x 2 process(es)" in out
    from mlflow import MlflowClient

    client = MlflowClient(svc.mlflow_uri)
    cand = client.get_model_version_by_alias(model, "challenger")
    assert cand.version == "2" and client.get_model_version_by_alias(model, "champion").version == "1"
    # the version's artifacts went through the server into the S3 bucket
    keys = [o["Key"] for page in svc.s3().get_paginator("list_objects_v2").paginate(Bucket="mlflow")
            for o in page.get("Contents", [])]
    assert any(cand.run_id in k and k.endswith("encoder.pt") for k in keys), keys[:20]

    # a fresh process, with nothing but the server's address (no S3 credentials: the server proxies artifacts)
    code = (f"import mlflow, numpy as np; m = mlflow.pyfunc.load_model('models:/{model}@challenger'); "
            "e = m.predict(np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)); "
            "print('EMB', e.shape, bool(np.isfinite(e).all()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSLPIPE_"))}
    p = subprocess.run([sys.executable, "-c", code], env={**env, "MLFLOW_TRACKING_URI": svc.mlflow_uri},
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "EMB (3, " in p.stdout and "True" in p.stdout


@pytest.mark.quiet_period
def test_landing_sensor_lists_the_prefix_and_takes_a_batch_by_its_ready_object(prod_env, tmp_path):
    from pipelines.definitions import build_definitions
    from pipelines.settings import Settings, prepare_instance, resources_for

    svc = prod_env
    prefix = f"s3://sslpipe/t-{uuid.uuid4().hex[:8]}"
    store = ObjectStore(prefix, {"endpoint_url": svc.s3_endpoint})
    db = fresh_database(svc)
    cfg = production_config(tmp_path, svc, prefix, db, steps=3)
    s = Settings.from_env(home=tmp_path / "home").with_config_file(cfg)
    instance = prepare_instance(s)
    defs = build_definitions(s)
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.jpg").write_bytes(b"not even an image")
    assert main(["land", str(src), "--batch", "b-ready", "--home", str(tmp_path / "home"), "--config", str(cfg)]) == 0
    assert [n for n, _, _ in store.files("landing/b-ready")] == ["_READY", "x.jpg"]
    assert main(["land", str(src), "--batch", "b-ready", "--home", str(tmp_path / "home"), "--config", str(cfg)]) == 2
    store.write_bytes("landing/b-landing/y.jpg", b"1")  # a producer still uploading: no _READY yet
    sensor = defs.get_sensor_def("landing_sensor")
    with dg.build_sensor_context(instance=instance, resources={"home": resources_for(s)["home"]}) as ctx:
        res = sensor(ctx)
    # the eval set was never ingested: the sensor asks for it first
    assert [r.job_name for r in res.run_requests] == ["ingest_eval"]
    # once it was (its record written as the IO manager writes it), the complete batch, and only that one
    import dataclasses

    from assets.records import EvalSet, record_path

    rec = record_path(tmp_path / "home", "eval_images")
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps({"type": "EvalSet", "value": dataclasses.asdict(
        EvalSet(digest="x", manifest="m", images=1, classes=1, groups=[]))}))
    with dg.build_sensor_context(instance=instance, resources={"home": resources_for(s)["home"]}) as ctx:
        res = sensor(ctx)
    assert [(r.job_name, r.partition_key) for r in res.run_requests] == [("ingest_batch", "b-ready")]
    assert res.dynamic_partitions_requests[0].partition_keys == ["b-ready"]
