"""The production services for tests/production: the environment's (CI's, or the ones a user sourced with
`source .services/env`), else PostgreSQL, moto and MLflow started by scripts/services for this session (about
10-20 s, once) and stopped at its end."""

import shutil
import tempfile
from pathlib import Path

import pytest

from services import Services


@pytest.fixture(scope="session")
def services():
    svc = Services.from_environ()
    if svc is not None:
        yield svc
        return
    # under /tmp, not pytest's basetemp (0700): run as root, PostgreSQL runs as the postgres user, which must reach it
    d = Path(tempfile.mkdtemp(prefix="sslpipe-services-"))
    svc = Services.start(d)
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mlflow_restarted_after(services):
    """For tests that stop the MLflow server: it runs again after them, whatever happened."""
    yield services
    services.start_mlflow()


@pytest.fixture
def prod_env(services, monkeypatch):
    """The services' variables in this process (as `source .services/env` does for a user)."""
    for k, v in services.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SSLPIPE_PG_HOST", services.pg_host)
    monkeypatch.setenv("SSLPIPE_PG_PORT", str(services.pg_port))
    monkeypatch.setenv("SSLPIPE_PG_USER", services.pg_user)
    return services
