"""Near-duplicate clusters by perceptual hash: within a batch, and against earlier batches.

A pHash pair (within `max_bits`) counts only when the pixels confirm it, given a `matcher`
(ssl_ops.pixel_match: mean pixel difference at or below the contract's bias.near_duplicate_max_pixel_difference,
correlation at or above its bias.near_duplicate_min_correlation). Pairs the pixels reject (different pictures
with the same layout, e.g. aligned faces of two people) join no cluster and are not near copies: they are
listed apart, in `not_confirmed`, with their mean pixel difference and correlation. The matcher's sources: "batch" (sample id, path in the
batch) and "reference" (sample id, "<batch>/<path>").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssl_ops.phash import clusters, hashable, near_pairs
from ssl_ops.pixel_match import PixelMatcher


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
    # pHash pairs the pixels rejected: [{"path", "matches", "bits", "difference", "raw", "correlation"}] ("matches": a path in
    # the batch, or "<batch>/<path>" of an earlier batch), the first 5*keep, closest first
    not_confirmed: list[dict] = field(default_factory=list)
    not_confirmed_count: int = 0
    max_pixel_difference: float | None = None  # the confirmation thresholds (0..255; -1..1); None: pHash alone decided
    min_correlation: float | None = None


def near_duplicates(paths: list[str], hashes: np.ndarray, max_bits: int, max_share: float,
                    ref_names: list[str] | None = None, ref_hashes: np.ndarray | None = None,
                    keep: int = 20, contrast: np.ndarray | None = None,
                    ref_contrast: np.ndarray | None = None, matcher: PixelMatcher | None = None,
                    ids: list[str] | None = None, ref_ids: list[str] | None = None) -> NearDuplicates:
    """contrast / ref_contrast: per-image luminance std; flat images are left out (see ssl_ops.phash.FLAT_CONTRAST).
    matcher, ids, ref_ids: confirm pHash pairs by the pixels (the images' sample ids name them to the sources)."""
    n = len(hashes)
    ids = ids if ids is not None else [""] * n
    use = np.nonzero(hashable(contrast) if contrast is not None else np.ones(n, bool))[0]
    h = np.asarray(hashes, np.uint64)[use]
    pairs = near_pairs(h, max_bits) if len(h) > 1 else np.zeros((0, 3), np.int64)
    rejected = []
    if matcher is not None and len(pairs):
        ok = np.ones(len(pairs), bool)
        for k, (i, j, d) in enumerate(pairs):
            a, b = int(use[i]), int(use[j])
            v = matcher.verdict(("batch", ids[a], paths[a]), ("batch", ids[b], paths[b]))
            if not v.confirmed:
                ok[k] = False
                rejected.append({"path": paths[a], "matches": paths[b], "bits": int(d), **v.fields()})
        pairs = pairs[ok]
    groups = [use[g] for g in clusters(len(h), pairs)]
    in_clusters = int(sum(len(g) for g in groups))
    cross = []
    if ref_hashes is not None and len(ref_hashes) and len(h):
        ref_ids = ref_ids if ref_ids is not None else [""] * len(ref_hashes)
        r_use = np.nonzero(hashable(ref_contrast) if ref_contrast is not None else np.ones(len(ref_hashes), bool))[0]
        qp = near_pairs(np.asarray(ref_hashes, np.uint64)[r_use], max_bits, query=h)
        cands: dict[int, list[tuple[int, int]]] = {}
        for q, i, d in qp:
            cands.setdefault(int(use[q]), []).append((int(d), int(r_use[i])))
        for q in sorted(cands):
            miss = None
            for d, i in sorted(cands[q]):
                v = (matcher.verdict(("batch", ids[q], paths[q]), ("reference", ref_ids[i], ref_names[i]))
                     if matcher is not None else None)
                if v is None or v.confirmed:
                    cross.append({"path": paths[q], "matches": ref_names[i], "bits": d})
                    break
                if miss is None or v.difference < miss["difference"]:
                    miss = {"path": paths[q], "matches": ref_names[i], "bits": d, **v.fields()}
            else:
                rejected.append(miss)
    rejected.sort(key=lambda m: (m["difference"], m["path"], m["matches"]))
    share = in_clusters / max(n, 1)
    return NearDuplicates(max_bits, [[paths[i] for i in g] for g in groups[:keep]], len(groups), in_clusters, share,
                          cross[:keep * 5], len(cross), bool(share > max_share), flat_images=n - len(use),
                          not_confirmed=rejected[:keep * 5], not_confirmed_count=len(rejected),
                          max_pixel_difference=matcher.max_difference if matcher is not None else None,
                          min_correlation=matcher.min_correlation if matcher is not None else None)
