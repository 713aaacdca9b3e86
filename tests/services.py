"""The production services (PostgreSQL, moto's S3 server, an MLflow tracking server) for the tests.

    from services import Services
    svc = Services.from_environ()        # the ones of the environment (CI, or `source .services/env`), else None
    svc = Services.start(tmp_dir)        # started by scripts/services in tmp_dir; svc.stop() at the end

The session fixture `services` (tests/production/conftest.py) uses the environment's when
SSLPIPE_PG_PASSWORD, SSLPIPE_S3_ENDPOINT and MLFLOW_TRACKING_URI are set, and otherwise starts its own for the
session. The fault helpers (restart_postgres, stop_mlflow, start_mlflow) run scripts/services on the folder that
holds the services' state: SSLPIPE_SERVICES_DIR of the environment, or the session's own folder.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "services"
# What `scripts/services start` writes into <dir>/env; the first three decide whether the environment has services.
MARKERS = ("SSLPIPE_PG_PASSWORD", "SSLPIPE_S3_ENDPOINT", "MLFLOW_TRACKING_URI")
ENV_NAMES = ("SSLPIPE_PG_HOST", "SSLPIPE_PG_PORT", "SSLPIPE_PG_USER", "SSLPIPE_PG_DB", "SSLPIPE_PG_PASSWORD",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "SSLPIPE_S3_ENDPOINT",
             "SSLPIPE_S3_BUCKET", "MLFLOW_TRACKING_URI", "SSLPIPE_SERVICES_DIR")
DATA_BUCKET, MLFLOW_BUCKET = "sslpipe", "mlflow"


def run_script(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """bash scripts/services ARGS with this interpreter as the services' Python; raises with its output on failure."""
    env = {**os.environ, "SSLPIPE_SERVICES_PYTHON": sys.executable}
    p = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"scripts/services {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def read_env_file(path: Path) -> dict[str, str]:
    """The `export K=V` lines of <dir>/env (values quoted by bash's printf %q)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            out[k] = shlex.split(v)[0] if v else ""
    return out


@dataclass
class Services:
    env: dict[str, str]  # the ENV_NAMES and their values
    dir: Path | None  # the state folder of scripts/services (None: services of unknown origin)
    started_here: bool = False  # True: this process started them and stops them

    # --- where they are ---
    @property
    def pg_host(self) -> str:
        return self.env.get("SSLPIPE_PG_HOST", "127.0.0.1")

    @property
    def pg_port(self) -> int:
        return int(self.env["SSLPIPE_PG_PORT"])

    @property
    def pg_user(self) -> str:
        return self.env.get("SSLPIPE_PG_USER", "sslpipe")

    @property
    def pg_db(self) -> str:
        return self.env.get("SSLPIPE_PG_DB", "dagster")

    @property
    def pg_password(self) -> str:
        return self.env["SSLPIPE_PG_PASSWORD"]

    @property
    def s3_endpoint(self) -> str:
        return self.env["SSLPIPE_S3_ENDPOINT"]

    @property
    def mlflow_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def logs(self) -> Path | None:
        return self.dir / "logs" if self.dir else None

    def pg_dsn(self, db: str | None = None) -> dict:
        """Keyword arguments of psycopg2.connect."""
        return {"host": self.pg_host, "port": self.pg_port, "user": self.pg_user, "password": self.pg_password,
                "dbname": db or self.pg_db}

    def postgres_settings(self, password_env: str = "SSLPIPE_PG_PASSWORD", db: str | None = None) -> dict:
        """The `postgres` dict of pipelines.instance: the password by the name of its variable."""
        return {"host": self.pg_host, "port": self.pg_port, "db": db or self.pg_db, "user": self.pg_user,
                "password_env": password_env}

    def connect(self, db: str | None = None):
        import psycopg2

        return psycopg2.connect(**self.pg_dsn(db), connect_timeout=10)

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
                            region_name=self.env.get("AWS_DEFAULT_REGION", "us-east-1"))

    # --- faults ---
    def _script(self, *args: str) -> subprocess.CompletedProcess:
        if self.dir is None:
            raise RuntimeError("these services were not started by scripts/services (no SSLPIPE_SERVICES_DIR): "
                               "they cannot be restarted from here")
        p = run_script(*args, "--dir", str(self.dir))
        fresh = read_env_file(self.dir / "env")
        for k in ("SSLPIPE_PG_PORT", "SSLPIPE_S3_ENDPOINT", "MLFLOW_TRACKING_URI"):
            if fresh.get(k) != self.env.get(k):
                raise RuntimeError(f"{k} moved from {self.env.get(k)} to {fresh.get(k)} (its port was taken)")
        return p

    def restart_postgres(self) -> None:
        """PostgreSQL stopped (fast shutdown: sessions cut) and started again on its port and data."""
        self._script("restart", "postgres")

    def stop_mlflow(self) -> None:
        self._script("stop", "mlflow")

    def start_mlflow(self) -> None:
        """The MLflow server started again (no-op when it runs) on its port, backend store and artifacts."""
        self._script("start", "mlflow")

    def mlflow_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.mlflow_uri}/health", timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    # --- life ---
    @classmethod
    def from_environ(cls, environ=os.environ) -> "Services | None":
        if not all(environ.get(k) for k in MARKERS):
            return None
        d = environ.get("SSLPIPE_SERVICES_DIR")
        return cls(env={k: environ[k] for k in ENV_NAMES if k in environ}, dir=Path(d) if d else None)

    @classmethod
    def start(cls, directory: Path) -> "Services":
        """scripts/services start --dir directory. Run as root, PostgreSQL runs as the postgres user, which must
        reach the folder: it is made world-traversable (0755), its parents must be too (e.g. under /tmp)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        t0 = time.monotonic()
        try:
            run_script("start", "--dir", str(directory))
        except BaseException:
            run_script("stop", "--dir", str(directory))
            raise
        svc = cls(env=read_env_file(directory / "env"), dir=directory, started_here=True)
        svc.start_seconds = time.monotonic() - t0
        return svc

    def stop(self) -> None:
        if self.started_here:
            run_script("stop", "--dir", str(self.dir))
