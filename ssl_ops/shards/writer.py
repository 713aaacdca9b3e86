"""Write a batch's accepted samples to WebDataset tar shards.

    index = shard_batch(manifest, Path("landing/b1"), Path("shards/b1"), ShardConfig(seed=0))

Each sample is `<sample_id>.<ext>` (the original encoded bytes, never re-encoded) and
`<sample_id>.json` (batch, path, size, mode, format and sidecar attributes).
- Deterministic: order is a seeded permutation of the samples sorted by id; every tar member gets
  a fixed mtime, owner and mode, so the same input gives byte-identical shards.
- Atomic: every shard is written under a temporary name; only when all are whole are they renamed
  into place, then `index.json` is replaced the same way. A failure midway removes the temporaries
  and leaves the previous shards and index as they were.
- Indexed: index.json lists per shard its samples, bytes and sha256; its `digest` is the data
  version. When the index already on disk was built from the same input (`input_digest`) and its
  shards are intact (size, sha256, and an index that is self-consistent), nothing is rewritten; a damaged
  shard or a hand-edited index is rebuilt from the landing files.
- One writer per folder: the batch's shard folder is locked (ssl_ops.locks, shards/.<batch>.lock) while it
  is written or checked for reuse. Holding
  the lock, the writer first removes hidden `.*.tmp` files there: they can only be left by a writer that
  was killed or ran out of disk, and would otherwise stay forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ssl_ops.locks import file_lock
from ssl_ops.ingest.links import link_outside_batch
from ssl_ops.manifest import ATTR_PREFIX
from ssl_ops.shards.tar import ShardTar
from ssl_ops.shards.verify import file_sha256 as _file_sha256
from ssl_ops.shards.verify import index_problems

INDEX_VERSION = 1
SHARD_PATTERN = "shard-%06d.tar"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff",
              "MPO": "jpg", "PPM": "ppm", "TGA": "tga", "ICO": "ico"}


@dataclass(frozen=True)
class ShardConfig:
    seed: int = 0  # seed of the sample order inside a batch's shards
    max_samples: int = 2048  # samples per shard (the last may hold fewer)
    max_bytes: int = 256 * 2**20  # bytes per shard before starting the next one


@dataclass
class ShardIndex:
    batch: str
    shards: list[dict]  # [{"name", "samples", "bytes", "sha256"}]
    samples: int
    input_digest: str  # sha256 of what was sharded (sample ids, attributes, config)
    digest: str  # sha256 of the shard list: the asset's data version
    config: dict
    excluded: list = field(default_factory=list)  # [{"sample_id", "path", "reason", ...}] left out of the shards
    reused: bool = False  # True when the shards on disk were kept as they were

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("reused")
        return json.dumps({"version": INDEX_VERSION, **d}, indent=2, sort_keys=True)


class ShardInputError(RuntimeError):
    """A landing file no longer matches the manifest it was accepted into."""


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def load_index(path: Path) -> ShardIndex | None:
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    d.pop("version", None)
    return ShardIndex(**d)


_META_KEYS = ("sample_id", "batch", "path", "format", "width", "height", "mode")
_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)  # one encoder: json.dumps(**kw) builds one per call


def sample_meta(rows: dict, i: int, attrs: list[str]) -> bytes:
    """The `.json` member of sample i of a manifest's columns (`rows`: column -> list)."""
    meta = {k: rows[k][i] for k in _META_KEYS}
    meta["attributes"] = {a: rows[ATTR_PREFIX + a][i] for a in attrs}
    return _JSON.encode(meta).encode()


