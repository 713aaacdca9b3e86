"""scripts/services itself: the env file it writes, `start` on running services, `stop` whatever their state."""

import os
import signal
import socket
import subprocess
import tempfile
import shutil
import time
from pathlib import Path

import psycopg2
import pytest

from services import ENV_NAMES, SCRIPT, read_env_file, run_script


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def status(d: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "status", "--dir", str(d)], capture_output=True, text=True)


def test_env_file_names_and_values(services):
    if services.dir is None:
        pytest.skip("services of the environment without SSLPIPE_SERVICES_DIR: no env file to read")
    env = read_env_file(services.dir / "env")
    assert tuple(env) == ENV_NAMES
    assert env["SSLPIPE_PG_HOST"] == "127.0.0.1" and env["SSLPIPE_PG_USER"] == "sslpipe"
    assert env["SSLPIPE_PG_DB"] == "dagster" and env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["SSLPIPE_S3_ENDPOINT"].startswith("http://127.0.0.1:")
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert Path(env["SSLPIPE_SERVICES_DIR"]) == services.dir
    assert oct((services.dir / "env").stat().st_mode & 0o777) == "0o600"  # it holds the password
    printed = run_script("env", "--dir", str(services.dir)).stdout
    assert printed == (services.dir / "env").read_text()
    # the password works, and only it
    psycopg2.connect(**services.pg_dsn()).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**{**services.pg_dsn(), "password": "wrong"}, connect_timeout=5)


def test_start_when_running_changes_nothing(services):
    if services.dir is None:
        pytest.skip("services of the environment without SSLPIPE_SERVICES_DIR")
    before = read_env_file(services.dir / "env")
    out = run_script("start", "--dir", str(services.dir)).stdout
    for name in ("postgres", "moto", "mlflow"):
        assert f"{name} already running" in out
    assert read_env_file(services.dir / "env") == before
    assert status(services.dir).returncode == 0


@pytest.fixture
def own_dir():
    """A state folder of its own for PostgreSQL and moto (MLflow is the session's test), stopped and removed after."""
    d = Path(tempfile.mkdtemp(prefix="sslpipe-services-"))
    d.chmod(0o755)  # run as root, PostgreSQL runs as the postgres user
    yield d
    run_script("stop", "--dir", str(d))
    shutil.rmtree(d, ignore_errors=True)


def start_own(d: Path) -> tuple[dict, int, int, dict]:
    run_script("start", "postgres", "moto", "--dir", str(d))
    env = read_env_file(d / "env")
    pg_port, moto_port = int(env["SSLPIPE_PG_PORT"]), int(env["SSLPIPE_S3_ENDPOINT"].rsplit(":", 1)[1])
    assert listening(pg_port) and listening(moto_port)
    dsn = {"host": "127.0.0.1", "port": pg_port, "user": "sslpipe", "password": env["SSLPIPE_PG_PASSWORD"],
           "dbname": "dagster"}
    return env, pg_port, moto_port, dsn


def test_stop_twice(own_dir):
    assert "postgres is not running" in run_script("stop", "--dir", str(own_dir)).stdout  # never started
    env, pg_port, moto_port, dsn = start_own(own_dir)
    for _ in range(2):
        out = run_script("stop", "--dir", str(own_dir)).stdout
        assert not listening(pg_port) and not listening(moto_port)
    assert "postgres is not running" in out and "moto is not running" in out and "mlflow is not running" in out
    assert status(own_dir).returncode == 3


@pytest.mark.slow  # PostgreSQL's crash recovery at the next start: about 15 s on 2 cores
def test_stop_and_start_after_a_crash(own_dir):
    """Both killed with SIGKILL, their pid files left behind: `stop` cleans up, `start` brings them back on the
    same ports and data."""
    env, pg_port, moto_port, dsn = start_own(own_dir)
    with psycopg2.connect(**dsn) as c, c.cursor() as cur:
        cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    postmaster = int((own_dir / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    os.kill(int((own_dir / "run" / "moto.pid").read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (listening(pg_port) or listening(moto_port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status(own_dir).returncode == 3
    run_script("stop", "--dir", str(own_dir))
    start_own(own_dir)
    assert read_env_file(own_dir / "env")["SSLPIPE_PG_PORT"] == str(pg_port)
    with psycopg2.connect(**dsn) as c, c.cursor() as cur:
        cur.execute("SELECT x FROM kept")
        assert cur.fetchall() == [(42,)]
    assert status(own_dir).returncode == 3  # mlflow was never started here
