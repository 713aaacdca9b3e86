"""Leakage between the evaluation set and training shards: the same bytes, or a near-identical image.

An eval image is leaked when its sha256 equals a training sample's, or its perceptual hash lies
within `max_bits` of one (re-encoded or resized copies). Flat images (ssl_ops.phash.FLAT_CONTRAST) are
compared by sha256 only: their hashes are all alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ssl_ops.phash import hashable, near_pairs


@dataclass
class Leakage:
    eval_images: int
    train_images: int
    max_bits: int
    exact: list[dict]  # [{"eval": path, "train": "<batch>/<path>"}]
    near: list[dict]  # [{"eval": path, "train": "<batch>/<path>", "bits": d}]

    @property
    def passed(self) -> bool:
        return not self.exact and not self.near

    def summary(self) -> str:
        if self.passed:
            return (f"no leakage: none of {self.eval_images} eval images is in the {self.train_images} training "
                    f"samples (sha256, or pHash within {self.max_bits} bits)")
        ex = ", ".join(f"{m['eval']} = {m['train']}" for m in (self.exact + self.near)[:5])
        return f"{len(self.exact)} exact and {len(self.near)} near copies of eval images among training images, e.g. {ex}"


def find_leaks(eval_manifest: pa.Table, train: pa.Table, max_bits: int) -> Leakage:
    """train: the manifests of the sharded training batches (columns sample_id, batch, path, phash)."""
    e_ids = eval_manifest.column("sample_id").to_pylist()
    e_paths = eval_manifest.column("path").to_pylist()
    t_names = [f"{b}/{p}" for b, p in zip(train.column("batch").to_pylist(), train.column("path").to_pylist())]
    by_id = dict(zip(train.column("sample_id").to_pylist(), t_names))
    exact = [{"eval": p, "train": by_id[i]} for i, p in zip(e_ids, e_paths) if i in by_id]
    exact_paths = {m["eval"] for m in exact}
    near = []
    if train.num_rows and eval_manifest.num_rows:
        e_use, t_use = _hashable_rows(eval_manifest), _hashable_rows(train)
        pairs = near_pairs(train.column("phash").to_numpy()[t_use], max_bits,
                           query=eval_manifest.column("phash").to_numpy()[e_use])
        best: dict[int, tuple[int, int]] = {}
        for q, i, d in pairs:
            q, i = int(e_use[q]), int(t_use[i])
            if e_paths[q] not in exact_paths and (q not in best or d < best[q][1]):
                best[q] = (i, int(d))
        near = [{"eval": e_paths[q], "train": t_names[i], "bits": d} for q, (i, d) in sorted(best.items())]
    return Leakage(eval_manifest.num_rows, train.num_rows, max_bits, exact, near)


def _hashable_rows(t: pa.Table):
    """Indices of rows whose pHash is meaningful (flat images excluded; all rows without a contrast column)."""
    if "contrast" not in t.column_names:
        return np.arange(t.num_rows)
    return np.nonzero(hashable(t.column("contrast").to_numpy()))[0]


def empty_train_table() -> pa.Table:
    return pa.table({"sample_id": pa.array([], pa.string()), "batch": pa.array([], pa.string()),
                     "path": pa.array([], pa.string()), "phash": pa.array([], pa.uint64()),
                     "contrast": pa.array([], pa.float32())})




def copies_of_eval(eval_manifest: pa.Table, train: pa.Table, max_bits: int) -> list[dict]:
    """Every training row that is a copy of some eval image: [{"sample_id", "path", "reason", "matches", "bits"}].

    The other direction from find_leaks (which reports each eval image once): here each training image
    appears once, with its closest eval image, so that all copies can be left out of training.
    """
    if not train.num_rows or not eval_manifest.num_rows:
        return []
    e_by_id = dict(zip(eval_manifest.column("sample_id").to_pylist(), eval_manifest.column("path").to_pylist()))
    e_paths = eval_manifest.column("path").to_pylist()
    t_ids, t_paths = train.column("sample_id").to_pylist(), train.column("path").to_pylist()
    best: dict[int, tuple[str, int]] = {i: (e_by_id[s], 0) for i, s in enumerate(t_ids) if s in e_by_id}
    exact = set(best)
    e_use, t_use = _hashable_rows(eval_manifest), _hashable_rows(train)
    for t, e, d in near_pairs(eval_manifest.column("phash").to_numpy()[e_use], max_bits,
                              query=train.column("phash").to_numpy()[t_use]):
        t, e = int(t_use[t]), int(e_use[e])
        if t not in exact and (t not in best or d < best[t][1]):
            best[t] = (e_paths[e], int(d))
    return [{"sample_id": t_ids[i], "path": t_paths[i], "reason": "eval_copy_exact" if i in exact else "eval_copy_near",
             "matches": m, "bits": d} for i, (m, d) in sorted(best.items())]
