"""MLflow tracking: a small resource of our own over MlflowClient (dagster-mlflow is a legacy op-style resource).

    run = tracking.start_run("ssl_encoder", tags={...})      # or tracking.resume_run(run_id)
    run.log_params({...}); run.log_metrics({"loss": 1.2}, step=10); run.log_artifact(path); run.finish()

The default store is SQLite with local artifacts under the home's mlflow/ folder; point tracking_uri at a
tracking server (http://...) to share runs. Metrics are buffered and written in batches (every `flush_every`
calls, and at finish), so per-step logging does not cost a database write per step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from pathlib import Path

import dagster as dg

from ssl_ops.locks import file_lock


@contextlib.contextmanager
def quiet_mlflow():
    """MLflow's own chatter while logging a model (progress bars, 'Created version', type-hint advice) would
    drown the pipeline's output; what matters is logged by the asset itself."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    # no progress bars; with a tracking server, no "View run ... at" lines on stdout when a run ends
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    saved = {k: os.environ.get(k) for k in quiet}
    logger.setLevel(logging.WARNING)
    os.environ.update(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TrackingUnavailable(ConnectionError):
    """The MLflow tracking server did not answer. Not a Failure: the asset's retry policy retries it."""


# what an unreachable or overloaded server looks like through MLflow's REST client (requests/urllib3 messages)
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Connection aborted", "Connection reset",
                "Read timed out", "Failed to establish a new connection", "RemoteDisconnected",
                "Name or service not known", "too many 5", "503 Server Error", "502 Server Error",
                "504 Server Error")


def _root(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:300]}"


def _unreachable(e: BaseException) -> bool:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, (ConnectionError, TimeoutError)) or any(m in str(e) for m in _UNREACHABLE):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


class MlflowRun:
    def __init__(self, client, run_id: str, experiment_id: str, ui_url: str, flush_every: int = 20):
        self.client, self.run_id, self.experiment_id = client, run_id, experiment_id
        self.ui_url, self.flush_every = ui_url, flush_every
        self._pending: list = []

    @property
    def url(self) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in sorted(tags.items())])

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if len(self._pending) >= self.flush_every * max(len(metrics), 1):
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self._pending), 1000):
            self.client.log_batch(self.run_id, metrics=self._pending[i:i + 1000])
        self._pending = []

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, d: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, d, artifact_file)

    def logged_steps(self, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        with quiet_mlflow():  # the run's URL is in the asset's metadata and log already
            self.client.set_terminated(self.run_id, status)


_READY_STORES: set[str] = set()  # SQLite stores this process has seen created


def _create_sqlite_store(make_client, db: Path):
    """make_client(), with the SQLite store's tables created (migrated) once, one process at a time.

    MLflow creates the tables of a new SQLite database, and runs its alembic migrations over them, when a
    client is made (the tracking store) and when the registry is first used (the registry store); two
    processes doing that at once on one new database fail ("duplicate column name: step", "table ... already
    exists"). So this process's first client of a store is made, and both stores touched, under a lock
    beside the database (mlflow.db.lock); once created, later clients only read the schema."""
    key = str(db.resolve())
    if key in _READY_STORES:
        return make_client()
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock"), what=f"creating the MLflow store {db}"), quiet_mlflow():
        client = make_client()  # the tracking store: creates and migrates its tables
        client.search_registered_models(max_results=1)  # the model registry store, the same way
    _READY_STORES.add(key)
    return client


class MlflowTracking(dg.ConfigurableResource):
    """Where runs go: a tracking URI (SQLite file by default), an artifact folder, an experiment name."""

    tracking_uri: str  # e.g. sqlite:////abs/path/mlflow.db, or http://mlflow.internal:5000
    artifact_root: str | None = None  # for new experiments with a local store: a folder (or any artifact URI)
    experiment: str = "sslpipe"
    model_name: str = "ssl-encoder"  # the registered model that registered_model adds versions to
    ui_url: str = "http://127.0.0.1:5000"  # where `mlflow ui` (or the server) shows runs, for links
    dagster_url: str = "http://127.0.0.1:3000"  # where `dagster dev` shows runs, for links back from MLflow

    def client(self):
        from mlflow.tracking import MlflowClient

        def make():  # the registry too: otherwise it follows a process-wide mlflow.set_registry_uri (another store)
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

        if self.tracking_uri.startswith("sqlite:///"):
            return _create_sqlite_store(make, Path(self.tracking_uri[len("sqlite:///"):]))
        return make()

    @contextlib.contextmanager
    def server_errors(self, what: str):
        """A tracking server that does not answer becomes one TrackingUnavailable naming its URI (retried by the
        asset's policy), instead of a page of HTTP client traceback; other errors pass unchanged."""
        try:
            yield
        except TrackingUnavailable:
            raise
        except Exception as e:
            if self.tracking_uri.startswith(("http://", "https://")) and _unreachable(e):
                raise TrackingUnavailable(
                    f"{what}: the MLflow tracking server at {self.tracking_uri} did not answer ({_root(e)}). The step "
                    f"is retried; check that the server runs and is reachable from here (MLflow's own HTTP retries: "
                    f"MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT)") from e
            raise

    def missing_store(self) -> Path | None:
        """The SQLite file of a local store that does not exist yet (opening a client would create it), else None
        (it exists, or the store is a tracking server)."""
        if self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri[len("sqlite:///"):])
            return None if db.is_file() else db
        return None

    def experiment_id(self, client) -> str:
        from mlflow.exceptions import MlflowException

        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.artifact_root:
            root = self.artifact_root
            location = root if "://" in root else Path(root).resolve().as_uri()
        try:
            return client.create_experiment(self.experiment, artifact_location=location)
        except MlflowException:  # another process sharing the store created it a moment ago
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def start_run(self, run_name: str, tags: dict | None = None) -> MlflowRun:
        client = self.client()
        exp = self.experiment_id(client)
        run = client.create_run(exp, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()})
        return MlflowRun(client, run.info.run_id, exp, self.ui_url)

    def resume_run(self, run_id: str) -> MlflowRun | None:
        """The run, set running again (for a resumed training); None if the store does not hold it."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            run = client.get_run(run_id)
        except MlflowException:
            return None
        client.update_run(run_id, status="RUNNING")
        return MlflowRun(client, run_id, run.info.experiment_id, self.ui_url)

    @contextlib.contextmanager
    def using(self):
        """Point MLflow's fluent API (mlflow.pyfunc.log_model, mlflow.log_input, artifact downloads) at this store
        while the block runs; the process's previous tracking and registry URIs are put back after it, so that
        nothing outside the block (another resource, the user's own code) is pointed elsewhere behind its back."""
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        self.client()  # creates a SQLite store (its folder and tables) under its lock
        old = (tracking_utils._tracking_uri, registry_utils._registry_uri,
               {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")})
        mlflow.set_tracking_uri(self.tracking_uri)  # (MLflow also puts them into the environment, for subprocesses)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(old[0])
            mlflow.set_registry_uri(old[1])
            for k, v in old[2].items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def version_url(self, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name}/versions/{version}"

    def ui_command(self) -> str:
        """How a person sees the runs and models: `mlflow ui` over a local store, or the server's address."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.ui_url
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"