class _HashingFile:
    """A write-only file that also feeds a sha256 and counts bytes (no second read of the shard)."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b) -> int:
        if self.f.closed:  # abandoned after an error: the tar stream's late flush goes nowhere
            return len(b)
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def flush(self):
        if not self.f.closed:
            self.f.flush()

    def close(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


def _intact(index: ShardIndex, out_dir: Path) -> bool:
    """The index is self-consistent (digest, sample counts) and every shard it names is on disk with its size
    and sha256 (a damaged shard, or an edited index, is rewritten)."""
    if index_problems({"batch": index.batch, "shards": index.shards, "samples": index.samples, "digest": index.digest}):
        return False
    return all((out_dir / s["name"]).is_file() and (out_dir / s["name"]).stat().st_size == s["bytes"]
               and _file_sha256(out_dir / s["name"]) == s["sha256"] for s in index.shards)


def lock_path(out_dir: Path) -> Path:
    """The lock of a batch's shard folder: beside it (shards/.<batch>.lock), so the folder holds only shards."""
    return out_dir.parent / f".{out_dir.name}.lock"


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove the hidden `.*.tmp` files of a dead writer. Call only while holding the folder's lock."""
    gone = []
    for p in out_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def read_landing_file(batch_dir: Path, rel: str, size: int, links: str = "inside") -> bytes:
    """The bytes of an accepted landing file, re-checked now: it may have changed since ingestion. A link that
    now leads outside the batch folder (under the `inside` link policy) or to something that is not a regular
    file (/dev/zero, a FIFO) is refused unread, and at most size + 1 bytes are read, so a file that grew is
    never read whole. Raises ShardInputError naming the file."""
    path = batch_dir / rel
    redo = f"; re-materialize raw_images for the batch (sslpipe run --select raw_images,validated_images," \
           f"bias_report,image_shards --batches {batch_dir.name})"
    if links == "inside" and link_outside_batch(os.path.realpath(batch_dir), str(path)) is not None:
        raise ShardInputError(f"{path} is now a link that leads outside the batch folder; not read{redo}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ShardInputError(f"{path} cannot be read any more ({e.strerror}){redo}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ShardInputError(f"{path} is no longer a regular file; not read{redo}")
        data = f.read(size + 1)
    if len(data) != size:
        raise ShardInputError(f"{path} changed after ingestion (its size differs from the manifest){redo}")
    return data


def shard_batch(manifest: pa.Table, batch_dir: Path, out_dir: Path, config: ShardConfig = ShardConfig(),
                progress: Callable[[int, int], None] | None = None, exclude: list[dict] | None = None,
                links: str = "inside") -> ShardIndex:
    """Shard the accepted samples of one batch (a manifest table) from their landing files.

    exclude: samples to leave out, each {"sample_id", "reason", ...}; they are listed in the index.
    links: the contract's landing policy for symbolic links (ssl_ops.ingest.links), re-applied as files are read.
    """
    exclude = sorted(exclude or [], key=lambda e: e["sample_id"])
    if exclude:
        drop = pa.array([e["sample_id"] for e in exclude])
        manifest = manifest.filter(pc.invert(pc.is_in(manifest.column("sample_id"), value_set=drop)))
    attrs = sorted(n[len(ATTR_PREFIX):] for n in manifest.column_names if n.startswith(ATTR_PREFIX))
    cols = ["sample_id", "batch", "path", "bytes", "format", "width", "height", "mode"] + [ATTR_PREFIX + a for a in attrs]
    rows = manifest.select(cols).to_pydict()
    n = len(rows["sample_id"])
    batches = set(rows["batch"])
    if len(batches) > 1:
        raise ValueError(f"a manifest for one batch was expected, got batches {sorted(batches)}")
    batch = next(iter(batches)) if batches else batch_dir.name
    order = np.argsort(np.array(rows["sample_id"], dtype=object), kind="stable")
    order = order[np.random.default_rng(config.seed).permutation(n)] if n else order
    metas = [sample_meta(rows, int(i), attrs) for i in order]
    h = hashlib.sha256(_JSON.encode({"version": INDEX_VERSION, "config": asdict(config), "excluded": exclude}).encode())
    for m in metas:
        h.update(m)
        h.update(b"\n")
    input_digest = h.hexdigest()

    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path(out_dir), what=f"writing the shards of batch {batch!r}"):
        remove_stale_temporaries(out_dir)
        return _write(batch_dir, out_dir, batch, rows, order, metas, n, input_digest, config, exclude, progress, links)


def _load_valid(path: Path) -> ShardIndex | None:
    try:
        return load_index(path)
    except (ValueError, TypeError):  # unparsable or hand-edited beyond recognition: rewrite
        return None


def _write(batch_dir: Path, out_dir: Path, batch: str, rows: dict, order, metas: list[bytes], n: int, input_digest: str,
           config: ShardConfig, exclude: list[dict], progress, links: str = "inside") -> ShardIndex:
    index_path = out_dir / "index.json"
    old = _load_valid(index_path)
    if (old is not None and old.input_digest == input_digest and old.excluded == json.loads(_JSON.encode(exclude))
            and old.config == asdict(config) and _intact(old, out_dir)):
        old.reused = True
        return old

    shards: list[dict] = []
    staged: list = []  # temporary paths, renamed into place only when every shard is whole
    writer = hf = None
    count = 0
    size = 0

    def close_shard():
        nonlocal writer, hf
        writer.close()
        hf.close()
        shards.append({"name": SHARD_PATTERN % len(shards), "samples": count, "bytes": hf.n, "sha256": hf.h.hexdigest()})
        writer = hf = None

    try:
        for done, (i, meta) in enumerate(zip(order, metas)):
            i = int(i)
            if writer is None:
                staged.append(out_dir / f".{SHARD_PATTERN % len(shards)}.{os.getpid()}.tmp")
                hf = _HashingFile(staged[-1])
                writer = ShardTar(hf)
                count = size = 0
            sid, rel = rows["sample_id"][i], rows["path"][i]
            data = read_landing_file(batch_dir, rel, rows["bytes"][i], links)
            if hashlib.sha256(data).hexdigest() != sid:
                raise ShardInputError(f"{batch_dir / rel} changed after ingestion (sha256 differs from the manifest); "
                                      f"re-materialize raw_images for batch {batch!r}")
            ext = EXTENSIONS.get(rows["format"][i], rows["format"][i].lower())
            size += writer.write(sid, {ext: data, "json": meta})
            count += 1
            if count >= config.max_samples or size >= config.max_bytes:
                close_shard()
            if progress and (done + 1) % 5000 == 0:
                progress(done + 1, n)
        if writer is not None:
            close_shard()
    except BaseException:
        if hf is not None:
            hf.f.close()
        for p in staged:
            p.unlink(missing_ok=True)
        raise
    for tmp, s in zip(staged, shards):
        os.replace(tmp, out_dir / s["name"])

    index = ShardIndex(batch=batch, shards=shards, samples=n, input_digest=input_digest,
                       digest=_digest({"batch": batch, "shards": shards}), config=asdict(config), excluded=exclude)
    tmp_index = out_dir / f".index.json.{os.getpid()}.tmp"
    tmp_index.write_text(index.to_json())
    os.replace(tmp_index, index_path)
    keep = {s["name"] for s in shards}
    for p in out_dir.glob("shard-*.tar"):  # shards of an earlier, larger version of this batch
        if p.name not in keep:
            p.unlink()
    return index
