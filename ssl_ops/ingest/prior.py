"""The exact-duplicate check against earlier batches, one earlier manifest at a time.

    lookup = PriorManifests({"b1": Path(".../manifests/b1/accepted.parquet"), ...})
    lookup(["<sha256>", ...])   # -> {sha256: "b1/<path>"} for the ids an earlier batch accepted

Memory stays flat as batches accumulate: only the sample_id and path columns of one earlier manifest are
read at a time, filtered to the ids asked for, instead of a dict of every id ever accepted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class PriorManifests:
    def __init__(self, manifests: dict[str, Path]):
        self.manifests = dict(manifests)  # batch -> accepted.parquet, oldest first

    def __call__(self, ids: list[str]) -> dict[str, str]:
        if not ids or not self.manifests:
            return {}
        want = pa.array(sorted(set(ids)), type=pa.string())
        found: dict[str, str] = {}
        for batch, path in self.manifests.items():
            if not Path(path).is_file():
                continue
            t = pq.read_table(path, columns=["sample_id", "path"])
            t = t.filter(pc.is_in(t.column("sample_id"), value_set=want))
            for sid, rel in zip(t.column("sample_id").to_pylist(), t.column("path").to_pylist()):
                found.setdefault(sid, f"{batch}/{rel}")  # the earliest batch that has it
        return found
