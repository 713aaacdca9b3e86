"""64-bit perceptual hashes (DCT pHash) and fast search for pairs within a Hamming distance.

pHash: luminance thumbnail [32, 32] -> 2-D DCT-II -> the 8x8 lowest frequencies -> one bit each:
above the median of those 64 coefficients (DC excluded from the median). Near-identical images
(re-encoded, resized, slightly recoloured) get hashes a few bits apart.
"""

from __future__ import annotations

import numpy as np

_N = 32
# Std of the 32x32 luminance (0..255) below which an image is flat (blank frames, solid fills): all its AC
# coefficients are ~0, so its hash is the same for every flat image and says nothing. Such images are left
# out of near-duplicate and near-copy searches (exact copies are still found by sha256).
FLAT_CONTRAST = 2.0


def hashable(contrast) -> np.ndarray:
    """Mask of rows whose pHash is meaningful (not flat)."""
    return np.asarray(contrast, dtype=np.float64) >= FLAT_CONTRAST


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


_D8 = _dct_matrix(_N)[:8].astype(np.float64)  # [8, 32]: only the 8 lowest frequencies are needed


def phash64(gray: np.ndarray) -> np.ndarray:
    """gray: [N, 32, 32] float luminance -> [N] uint64 hashes (bit i = coefficient i of the 8x8 block, row-major)."""
    g = np.asarray(gray, dtype=np.float64).reshape(-1, _N, _N)
    low = np.matmul(np.matmul(_D8, g), _D8.T).reshape(-1, 64)  # [N, 64]
    # Round away float noise so a hash never depends on how many images were hashed together
    # (flat images have all-zero AC coefficients: noise would otherwise pick their bits).
    low = np.round(low, 3)
    med = np.median(low[:, 1:], axis=1, keepdims=True)
    bits = np.packbits(low > med, axis=1, bitorder="little")  # [N, 8] bytes, bit i of the hash = coefficient i
    return np.ascontiguousarray(bits).view("<u8").reshape(-1).astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))).astype(np.int64)


def near_pairs(hashes: np.ndarray, max_distance: int, query: np.ndarray | None = None) -> np.ndarray:
    """Pairs within `max_distance` bits, by multi-index hashing (pigeonhole over max_distance+1 bit bands).

    Without `query`: pairs (i, j), i < j, inside `hashes`. With `query`: pairs (q, i) of a query hash
    and a `hashes` entry. Returns [P, 3] int64 rows (i, j, distance), sorted, without repeats.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    q = h if query is None else np.asarray(query, dtype=np.uint64)
    bands = max_distance + 1
    if bands > 64:
        raise ValueError(f"max_distance must be < 64, got {max_distance}")
    edges = np.linspace(0, 64, bands + 1).astype(int)
    found = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        kh = (h >> np.uint64(lo)) & mask
        kq = kh if query is None else (q >> np.uint64(lo)) & mask
        order_h = np.argsort(kh, kind="stable")
        sorted_h = kh[order_h]
        keys, starts, counts = np.unique(sorted_h, return_index=True, return_counts=True)
        if query is None:
            for s, c in zip(starts[counts > 1], counts[counts > 1]):
                idx = order_h[s:s + c]
                found.append(_pairs_in_block(h, idx, idx, max_distance, upper=True))
        else:
            pos = np.searchsorted(keys, kq)
            pos = np.minimum(pos, len(keys) - 1) if len(keys) else pos
            hit = (len(keys) > 0) & (keys[pos] == kq) if len(keys) else np.zeros(len(q), bool)
            for qi in np.nonzero(hit)[0]:
                s, c = starts[pos[qi]], counts[pos[qi]]
                found.append(_pairs_in_block_query(q[qi], qi, h, order_h[s:s + c], max_distance))
    if not found:
        return np.zeros((0, 3), dtype=np.int64)
    out = np.concatenate(found)
    return np.unique(out, axis=0) if len(out) else out.reshape(0, 3)


def _pairs_in_block(h, a_idx, b_idx, max_distance, upper):
    rows = []
    for start in range(0, len(a_idx), 1024):  # bound memory for degenerate (e.g. all-black) buckets
        ai = a_idx[start:start + 1024]
        d = hamming(h[ai][:, None], h[b_idx][None, :])
        ii, jj = np.nonzero(d <= max_distance)
        i, j = ai[ii], b_idx[jj]
        keep = i < j if upper else np.ones(len(i), bool)
        rows.append(np.stack([i[keep], j[keep], d[ii, jj][keep]], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


def _pairs_in_block_query(qh, qi, h, idx, max_distance):
    d = hamming(qh, h[idx])
    keep = d <= max_distance
    return np.stack([np.full(int(keep.sum()), qi), idx[keep], d[keep]], axis=1).astype(np.int64)


def clusters(n: int, pairs: np.ndarray) -> list[np.ndarray]:
    """Connected components (size >= 2) of the graph on n nodes with edges `pairs[:, :2]`, largest first."""
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs[:, :2]:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([find(i) for i in range(n)]) if n else np.zeros(0, int)
    groups: dict[int, list[int]] = {}
    for i in np.unique(pairs[:, :2]) if len(pairs) else []:
        groups.setdefault(int(roots[i]), []).append(int(i))
    out = [np.array(sorted(g)) for g in groups.values() if len(g) > 1]
    return sorted(out, key=lambda g: (-len(g), g[0]))
