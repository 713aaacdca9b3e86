"""The layout of the pipeline's local state under SSLPIPE_HOME (default ./.sslpipe).

    landing/<batch>/                 input: one folder per arriving batch of unlabeled images
    eval/                            the labeled evaluation set (class folders or labels.csv)
    manifests/<batch>/accepted.parquet, quarantine.parquet
    shards/<batch>/shard-NNNNNN.tar, index.json
    reports/<batch>/                 Great Expectations data docs, bias report
    dagster/                         the Dagster instance (DAGSTER_HOME)
    models/<key>/                    training runs: checkpoint.pt, encoder.pt, metrics.jsonl, result.json
    mlflow/                          the MLflow tracking store
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".sslpipe"
EVAL_BATCH = "eval"  # manifests/eval/ and reports/eval/ hold the eval set's tables and reports


@dataclass(frozen=True)
class Home:
    """Paths of one pipeline home. `landing` and `eval_dir` may point outside the home."""

    root: Path
    landing: Path
    eval_dir: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike | None = None, landing: str | os.PathLike | None = None,
                eval_dir: str | os.PathLike | None = None) -> "Home":
        """Home from arguments, else SSLPIPE_HOME / SSLPIPE_LANDING / SSLPIPE_EVAL, else ./.sslpipe."""
        r = Path(root or os.environ.get("SSLPIPE_HOME") or DEFAULT_HOME).expanduser().resolve()
        land = landing or os.environ.get("SSLPIPE_LANDING") or r / "landing"
        ev = eval_dir or os.environ.get("SSLPIPE_EVAL") or r / "eval"
        return cls(root=r, landing=Path(land).expanduser().resolve(), eval_dir=Path(ev).expanduser().resolve())

    def batch_dir(self, batch: str) -> Path:
        return self.landing / batch

    def manifest_dir(self, batch: str) -> Path:
        return self.root / "manifests" / batch

    def accepted_path(self, batch: str) -> Path:
        return self.manifest_dir(batch) / "accepted.parquet"

    def quarantine_path(self, batch: str) -> Path:
        return self.manifest_dir(batch) / "quarantine.parquet"

    def shard_dir(self, batch: str) -> Path:
        return self.root / "shards" / batch

    def shard_index_path(self, batch: str) -> Path:
        return self.shard_dir(batch) / "index.json"

    def report_dir(self, batch: str) -> Path:
        return self.root / "reports" / batch

    def model_dir(self, key: str) -> Path:
        return self.root / "models" / key

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    def ensure(self) -> "Home":
        for p in (self.root, self.landing, self.dagster_home, self.mlflow_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self
