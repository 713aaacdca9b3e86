"""Resources: where the pipeline's state lives. One small interface, configured per environment in pipelines/."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from ssl_ops.home import Home
from ssl_ops.manifest import read_manifest


class PipelineHome(dg.ConfigurableResource):
    """The SSLPIPE_HOME layout (ssl_ops.home.Home): landing, eval, manifests, shards, reports."""

    root: str  # the home folder (SSLPIPE_HOME)
    landing: str | None = None  # landing folder; default <root>/landing
    eval_dir: str | None = None  # labeled eval set; default <root>/eval
    workers: int = 0  # processes for ingestion; 0 = all cores

    def paths(self) -> Home:
        return Home.resolve(self.root, self.landing, self.eval_dir)

    def manifests(self, batches: list[str], columns: list[str] | None = None) -> pa.Table | None:
        """The accepted manifests of those batches that have one, concatenated (None if none)."""
        h = self.paths()
        tables = [read_manifest(h.accepted_path(b), columns) for b in batches if h.accepted_path(b).is_file()]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="permissive")
