"""Scan one batch folder: probe every file on all cores, drop exact duplicates, join sidecar attributes.

    result = scan_batch(Path("landing/2026-11-01"), "2026-11-01", ImageLimits(), prior={})

Every regular file under the folder (recursively, sidecars excluded) is either accepted or
quarantined with a reason: `result.seen == result.accepted.num_rows + result.quarantine.num_rows`.
The order of work is the sorted relative path, so the first copy of duplicate bytes is the one kept.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import stat
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa

from ssl_ops.ingest.links import LINK_POLICIES, link_outside_batch
from ssl_ops.ingest.metadata import SIDECARS, Sidecar, load_sidecar
from ssl_ops.ingest.ready import READY_MARKER

NOT_SAMPLES = SIDECARS + (READY_MARKER,)  # top-level files of a batch folder that are not images
from ssl_ops.ingest.probe import Accepted, ImageLimits, gray_array, probe_image
from ssl_ops.manifest import ATTR_PREFIX, QUARANTINE_SCHEMA, accepted_schema
from ssl_ops.phash import phash64

CHUNK = 512  # files per task sent to a worker process
PARALLEL_MIN_FILES = 2000  # below this, scanning in-process is faster than starting workers

Progress = Callable[[int, int], None]  # (files done, files total)


@dataclass
class ScanResult:
    accepted: pa.Table  # schema: ssl_ops.manifest.accepted_schema(sidecar attributes)
    quarantine: pa.Table  # schema: ssl_ops.manifest.QUARANTINE_SCHEMA
    seen: int  # files found in the batch folder (sidecars excluded)
    sidecar: str | None  # the sidecar read, if any
    files_without_metadata: list[str] = field(default_factory=list)  # accepted files with no sidecar row
    metadata_without_file: list[str] = field(default_factory=list)  # sidecar rows naming no file
    seconds: float = 0.0

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.quarantine.column("reason").to_pylist():
            counts[r] = counts.get(r, 0) + 1
        return dict(sorted(counts.items()))


def list_batch_files(batch_dir: Path, skip: tuple[str, ...] = NOT_SAMPLES) -> list[str]:
    """Relative '/'-paths of every entry under batch_dir that is not a folder, sorted; top-level sidecars excluded.

    Links to folders are listed, not followed (no cycles; they are quarantined as not_a_file). Broken links,
    FIFOs and sockets are listed too, so that every entry is accounted for. Names that are not valid UTF-8
    are kept in surrogate-escaped form so that they can be reported and quarantined.
    """
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"batch folder {batch_dir} does not exist")
    out = []
    for dirpath, dirnames, filenames in os.walk(batch_dir, followlinks=False):
        rel_dir = os.path.relpath(dirpath, batch_dir)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = sorted(d for d in dirnames if d not in links)
        for name in filenames + links:
            if rel_dir == "." and name in skip:
                continue
            out.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
    return sorted(out)


def _valid_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _probe_chunk(root: str, rels: list[str], limits: ImageLimits, links: str = "inside") -> tuple[list, list]:
    """Worker: read, hash and probe files. Returns (accepted rows, rejected rows) as tuples."""
    ok, bad, grays = [], [], []
    root_real = os.path.realpath(root)
    for rel in rels:
        if not _valid_utf8(rel):
            shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            bad.append((shown, None, None, "unreadable", "file name is not valid UTF-8; rename the file"))
            continue
        path = os.path.join(root, rel)
        if links == "inside" and link_outside_batch(root_real, path) is not None:
            bad.append((rel, None, None, "outside_batch",
                        "a symbolic link that leads outside the batch folder; it was not read. Copy the file into "
                        "the batch instead (or set the contract's batch.links: follow)"))
            continue
        try:
            mode = os.stat(path).st_mode  # follows links; never open a FIFO (it would block)
            if not stat.S_ISREG(mode):
                bad.append((rel, None, None, "not_a_file", _not_a_file(path, mode)))
                continue
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            why = "broken symbolic link" if os.path.islink(path) else f"{type(e).__name__}: {e.strerror or e}"
            bad.append((rel, None, None, "unreadable", why))
            continue
        sha = hashlib.sha256(data).hexdigest()
        r = probe_image(data, limits)
        if isinstance(r, Accepted):
            ok.append([rel, sha, len(data), r.format, r.width, r.height, r.mode])
            grays.append(r.gray)
        else:
            bad.append((rel, len(data), sha, r.reason, r.detail))
    if grays:  # statistics and hashes for the whole chunk at once
        g = gray_array(grays)
        flat = g.reshape(len(grays), -1)
        for row, m, s, h in zip(ok, flat.mean(1).tolist(), flat.std(1).tolist(), phash64(g).tolist()):
            row += [m, s, h]
    return ok, bad


def _not_a_file(path: str, mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a link to a folder: links to folders are not followed; copy the files into the batch instead"
    kind = "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device or special file"
    return f"a {kind}, not a regular file"


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, all started at once (their start-up runs in parallel).

    spawn, not fork: the caller (Dagster, a test runner) may hold threads and locks. Spawned workers
    re-import the parent's __main__ module, so entry points keep their module-level imports light.
    """
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    for _ in range(workers):
        pool.submit(_noop)
    return pool


def _noop() -> None:
    return None


