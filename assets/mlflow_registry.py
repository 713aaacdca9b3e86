"""The MLflow model registry as the pipeline uses it: versions keyed by the training run key, the
`champion` and `challenger` aliases, and a history of every alias move.

    reg = Registry(tracking)                       # tracking: the MlflowTracking resource
    reg.alias("champion")                          # -> ModelVersion or None
    reg.version_for(run_key)                       # the version registered for that training run, if any
    reg.load_encoder("2")                          # -> (backbone, meta) of version 2
    reg.move_alias("champion", "3", reason="...", dagster_run_id=...)

Alias history: each move is a tag on the registered model, `sslpipe.alias_history.NNNN`, holding JSON
{time, alias, from_version, to_version, reason, dagster_run_id}; they show on the model's page in the MLflow UI
and `history()` reads them back in order.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from assets.mlflow_tracking import MlflowTracking, quiet_mlflow

HISTORY_PREFIX = "sslpipe.alias_history."
RUN_KEY_TAG = "sslpipe.run_key"
GATE_TAG = "sslpipe.gate"  # set last: a version without it did not finish registering


class Registry:
    def __init__(self, tracking: MlflowTracking):
        self.tracking = tracking
        self.client = tracking.client()
        self.name = tracking.model_name

    def exists(self) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException:
            return False

    def ensure(self) -> None:
        from mlflow.exceptions import MlflowException

        if not self.exists():
            try:
                self.client.create_registered_model(
                    self.name, description="Self-supervised image encoders from the sslpipe Dagster graph. Alias "
                                           "`champion`: the one in use; `challenger`: the latest registered.")
            except MlflowException:  # another process sharing the store created it a moment ago
                if not self.exists():
                    raise

    def alias(self, alias: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None

    def version_for(self, run_key: str):
        if not self.exists():
            return None
        found = self.client.search_model_versions(f"name = '{self.name}' and tags.`{RUN_KEY_TAG}` = '{run_key}'")
        return max(found, key=lambda v: int(v.version)) if found else None

    def move_alias(self, alias: str, version: str, reason: str, dagster_run_id: str) -> dict:
        current = self.alias(alias)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "alias": alias,
                  "from_version": str(current.version) if current else None, "to_version": str(version),
                  "reason": reason[:4000], "dagster_run_id": dagster_run_id}
        self.client.set_registered_model_alias(self.name, alias, str(version))
        n = len(self.history())
        self.client.set_registered_model_tag(self.name, f"{HISTORY_PREFIX}{n:04d}", json.dumps(record))
        return record

    def history(self) -> list[dict]:
        if not self.exists():
            return []
        tags = self.client.get_registered_model(self.name).tags
        return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(HISTORY_PREFIX))]

    def load_encoder(self, version: str):
        """The version's encoder (from its model artifacts' encoder.pt) -> (backbone, meta); the download is
        removed once loaded."""
        import mlflow

        from ssl_ops.train import load_encoder

        self.tracking.use()
        with tempfile.TemporaryDirectory(prefix="sslpipe-champion-") as dst, quiet_mlflow():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.name}/{version}",
                                                             dst_path=dst))
            found = sorted(local.rglob("encoder.pt"))
            if not found:
                raise FileNotFoundError(f"model version {self.name}/{version} holds no encoder.pt (in {local})")
            return load_encoder(found[0])
