"""Near-pair search by multi-index hashing against brute force."""

import numpy as np
import pytest

from ssl_ops.phash import clusters, hamming, near_pairs


def brute(h, d, q=None):
    if q is None:
        dist = hamming(h[:, None], h[None, :])
        i, j = np.nonzero(np.triu(dist <= d, k=1))
        return {(int(a), int(b), int(dist[a, b])) for a, b in zip(i, j)}
    dist = hamming(q[:, None], h[None, :])
    i, j = np.nonzero(dist <= d)
    return {(int(a), int(b), int(dist[a, b])) for a, b in zip(i, j)}


@pytest.mark.parametrize("d", [0, 2, 4, 8])
def test_near_pairs_matches_brute_force(d):
    rng = np.random.default_rng(d)
    h = rng.integers(0, 2**63, 600, dtype=np.uint64) | (rng.integers(0, 2, 600, dtype=np.uint64) << np.uint64(63))
    for k in range(60):  # plant neighbours at distances 0..d+2
        flips = rng.choice(64, size=int(rng.integers(0, d + 3)), replace=False)
        h[300 + k] = h[k] ^ np.uint64(sum(1 << int(f) for f in flips))
    h[500:520] = h[0]  # a degenerate bucket of identical hashes
    assert {tuple(r) for r in near_pairs(h, d).tolist()} == brute(h, d)
    q = h[[0, 5, 17]] ^ np.uint64(1)
    assert {tuple(r) for r in near_pairs(h, d, query=q).tolist()} == brute(h, d, q)


def test_clusters_are_connected_components():
    pairs = np.array([[0, 1, 0], [1, 2, 1], [5, 6, 3]])
    assert [c.tolist() for c in clusters(8, pairs)] == [[0, 1, 2], [5, 6]]
    assert clusters(3, np.zeros((0, 3), np.int64)) == []
