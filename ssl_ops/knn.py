"""Weighted k-nearest-neighbour classification on frozen features (Wu et al., "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", CVPR 2018; the protocol DINO and solo-learn use).

    pred = knn_predict(train_feats, train_labels, test_feats, num_classes=10, k=200, temperature=0.1)

Cosine similarity on L2-normalised features; each of the k nearest training samples votes for its
label with weight exp(similarity / temperature); the class with the largest total wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, num_classes: int,
                k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """train_feats: [N, D], train_labels: [N] int64 in [0, num_classes), test_feats: [M, D] -> [M] int64.

    Test rows are processed `chunk` at a time, so memory is O(chunk x N), not O(M x N).
    """
    if train_feats.shape[0] != train_labels.shape[0]:
        raise ValueError(f"{train_feats.shape[0]} training features but {train_labels.shape[0]} labels")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"feature sizes differ: train {train_feats.shape[1]}, test {test_feats.shape[1]}")
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    labels = train_labels.long()
    out = []
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start:start + chunk].float(), dim=1)
        sim, idx = (q @ train.T).topk(k, dim=1)  # [m, k]
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, labels[idx], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> float:
    pred = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return float((pred == test_labels.long()).float().mean())
