"""Near-duplicate clusters by perceptual hash: within a batch, and against earlier batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssl_ops.phash import clusters, hashable, near_pairs


@dataclass
class NearDuplicates:
    max_bits: int  # Hamming distance threshold used
    clusters: list[list[str]]  # paths in the largest within-batch clusters (size >= 2), at most `keep` of them
    cluster_count: int  # all within-batch clusters
    images_in_clusters: int
    share: float  # images_in_clusters / batch size
    cross_batch: list[dict]  # [{"path", "matches": "<batch>/<path>", "bits"}] against earlier batches, the first 5*keep
    cross_batch_count: int  # all images of the batch with a near copy in an earlier batch
    flagged: bool
    flat_images: int = 0  # images too flat for a meaningful pHash, left out of the search


def near_duplicates(paths: list[str], hashes: np.ndarray, max_bits: int, max_share: float,
                    ref_names: list[str] | None = None, ref_hashes: np.ndarray | None = None,
                    keep: int = 20, contrast: np.ndarray | None = None,
                    ref_contrast: np.ndarray | None = None) -> NearDuplicates:
    """contrast / ref_contrast: per-image luminance std; flat images are left out (see ssl_ops.phash.FLAT_CONTRAST)."""
    n = len(hashes)
    use = np.nonzero(hashable(contrast) if contrast is not None else np.ones(n, bool))[0]
    h = np.asarray(hashes, np.uint64)[use]
    pairs = near_pairs(h, max_bits) if len(h) > 1 else np.zeros((0, 3), np.int64)
    groups = [use[g] for g in clusters(len(h), pairs)]
    in_clusters = int(sum(len(g) for g in groups))
    cross = []
    if ref_hashes is not None and len(ref_hashes) and len(h):
        r_use = np.nonzero(hashable(ref_contrast) if ref_contrast is not None else np.ones(len(ref_hashes), bool))[0]
        qp = near_pairs(np.asarray(ref_hashes, np.uint64)[r_use], max_bits, query=h)
        best: dict[int, tuple[int, int]] = {}
        for q, i, d in qp:
            q, i = int(use[q]), int(r_use[i])
            if q not in best or d < best[q][1]:
                best[q] = (i, int(d))
        cross = [{"path": paths[q], "matches": ref_names[i], "bits": d} for q, (i, d) in sorted(best.items())]
    share = in_clusters / max(n, 1)
    return NearDuplicates(max_bits, [[paths[i] for i in g] for g in groups[:keep]], len(groups), in_clusters, share,
                          cross[:keep * 5], len(cross), bool(share > max_share), flat_images=n - len(use))
