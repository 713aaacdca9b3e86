"""Faults against the real servers: the MLflow server stopped while registered_model runs."""

import threading
import uuid

import dagster as dg
import pytest

from pipelines.cli import main
from pipelines.settings import Settings, prepare_instance
from prod import fresh_database, land, production_config
from ssl_ops.demo_data import write_demo
from ssl_ops.home import Home
from ssl_ops.storage import ObjectStore

UP_TO_PROBES = "eval_images,raw_images,validated_images,bias_report,image_shards,eval_leakage,ssl_encoder,probe_report"


@pytest.mark.slow
def test_mlflow_server_stopped_while_registering_is_named_retried_and_registers_once(prod_env, tmp_path, capsys,
                                                                                      monkeypatch,
                                                                                      mlflow_restarted_after):
    svc = prod_env
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast; Dagster's retry policy is the one here
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    model = f"ssl-encoder-{uuid.uuid4().hex[:6]}"
    prefix = f"s3://sslpipe/t-{uuid.uuid4().hex[:8]}"
    store = ObjectStore(prefix, {"endpoint_url": svc.s3_endpoint})
    staging = Home.resolve(tmp_path / "staging").ensure()
    write_demo(staging, batches=1)
    land(store, staging, ["demo-001"])
    store.publish(staging.eval_dir, "eval")
    db = fresh_database(svc)
    home = tmp_path / "home"
    cfg = production_config(tmp_path, svc, prefix, db, steps=2, model=model)
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select", UP_TO_PROBES]) == 0
    capsys.readouterr()

    # the server goes away right after the version is created, before its aliases and gate tags are set
    import mlflow

    real, restarts = mlflow.register_model, []

    def register_then_lose_the_server(*a, **kw):
        mv = real(*a, **kw)
        svc.stop_mlflow()
        t = threading.Thread(target=lambda: (restarts.append("starting"), svc.start_mlflow(),
                                             restarts.append("up")))
        t.start()
        return mv

    monkeypatch.setattr(mlflow, "register_model", register_then_lose_the_server)
    assert main(["run", "--home", str(home), "--config", str(cfg), "--select", "registered_model"]) == 0
    out = capsys.readouterr().out
    assert restarts and svc.mlflow_healthy()
    # the failed attempt said what was wrong, naming the server; the retry finished the version it had registered
    s = Settings.from_env(home=home).with_config_file(cfg)
    instance = prepare_instance(s)
    run = instance.get_runs(limit=1)[0]
    events = [e for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    retries = [e for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries, [e.dagster_event.event_type for e in events]
    text = str(retries[0].dagster_event.event_specific_data.error)
    assert f"the MLflow tracking server at {svc.mlflow_uri} did not answer" in text, text[:2000]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert "finishing version 1, registered by an earlier attempt" in out
    from mlflow import MlflowClient

    versions = MlflowClient(svc.mlflow_uri).search_model_versions(f"name = '{model}'")
    assert [v.version for v in versions] == ["1"]  # no duplicate
    assert "sslpipe.gate" in versions[0].tags or any(k.startswith("sslpipe.gate") for k in versions[0].tags)
