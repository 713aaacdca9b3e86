"""Leakage between the evaluation set and training shards: the same bytes, or a near-identical image.

An eval image is leaked when its sha256 equals a training sample's, or its perceptual hash lies
within `max_bits` of one (re-encoded or resized copies).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ssl_ops.phash import near_pairs


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
        pairs = near_pairs(train.column("phash").to_numpy(), max_bits,
                           query=eval_manifest.column("phash").to_numpy())
        best: dict[int, tuple[int, int]] = {}
        for q, i, d in pairs:
            if e_paths[q] not in exact_paths and (int(q) not in best or d < best[int(q)][1]):
                best[int(q)] = (int(i), int(d))
        near = [{"eval": e_paths[q], "train": t_names[i], "bits": d} for q, (i, d) in sorted(best.items())]
    return Leakage(eval_manifest.num_rows, train.num_rows, max_bits, exact, near)


def empty_train_table() -> pa.Table:
    return pa.table({"sample_id": pa.array([], pa.string()), "batch": pa.array([], pa.string()),
                     "path": pa.array([], pa.string()), "phash": pa.array([], pa.uint64())})




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
    for t, e, d in near_pairs(eval_manifest.column("phash").to_numpy(), max_bits, query=train.column("phash").to_numpy()):
        if int(t) not in exact and (int(t) not in best or d < best[int(t)][1]):
            best[int(t)] = (e_paths[e], int(d))
    return [{"sample_id": t_ids[i], "path": t_paths[i], "reason": "eval_copy_exact" if i in exact else "eval_copy_near",
             "matches": m, "bits": d} for i, (m, d) in sorted(best.items())]
