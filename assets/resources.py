"""Resources: where the pipeline's state lives. One small interface, configured per environment in pipelines/.

local:      `PipelineHome(root=...)`: landing, eval set, manifests, reports and shards are folders of the home.
production: `PipelineHome(root=..., remote="s3://bucket/prefix", storage_options={endpoint_url: ...})`: the home
            is this process's working copy; landing batches and the eval set are read from the prefix
            (landing/<batch>/, eval/), and what the assets write is published to it (manifests/<batch>/,
            reports/<batch>/, shards/<batch>/ with index.json last) for every other consumer (ssl_ops.storage).
Tests use the same class over fsspec's in-memory filesystem (remote="memory://...") or a local S3 server.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa

from ssl_ops.home import EVAL_BATCH, Home
from ssl_ops.manifest import read_manifest

PUBLISHED = ("manifests", "reports", "shards")  # the home's per-batch folders that go to the prefix
MARKER = {"shards": "index.json"}  # published last: readers trust what it lists


class PipelineHome(dg.ConfigurableResource):
    """The SSLPIPE_HOME layout (ssl_ops.home.Home): landing, eval, manifests, shards, reports."""

    root: str  # the home folder (SSLPIPE_HOME)
    landing: str | None = None  # landing folder; default <root>/landing (production: the local copy of the prefix's)
    eval_dir: str | None = None  # labeled eval set; default <root>/eval (production: the local copy of the prefix's)
    workers: int = 0  # processes for ingestion; 0 = all cores
    remote: str | None = None  # production: the object-storage prefix, e.g. s3://bucket/sslpipe
    storage_options: dict = {}  # fsspec options for it, non-secret (endpoint_url); credentials: AWS_* variables

    def paths(self) -> Home:
        return Home.resolve(self.root, self.landing, self.eval_dir)

    def store(self):
        """The object store of the prefix, or None (local)."""
        if not self.remote:
            return None
        from ssl_ops.storage import ObjectStore

        return ObjectStore(self.remote, dict(self.storage_options))

    @property
    def landing_label(self) -> str:
        """Where batches land, for messages: the prefix's landing/ or the local folder."""
        return f"{self.remote.rstrip('/')}/landing" if self.remote else str(self.paths().landing)

    def stage_batch(self, batch: str, log=None) -> Path:
        """The batch's local folder; with a prefix, first made to hold what is under landing/<batch>/ there."""
        h = self.paths()
        store = self.store()
        if store is not None:
            n = store.pull(f"landing/{batch}", h.batch_dir(batch), prune=_inside(h.batch_dir(batch), h.root))
            if log:
                log.info(f"{batch}: {n} file(s) downloaded from {store.uri(f'landing/{batch}')}")
        return h.batch_dir(batch)

    def stage_eval(self, log=None) -> Path:
        h = self.paths()
        store = self.store()
        if store is not None and store.files("eval"):  # none there: the local eval folder, as configured
            n = store.pull("eval", h.eval_dir, prune=_inside(h.eval_dir, h.root))
            if log:
                log.info(f"eval: {n} file(s) downloaded from {store.uri('eval')}")
        return h.eval_dir

    def publish(self, kind: str, batch: str, log=None) -> str | None:
        """With a prefix: upload the home's <kind>/<batch>/ folder to it (the marker last); -> its URL there."""
        store = self.store()
        if store is None:
            return None
        local = self.paths().root / kind / batch
        if not local.is_dir():
            return None
        n = store.publish(local, f"{kind}/{batch}", last=MARKER.get(kind))
        if log:
            log.info(f"{batch}: {kind} published to {store.uri(f'{kind}/{batch}')} ({n} file(s))")
        return store.uri(f"{kind}/{batch}")

    def shard_index_uri(self, batch: str) -> str:
        """Where a consumer elsewhere reads the batch's shard index: the prefix's copy, or the local file."""
        store = self.store()
        return store.uri(f"shards/{batch}/index.json") if store else str(self.paths().shard_index_path(batch))

    def manifests(self, batches: list[str], columns: list[str] | None = None) -> pa.Table | None:
        """The accepted manifests of those batches that have one, concatenated (None if none)."""
        h = self.paths()
        tables = [read_manifest(h.accepted_path(b), columns) for b in batches if h.accepted_path(b).is_file()]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")


def _inside(p: Path, root: Path) -> bool:
    """A copy the home owns (pruned to match the prefix), rather than a user's folder configured elsewhere."""
    return p.resolve().is_relative_to(root.resolve())


__all__ = ["PipelineHome", "PUBLISHED", "EVAL_BATCH"]
