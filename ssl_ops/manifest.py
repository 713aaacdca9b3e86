"""The manifest tables and their explicit pyarrow schemas; atomic Parquet writes; digests.

accepted.parquet: one row per accepted sample, fixed columns below plus `attr_<name>` string
columns for sidecar attributes. quarantine.parquet: one row per rejected file with its reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ssl_ops.atomic import atomic_write

MANIFEST_VERSION = "1"
ATTR_PREFIX = "attr_"

ACCEPTED_FIELDS = [
    pa.field("sample_id", pa.string(), nullable=False),  # sha256 of the file's bytes, hex
    pa.field("batch", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),  # relative to the batch folder, '/'-separated
    pa.field("bytes", pa.int64(), nullable=False),
    pa.field("format", pa.string(), nullable=False),  # PIL format: JPEG, PNG, ...
    pa.field("width", pa.int32(), nullable=False),  # px
    pa.field("height", pa.int32(), nullable=False),  # px
    pa.field("mode", pa.string(), nullable=False),  # PIL mode: RGB, L, RGBA, P, CMYK, I;16, ...
    pa.field("phash", pa.uint64(), nullable=False),  # 64-bit DCT perceptual hash
    pa.field("brightness", pa.float32(), nullable=False),  # mean luminance of a 32x32 thumbnail, 0..255
    pa.field("contrast", pa.float32(), nullable=False),  # std of that luminance, 0..255
]
QUARANTINE_SCHEMA = pa.schema([
    pa.field("batch", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("bytes", pa.int64()),  # null when the file could not be read
    pa.field("sample_id", pa.string()),  # sha256 when the bytes were read
    pa.field("reason", pa.string(), nullable=False),  # a key of ssl_ops.ingest.probe.REASONS
    pa.field("detail", pa.string(), nullable=False),
    pa.field("duplicate_of", pa.string()),  # "<batch>/<path>" of the kept sample, for duplicates
], metadata={"sslpipe.manifest_version": MANIFEST_VERSION})


def accepted_schema(attributes: list[str]) -> pa.Schema:
    extra = [pa.field(ATTR_PREFIX + a, pa.string()) for a in attributes]
    return pa.schema(ACCEPTED_FIELDS + extra, metadata={"sslpipe.manifest_version": MANIFEST_VERSION})


def attribute_names(schema: pa.Schema) -> list[str]:
    return [n[len(ATTR_PREFIX):] for n in schema.names if n.startswith(ATTR_PREFIX)]


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet atomically (ssl_ops.atomic): readers see the old or the new file whole."""
    atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))


def table_digest(table: pa.Table, columns: list[str] | None = None) -> str:
    """sha256 of a table's content (rows in order), independent of Parquet encoding details."""
    h = hashlib.sha256()
    t = (table.select(columns) if columns else table).combine_chunks()
    h.update(str(t.schema.remove_metadata()).encode())
    for batch in t.to_batches(max_chunksize=65536):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as w:
            w.write_batch(batch)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def read_manifest(path: Path, columns: list[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist: materialize raw_images for that batch first")
    return pq.read_table(path, columns=columns)
