"""Leakage between the evaluation set and training shards: the same bytes, or a near-identical image.

An eval image is leaked when its sha256 equals a training sample's, or its perceptual hash lies
within `max_bits` of one (re-encoded or resized copies) and, given a `matcher`, the pixels confirm it
(ssl_ops.pixel_match: mean pixel difference at or below the contract's leakage.max_pixel_difference and
correlation at or above its leakage.min_correlation).
A pHash match that the pixels reject (different pictures with the same layout, e.g. aligned faces of two
people) is not a leak: it is listed apart, in `unconfirmed`, with its mean pixel difference. Flat images
(ssl_ops.phash.FLAT_CONTRAST) are compared by sha256 only: their hashes are all alike.

The matcher names images by source: "eval" (sample id, eval manifest path) and "train" (sample id,
"<batch>/<path>").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ssl_ops.phash import hashable, near_pairs
from ssl_ops.pixel_match import PixelMatcher


@dataclass
class Leakage:
    eval_images: int
    train_images: int
    max_bits: int
    exact: list[dict]  # [{"eval": path, "train": "<batch>/<path>"}]
    near: list[dict]  # [{"eval": path, "train": "<batch>/<path>", "bits": d, "difference": mean pixel diff | None}]
    # pHash matches the pixels rejected (not leaks): [{"eval", "train", "bits", "difference", "raw", "correlation"}], the closest
    # candidate of each such eval image
    unconfirmed: list[dict] = field(default_factory=list)
    max_pixel_difference: float | None = None  # the confirmation thresholds; None: pHash alone decided
    min_correlation: float | None = None

    @property
    def passed(self) -> bool:
        return not self.exact and not self.near

    def _how(self) -> str:
        px = (f" confirmed by the pixels: mean pixel difference <= {self.max_pixel_difference:g} and correlation >= "
              f"{self.min_correlation:g}" if self.max_pixel_difference is not None else "")
        return f"sha256, or pHash within {self.max_bits} bits{px}"

    def summary(self) -> str:
        """Plain text; names come from the data: escape where shown (ssl_ops.escape.terminal)."""
        rejected = ""
        if self.unconfirmed:
            ds = [m["difference"] for m in self.unconfirmed]
            rejected = (f"; {len(self.unconfirmed)} pHash match(es) not confirmed (mean pixel difference "
                        f"{min(ds):.1f}..{max(ds):.1f} of 255): different images, not leaks, e.g. "
                        f"{self.unconfirmed[0]['eval']} ~ {self.unconfirmed[0]['train']}")
        if self.passed:
            return (f"no leakage: none of {self.eval_images} eval images is in the {self.train_images} training "
                    f"samples ({self._how()}){rejected}")
        ex = ", ".join(f"{m['eval']} = {m['train']}" for m in (self.exact + self.near)[:5])
        return (f"{len(self.exact)} exact and {len(self.near)} near copies of eval images among training images "
                f"({self._how()}), e.g. {ex}{rejected}")


def find_leaks(eval_manifest: pa.Table, train: pa.Table, max_bits: int,
               matcher: PixelMatcher | None = None) -> Leakage:
    """train: the manifests of the sharded training batches (columns sample_id, batch, path, phash).
    matcher: confirms pHash matches by the pixels (sources "eval" and "train"); None: pHash alone decides."""
    e_ids = eval_manifest.column("sample_id").to_pylist()
    e_paths = eval_manifest.column("path").to_pylist()
    t_ids = train.column("sample_id").to_pylist()
    t_names = [f"{b}/{p}" for b, p in zip(train.column("batch").to_pylist(), train.column("path").to_pylist())]
    by_id = dict(zip(t_ids, t_names))
    exact = [{"eval": p, "train": by_id[i]} for i, p in zip(e_ids, e_paths) if i in by_id]
    exact_paths = {m["eval"] for m in exact}
    near, unconfirmed = [], []
    if train.num_rows and eval_manifest.num_rows:
        e_use, t_use = _hashable_rows(eval_manifest), _hashable_rows(train)
        pairs = near_pairs(train.column("phash").to_numpy()[t_use], max_bits,
                           query=eval_manifest.column("phash").to_numpy()[e_use])
        cands: dict[int, list[tuple[int, int]]] = {}
        for q, i, d in pairs:
            q = int(e_use[q])
            if e_paths[q] not in exact_paths:
                cands.setdefault(q, []).append((int(d), int(t_use[i])))
        for q in sorted(cands):
            hit, miss = _closest_confirmed(sorted(cands[q]), matcher, ("eval", e_ids[q], e_paths[q]),
                                           lambda i: ("train", t_ids[i], t_names[i]))
            if hit is not None:
                (d, i), v = hit
                near.append({"eval": e_paths[q], "train": t_names[i], "bits": d, **(v.fields() if v is not None else {})})
            elif miss is not None:
                (d, i), v = miss
                unconfirmed.append({"eval": e_paths[q], "train": t_names[i], "bits": d, **v.fields()})
    return Leakage(eval_manifest.num_rows, train.num_rows, max_bits, exact, near, unconfirmed,
                   matcher.max_difference if matcher is not None else None,
                   matcher.min_correlation if matcher is not None else None)


def _closest_confirmed(cands: list[tuple[int, int]], matcher: PixelMatcher | None, key, other):
    """cands: (bits, index) sorted, closest first. -> (confirmed, closest rejected): each ((bits, index), Verdict)
    or None. Without a matcher the closest candidate is confirmed (pHash alone)."""
    if matcher is None:
        return (cands[0], None), None
    miss = None
    for c in cands:
        v = matcher.verdict(key, other(c[1]))
        if v.confirmed:
            return (c, v), None
        if miss is None or v.difference < miss[1].difference:
            miss = (c, v)
    return None, miss


def _hashable_rows(t: pa.Table):
    """Indices of rows whose pHash is meaningful (flat images excluded; all rows without a contrast column)."""
    if "contrast" not in t.column_names:
        return np.arange(t.num_rows)
    return np.nonzero(hashable(t.column("contrast").to_numpy()))[0]


def empty_train_table() -> pa.Table:
    return pa.table({"sample_id": pa.array([], pa.string()), "batch": pa.array([], pa.string()),
                     "path": pa.array([], pa.string()), "phash": pa.array([], pa.uint64()),
                     "contrast": pa.array([], pa.float32())})


def copies_of_eval(eval_manifest: pa.Table, train: pa.Table, max_bits: int, matcher: PixelMatcher | None = None,
                   unconfirmed: list | None = None) -> list[dict]:
    """Every training row that is a copy of some eval image: [{"sample_id", "path", "reason", "matches", "bits"}]
    (and "difference", "raw", "correlation" when a matcher confirmed it).

    The other direction from find_leaks (which reports each eval image once): here each training image
    appears once, with its closest eval image, so that all copies can be left out of training. matcher:
    sources "eval" (sample id, eval path) and "train" (sample id, "<batch>/<path>"); pHash matches it rejects
    are not copies and are appended to `unconfirmed` (when given) as {"sample_id", "path", "matches", "bits",
    "difference", "raw", "correlation"}.
    """
    if not train.num_rows or not eval_manifest.num_rows:
        return []
    e_ids, e_paths = eval_manifest.column("sample_id").to_pylist(), eval_manifest.column("path").to_pylist()
    e_by_id = dict(zip(e_ids, e_paths))
    t_ids, t_paths = train.column("sample_id").to_pylist(), train.column("path").to_pylist()
    t_names = [f"{b}/{p}" for b, p in zip(train.column("batch").to_pylist(), t_paths)]
    best: dict[int, dict] = {i: {"matches": e_by_id[s], "bits": 0} for i, s in enumerate(t_ids) if s in e_by_id}
    exact = set(best)
    e_use, t_use = _hashable_rows(eval_manifest), _hashable_rows(train)
    cands: dict[int, list[tuple[int, int]]] = {}
    for t, e, d in near_pairs(eval_manifest.column("phash").to_numpy()[e_use], max_bits,
                              query=train.column("phash").to_numpy()[t_use]):
        t = int(t_use[t])
        if t not in exact:
            cands.setdefault(t, []).append((int(d), int(e_use[e])))
    for t in sorted(cands):
        hit, miss = _closest_confirmed(sorted(cands[t]), matcher, ("train", t_ids[t], t_names[t]),
                                       lambda e: ("eval", e_ids[e], e_paths[e]))
        if hit is not None:
            (d, e), v = hit
            best[t] = {"matches": e_paths[e], "bits": d, **(v.fields() if v is not None else {})}
        elif miss is not None and unconfirmed is not None:
            (d, e), v = miss
            unconfirmed.append({"sample_id": t_ids[t], "path": t_paths[t], "matches": e_paths[e], "bits": d,
                                **v.fields()})
    return [{"sample_id": t_ids[i], "path": t_paths[i], "reason": "eval_copy_exact" if i in exact else "eval_copy_near",
             **m} for i, m in sorted(best.items())]
