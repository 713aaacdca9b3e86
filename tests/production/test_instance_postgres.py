"""The Dagster instance on real PostgreSQL (pipelines.instance): runs, asset events and dynamic partitions land
in the database, survive a PostgreSQL restart, and the password stays out of the config and every log."""

import logging
import uuid

import dagster as dg
import pytest

from pipelines.instance import SQLITE_YAML, InstanceConfigError, prepare_instance

BATCHES = dg.DynamicPartitionsDefinition(name="batches")


@dg.asset(partitions_def=BATCHES)
def tiny_batch(context: dg.AssetExecutionContext) -> int:
    context.log.info(f"tiny batch {context.partition_key}")
    return len(context.partition_key)


@pytest.fixture
def pg_db(services):
    """A fresh database on the services' PostgreSQL for one test (dropped after it): tests see only their runs."""
    name = f"dagster_t_{uuid.uuid4().hex[:12]}"
    admin(services, f"CREATE DATABASE {name}")
    yield name
    admin(services, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # a new connection: the test may restart PostgreSQL


def admin(services, sql):
    conn = services.connect("postgres")
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


@pytest.fixture
def pg_instance(services, pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SSLPIPE_PG_PASSWORD", services.pg_password)
    instance = prepare_instance(tmp_path / "dagster", services.postgres_settings(db=pg_db))
    yield instance
    instance.dispose()


def query(services, db, sql, args=()):
    conn = services.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def materialize_batch(instance, key: str) -> str:
    instance.add_dynamic_partitions("batches", [key])
    result = dg.materialize([tiny_batch], instance=instance, partition_key=key)
    assert result.success
    assert result.output_for_node("tiny_batch") == len(key)
    return result.run_id


def test_runs_events_and_partitions_land_in_postgres(services, pg_db, pg_instance, tmp_path):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    run_id = materialize_batch(pg_instance, "batch-0001")
    pg_instance.add_dynamic_partitions("batches", ["batch-0002"])

    # read back with psycopg2, not through Dagster
    assert query(services, pg_db, "SELECT status FROM runs WHERE run_id = %s", (run_id,)) == [("SUCCESS",)]
    events = query(services, pg_db, "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND "
                   "dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
    assert events == [('["tiny_batch"]', "batch-0001")]
    kinds = {k for (k,) in query(services, pg_db, "SELECT dagster_event_type FROM event_logs WHERE run_id = %s",
                                 (run_id,))}
    assert {"PIPELINE_START", "STEP_SUCCESS", "PIPELINE_SUCCESS"} <= kinds  # run events keep their legacy names
    parts = query(services, pg_db, "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'batches' "
                  "ORDER BY partition")
    assert parts == [("batch-0001",), ("batch-0002",)]
    # nothing in SQLite: the folder holds the config and the step outputs, no databases
    d = tmp_path / "dagster"
    assert not [p for p in d.rglob("*") if p.suffix in (".db", ".sqlite")]
    # another instance on the same config (another process would do the same) sees the run
    other = dg.DagsterInstance.from_config(str(d))
    assert other.get_run_by_id(run_id).is_success
    assert other.get_dynamic_partitions("batches") == ["batch-0001", "batch-0002"]
    other.dispose()


def test_postgres_restart_between_runs_loses_nothing(services, pg_db, pg_instance):
    """PostgreSQL stopped (fast: its sessions cut) and started again between two materializations with one
    instance object. dagster-postgres opens a connection per operation (NullPool), so the first call after the
    restart succeeds without a retry; nothing written before is lost."""
    first = materialize_batch(pg_instance, "before")
    services.restart_postgres()
    second = materialize_batch(pg_instance, "after")  # no retry needed

    runs = dict(query(services, pg_db, "SELECT run_id, status FROM runs"))
    assert runs == {first: "SUCCESS", second: "SUCCESS"}
    mats = query(services, pg_db, "SELECT run_id, partition FROM event_logs WHERE dagster_event_type = "
                 "'ASSET_MATERIALIZATION' ORDER BY id")
    assert mats == [(first, "before"), (second, "after")]
    assert {r.run_id for r in pg_instance.get_runs()} == {first, second}
    assert sorted(pg_instance.get_dynamic_partitions("batches")) == ["after", "before"]
    latest = pg_instance.get_latest_materialization_event(dg.AssetKey("tiny_batch"))
    assert latest.run_id == second


def test_password_in_no_config_and_no_log(services, pg_db, pg_instance, tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    run_id = materialize_batch(pg_instance, "secretive")
    pw = services.pg_password
    d = tmp_path / "dagster"
    cfg = (d / "dagster.yaml").read_text()
    assert "password:\n        env: SSLPIPE_PG_PASSWORD" in cfg and f"port: {services.pg_port}" in cfg
    assert pw not in cfg

    scanned = {}  # everything Dagster wrote in its folder (config, compute logs, step outputs) and the services' logs
    roots = [d] + ([services.logs] if services.logs else [])
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file():
                scanned[p] = p.read_bytes()
    assert d / "dagster.yaml" in scanned
    if services.logs:
        assert services.logs / "postgres.log" in scanned and services.logs / "mlflow.log" in scanned
    leaks = [str(p) for p, b in scanned.items() if pw.encode() in b]
    assert leaks == []
    # the event log itself (every event's JSON), and what this process printed and logged
    events = query(services, pg_db, "SELECT event FROM event_logs WHERE run_id = %s", (run_id,))
    assert len(events) > 5 and any("tiny batch secretive" in e for (e,) in events)
    assert not [e for (e,) in events if pw in e]
    out, err = capfd.readouterr()
    assert pw not in out + err and pw not in caplog.text


def test_missing_password_variable_is_named(services, pg_db, tmp_path, monkeypatch):
    var = "SSLPIPE_TEST_PG_PASSWORD_UNSET"
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(InstanceConfigError, match=f"environment variable {var}, which is not set"):
        prepare_instance(tmp_path / "dagster", services.postgres_settings(password_env=var, db=pg_db))
    monkeypatch.setenv(var, "")
    with pytest.raises(InstanceConfigError, match=f"{var} .* is empty"):
        prepare_instance(tmp_path / "dagster", services.postgres_settings(password_env=var, db=pg_db))
    # once set, the same settings make a working instance
    monkeypatch.setenv(var, services.pg_password)
    instance = prepare_instance(tmp_path / "dagster", services.postgres_settings(password_env=var, db=pg_db))
    assert instance.get_runs() == []
    instance.dispose()
    # started elsewhere (say `dagster dev` on this home) without the variable: Dagster's own error names it too
    monkeypatch.delenv(var)
    with pytest.raises(Exception, match=var):
        dg.DagsterInstance.from_config(str(tmp_path / "dagster"))


def test_home_switched_from_sqlite_to_postgres(services, pg_db, tmp_path, monkeypatch, caplog):
    d = tmp_path / "dagster"
    local = prepare_instance(d)
    assert (d / "dagster.yaml").read_text() == SQLITE_YAML
    local_run = materialize_batch(local, "local")
    local.dispose()
    monkeypatch.setenv("SSLPIPE_PG_PASSWORD", services.pg_password)
    with caplog.at_level(logging.WARNING, logger="pipelines.instance"):
        pg = prepare_instance(d, services.postgres_settings(db=pg_db))
    assert "differed from the wanted config (PostgreSQL storage): rewritten" in caplog.text
    assert (d / "dagster.yaml.previous").read_text() == SQLITE_YAML
    assert "postgres_db:" in (d / "dagster.yaml").read_text()
    run_id = materialize_batch(pg, "switched")
    pg.dispose()
    assert query(services, pg_db, "SELECT run_id, status FROM runs") == [(run_id, "SUCCESS")]  # not the SQLite one
    assert local_run != run_id
    caplog.clear()
    again = prepare_instance(d, services.postgres_settings(db=pg_db))  # the same config: nothing rewritten
    assert "rewritten" not in caplog.text and again.get_run_by_id(run_id).is_success
    again.dispose()