def _probe_all(batch_dir: Path, rels: list[str], limits: ImageLimits, pool: ProcessPoolExecutor | None,
               progress: Progress | None, links: str = "inside") -> tuple[list, list]:
    ok, bad, done = [], [], 0
    root = str(batch_dir)
    if pool is None:
        results = (_probe_chunk(root, c, limits, links) for c in _chunks(rels, CHUNK))
    else:
        results = pool.map(_probe_chunk, *zip(*[(root, c, limits, links) for c in _chunks(rels, CHUNK)]))
    for o, b in results:
        ok.extend(o)
        bad.extend(b)
        done += len(o) + len(b)
        if progress:
            progress(done, len(rels))
    return ok, bad


def scan_batch(batch_dir: Path, batch: str, limits: ImageLimits,
               prior: dict[str, str] | Callable[[list[str]], dict[str, str]] | None = None,
               workers: int | None = None, sidecar: Sidecar | None = None,
               progress: Progress | None = None, skip: tuple[str, ...] = NOT_SAMPLES,
               require: str | None = None, links: str = "inside") -> ScanResult:
    """Scan `batch_dir` as batch `batch`.

    prior: sample_id -> "<batch>/<path>" of samples accepted in earlier batches (exact-duplicate check), or a
    lookup called once with this batch's ids that returns that mapping for those of them seen before
    (ssl_ops.ingest.prior.PriorManifests: one earlier manifest in memory at a time).
    workers: processes to use (default: all cores). sidecar: attributes to join (default: the batch's
    metadata.csv / metadata.jsonl). skip: top-level file names that are not samples (the sidecars, the _READY marker).
    require: a sidecar attribute every accepted image must have (the eval set's `label`); images without
    it are quarantined as `unlabeled` before duplicates are resolved, so a labeled copy is the one kept.
    links: the landing policy for symbolic links (LINK_POLICIES; see link_outside_batch).
    """
    if links not in LINK_POLICIES:
        raise ValueError(f"links must be one of {LINK_POLICIES}, got {links!r}")
    t0 = time.perf_counter()
    sidecar = sidecar if sidecar is not None else load_sidecar(batch_dir, links=links)
    workers = workers or os.cpu_count() or 1
    rels = list_batch_files(batch_dir, skip)
    pool = _start_pool(workers) if workers > 1 and len(rels) >= PARALLEL_MIN_FILES else None
    try:
        ok, bad = _probe_all(batch_dir, rels, limits, pool, progress, links)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    quarantine = [(batch, rel, n, sha, reason, detail, None) for rel, n, sha, reason, detail in bad]

    def attrs_of(rel: str) -> dict:
        return sidecar.attributes_of(rel)

    if require:
        missing = [r for r in ok if attrs_of(r[0]).get(require) is None]
        quarantine += [(batch, r[0], r[2], r[1], "unlabeled", f"no '{require}' for this file in {sidecar.source}", None)
                       for r in missing]
        ok = [r for r in ok if attrs_of(r[0]).get(require) is not None]
    ids = [r[1] for r in ok]
    prior = (prior(ids) if callable(prior) else {i: prior[i] for i in ids if i in prior}) if prior else {}
    kept: dict[str, str] = {}  # sha256 -> relative path of the copy kept in this batch
    rows = []
    for row in ok:  # already in sorted path order
        rel, sha = row[0], row[1]
        if sha in prior:
            quarantine.append((batch, rel, row[2], sha, "duplicate", f"same bytes as {prior[sha]}", prior[sha]))
            continue
        if sha in kept:
            first = kept[sha]
            a, b = attrs_of(first), attrs_of(rel)
            differ = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            note = "; attributes differ: " + ", ".join(f"{k}={x} (kept) vs {y}" for k, (x, y) in sorted(differ.items())) \
                if differ else ""
            quarantine.append((batch, rel, row[2], sha, "duplicate", f"same bytes as {batch}/{first}{note}",
                               f"{batch}/{first}"))
            continue
        kept[sha] = rel
        rows.append(row)

    attrs = sidecar.attributes
    keys = [sidecar.key_of(r[0]) for r in rows]
    files_without = [r[0] for r, k in zip(rows, keys) if sidecar.source and k is None]
    matched = {sidecar.key_of(r) for r in rels}
    meta_without = sorted(k for k in sidecar.rows if k not in matched)

    schema = accepted_schema(attrs)
    cols = list(zip(*rows)) if rows else [[] for _ in range(10)]
    data = {
        "sample_id": cols[1], "batch": [batch] * len(rows), "path": cols[0], "bytes": cols[2],
        "format": cols[3], "width": cols[4], "height": cols[5], "mode": cols[6], "phash": cols[9],
        "brightness": cols[7], "contrast": cols[8],
    }
    for a in attrs:
        data[ATTR_PREFIX + a] = [sidecar.rows[k].get(a) if k is not None else None for k in keys]
    accepted = pa.table({f.name: pa.array(list(data[f.name]), type=f.type) for f in schema}, schema=schema)
    quarantine.sort(key=lambda r: r[1])
    qcols = list(zip(*quarantine)) if quarantine else [[] for _ in range(7)]
    qtable = pa.table({f.name: pa.array(list(c), type=f.type) for f, c in zip(QUARANTINE_SCHEMA, qcols)},
                      schema=QUARANTINE_SCHEMA)
    return ScanResult(accepted, qtable, len(rels), sidecar.source, files_without, meta_without,
                      time.perf_counter() - t0)
