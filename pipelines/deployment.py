"""Where the pipeline runs: the `deployment:` section of the config file (and SSLPIPE_ENV), checked in one place.

    deployment:
      env: production                    # or SSLPIPE_ENV=production; "local" (the default) needs nothing else
      dagster:                           # the Dagster instance's storage: PostgreSQL (dagster-postgres)
        postgres: {host: db.internal, port: 5432, db: dagster, user: dagster, password_env: SSLPIPE_PG_PASSWORD}
      mlflow:                            # an MLflow tracking server (its own backend store and artifact store)
        tracking_uri: http://mlflow.internal:5000
        ui_url: https://mlflow.example.com     # optional: where people open it (default: tracking_uri)
      storage:                           # landing batches, manifests, reports, shards and indexes
        url: s3://sslpipe/prod
        endpoint_url: http://minio.internal:9000   # optional (MinIO, Ceph, moto); default: AWS
      training:                          # optional
        launcher: torchrun               # in_process (default) | torchrun (Dagster Pipes)
        nproc_per_node: 2                # processes per node (GPUs per node)
        gpus: 1                          # trainings at once = devices (the instance's sslpipe_train pool)

Any value may be `{env: NAME}`: read from the environment when the settings are made (for hosts and URLs that
differ per machine). Secrets are never values here: the PostgreSQL password is named by `password_env` and read
by Dagster itself (an `env:` entry in dagster.yaml), object-storage credentials come from the standard
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables (or the machine's role), and an MLflow server's from
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN). A key that looks like a secret
(password, secret, token) is refused with the variable to use instead.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

ENVIRONMENTS = ("local", "production")
LAUNCHERS = ("in_process", "torchrun")
SECTIONS = ("env", "dagster", "mlflow", "storage", "training")
POSTGRES_KEYS = ("host", "port", "db", "user", "password_env")
SECRET_WORDS = re.compile(r"(pass(word)?|secret|token|credential|access_key)$", re.I)


class DeploymentError(ValueError):
    """A bad deployment section; the message says what to fix."""


@dataclass(frozen=True)
class Deployment:
    env: str = "local"
    postgres: dict | None = None  # {host, port, db, user, password_env}: the Dagster instance's storage
    mlflow_uri: str | None = None  # an MLflow tracking server
    mlflow_ui: str | None = None  # where people open it
    storage_url: str | None = None  # s3://bucket/prefix: landing, manifests, reports, shards
    storage_options: dict = field(default_factory=dict)  # fsspec options, non-secret (endpoint_url)
    launcher: str = "in_process"
    nproc_per_node: int = 1
    gpus: int = 1

    @property
    def production(self) -> bool:
        return self.env == "production"

    def describe(self) -> str:
        """One line for the console: what this deployment uses (no secrets: there are none here)."""
        if not self.production:
            return "local (SQLite for Dagster and MLflow, local folders, training in-process)"
        pg = self.postgres or {}
        return (f"production (Dagster on PostgreSQL {pg.get('user')}@{pg.get('host')}:{pg.get('port')}/{pg.get('db')}, "
                f"MLflow {self.mlflow_uri}, storage {self.storage_url}, training {self.launcher}"
                + (f" x{self.nproc_per_node}" if self.launcher == "torchrun" else "") + ")")


def _resolve(v, where: str, environ):
    """A value, or {env: NAME} read from the environment."""
    if isinstance(v, dict) and set(v) == {"env"}:
        name = v["env"]
        if not isinstance(name, str) or name not in environ:
            raise DeploymentError(f"{where}: environment variable {name!r} is not set (the config reads it: "
                                  f"{{env: {name}}})")
        return environ[name]
    return v


def parse_deployment(section, env_var: str | None, where: str = "deployment",
                     environ: dict | None = None) -> Deployment:
    """The deployment section (None if absent) and SSLPIPE_ENV (which wins over `env:`) -> Deployment."""
    environ = os.environ if environ is None else environ
    d = section if section is not None else {}
    if not isinstance(d, dict):
        raise DeploymentError(f"{where} must be a mapping with keys {list(SECTIONS)}, got {d!r}")
    unknown = sorted(set(d) - set(SECTIONS))
    if unknown:
        raise DeploymentError(f"{where}: unknown key(s) {unknown}; allowed: {list(SECTIONS)}")
    env = env_var or _resolve(d.get("env", "local"), f"{where}.env", environ)
    if env not in ENVIRONMENTS:
        raise DeploymentError(f"environment {env!r} is not known (SSLPIPE_ENV or {where}.env); known: "
                              f"{list(ENVIRONMENTS)}")
    for name in ("dagster", "mlflow", "storage", "training"):
        sub = d.get(name)
        if sub is not None and not isinstance(sub, dict):
            raise DeploymentError(f"{where}.{name} must be a mapping, got {sub!r}")
        _refuse_secrets(sub or {}, f"{where}.{name}")
    training = _training(d.get("training") or {}, f"{where}.training", environ)
    if env == "local":
        extra = [k for k in ("dagster", "mlflow", "storage") if d.get(k)]
        if extra:
            raise DeploymentError(f"{where}: {extra} apply to env: production only (this is env: local); set "
                                  f"`env: production` (or SSLPIPE_ENV=production), or remove them")
        return Deployment(env="local", **training)
    missing = [k for k in ("dagster", "mlflow", "storage") if not d.get(k)]
    if missing:
        raise DeploymentError(f"env production needs {where}.{' , '.join(missing)}: e.g.\n" + _EXAMPLE)
    pg = _postgres((d["dagster"] or {}).get("postgres"), f"{where}.dagster.postgres", environ)
    other = sorted(set(d["dagster"]) - {"postgres"})
    if other:
        raise DeploymentError(f"{where}.dagster: unknown key(s) {other}; allowed: ['postgres']")
    ml = {k: _resolve(v, f"{where}.mlflow.{k}", environ) for k, v in d["mlflow"].items()}
    bad = sorted(set(ml) - {"tracking_uri", "ui_url"})
    if bad:
        raise DeploymentError(f"{where}.mlflow: unknown key(s) {bad}; allowed: ['tracking_uri', 'ui_url']")
    uri = ml.get("tracking_uri")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise DeploymentError(f"{where}.mlflow.tracking_uri must be the URL of an MLflow tracking server "
                              f"(http://host:port), got {uri!r}")
    st = {k: _resolve(v, f"{where}.storage.{k}", environ) for k, v in d["storage"].items()}
    url = st.pop("url", None)
    if not isinstance(url, str) or "://" not in url or url.startswith("file://"):
        raise DeploymentError(f"{where}.storage.url must be an object-storage prefix such as s3://bucket/sslpipe, "
                              f"got {url!r}")
    bad = sorted(set(st) - {"endpoint_url", "region_name"})
    if bad:
        raise DeploymentError(f"{where}.storage: unknown key(s) {bad}; allowed: ['url', 'endpoint_url', "
                              f"'region_name'] (credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    return Deployment(env="production", postgres=pg, mlflow_uri=uri.rstrip("/"),
                      mlflow_ui=(ml.get("ui_url") or uri).rstrip("/"), storage_url=url.rstrip("/"),
                      storage_options={k: v for k, v in st.items() if v}, **training)


def _refuse_secrets(d: dict, where: str) -> None:
    for k, v in d.items():
        if isinstance(v, dict) and set(v) != {"env"}:
            _refuse_secrets(v, f"{where}.{k}")
        elif SECRET_WORDS.search(str(k)) and k != "password_env":
            hint = {"dagster": "password_env: SSLPIPE_PG_PASSWORD (the variable's name, not its value)",
                    "storage": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                    "mlflow": "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in "
                              "the environment"}.get(where.split(".")[1] if "." in where else "",
                                                     "an environment variable")
            raise DeploymentError(f"{where}.{k}: secrets do not go in the config file (it is read, copied and "
                                  f"logged); use {hint}")


def _postgres(pg, where: str, environ) -> dict:
    if not isinstance(pg, dict):
        raise DeploymentError(f"{where} must be a mapping {{host, port, db, user, password_env}}, got {pg!r}")
    pg = {k: _resolve(v, f"{where}.{k}", environ) for k, v in pg.items()}
    unknown = sorted(set(pg) - set(POSTGRES_KEYS))
    if unknown:
        raise DeploymentError(f"{where}: unknown key(s) {unknown}; allowed: {list(POSTGRES_KEYS)}")
    missing = [k for k in POSTGRES_KEYS if k not in pg]
    if missing:
        raise DeploymentError(f"{where}: missing {missing}; e.g. {{host: 127.0.0.1, port: 5432, db: dagster, "
                              f"user: dagster, password_env: SSLPIPE_PG_PASSWORD}}")
    try:
        port = int(pg["port"])
    except (TypeError, ValueError):
        raise DeploymentError(f"{where}.port must be a port number, got {pg['port']!r}") from None
    if not 0 < port < 65536:
        raise DeploymentError(f"{where}.port must be a port number, got {port}")
    name = pg["password_env"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise DeploymentError(f"{where}.password_env must be the NAME of an environment variable, got {name!r}")
    if name not in environ:
        raise DeploymentError(f"{where}.password_env: environment variable {name} is not set; export it with the "
                              f"PostgreSQL password of user {pg['user']!r}")
    return {"host": str(pg["host"]), "port": port, "db": str(pg["db"]), "user": str(pg["user"]), "password_env": name}


def _training(t: dict, where: str, environ) -> dict:
    t = {k: _resolve(v, f"{where}.{k}", environ) for k, v in t.items()}
    unknown = sorted(set(t) - {"launcher", "nproc_per_node", "gpus"})
    if unknown:
        raise DeploymentError(f"{where}: unknown key(s) {unknown}; allowed: ['launcher', 'nproc_per_node', 'gpus']")
    launcher = t.get("launcher", "in_process")
    if launcher not in LAUNCHERS:
        raise DeploymentError(f"{where}.launcher must be one of {list(LAUNCHERS)}, got {launcher!r}")
    out = {"launcher": launcher}
    for k in ("nproc_per_node", "gpus"):
        v = t.get(k, 1)
        try:
            v = int(v)
        except (TypeError, ValueError):
            v = 0
        if v < 1:
            raise DeploymentError(f"{where}.{k} must be a whole number >= 1, got {t.get(k)!r}")
        out[k] = v
    return out


_EXAMPLE = """deployment:
  env: production
  dagster: {postgres: {host: 127.0.0.1, port: 5432, db: dagster, user: sslpipe, password_env: SSLPIPE_PG_PASSWORD}}
  mlflow: {tracking_uri: http://127.0.0.1:5000}
  storage: {url: s3://sslpipe/prod, endpoint_url: http://127.0.0.1:9000}"""
