"""A kNN probe in step with training, on held-out probe-train rows of the eval set: the training curve of what
the encoder is for, and the figure `keep: best` picks by.

    np.savez(path, **monitor_arrays(images, labels, probe_train_idx))     # the caller, once (e.g. the asset)
    monitor = KnnMonitor.load(path)
    monitor(backbone, image_size, device)                                  # -> kNN k=20 accuracy in [0, 1]

Only the probe's *train* rows are used (probe_split(labels, test_fraction, seed)[0] of ssl_ops.probes.split,
with the probe report's seed and test fraction), split once more, stratified, into a bank (70%) and queries
(30%): the probe report's test rows are never looked at while training, so picking the best checkpoint by
this figure does not tune on the figures the gate compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssl_ops.features import extract_features
from ssl_ops.knn import knn_accuracy
from ssl_ops.probes.split import probe_split

K = 20  # neighbours
QUERY_FRACTION = 0.3  # of the probe-train rows, held out as queries
MIN_ROWS = 4  # fewer probe-train rows than this: no monitor


def monitor_arrays(images: torch.Tensor | np.ndarray, labels: np.ndarray, train_idx: np.ndarray,
                   seed: int = 0) -> dict:
    """-> {images uint8 [M,3,S,S], labels int64 [M], bank [B], query [Q]} over the probe-train rows only
    (indices into the returned arrays). Raises ValueError when there are too few rows to hold some out."""
    train_idx = np.asarray(train_idx)
    if len(train_idx) < MIN_ROWS:
        raise ValueError(f"{len(train_idx)} probe-train rows: too few to hold out queries for the training probe")
    imgs = images[torch.as_tensor(train_idx)] if isinstance(images, torch.Tensor) else images[train_idx]
    imgs = np.asarray(imgs.numpy() if isinstance(imgs, torch.Tensor) else imgs, dtype=np.uint8)
    y = np.asarray(labels)[train_idx].astype(np.int64)
    bank, query = probe_split(y, test_fraction=QUERY_FRACTION, seed=seed + 1)
    return {"images": imgs, "labels": y, "bank": bank, "query": query}


@dataclass
class KnnMonitor:
    images: torch.Tensor  # uint8 [M, 3, S, S]
    labels: torch.Tensor  # int64 [M]
    bank: np.ndarray
    query: np.ndarray

    @classmethod
    def load(cls, path: Path) -> "KnnMonitor":
        with np.load(Path(path)) as z:
            return cls(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]), z["bank"], z["query"])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def __call__(self, backbone: torch.nn.Module, image_size: int, device="cpu") -> float:
        """kNN (k=20, weighted, cosine) accuracy of the queries against the bank. Leaves the backbone in eval
        mode: the caller puts it back in train mode."""
        feats = extract_features(backbone, self.images, image_size, device=device)
        b, q = torch.as_tensor(self.bank), torch.as_tensor(self.query)
        return knn_accuracy(feats[b], self.labels[b], feats[q], self.labels[q], self.num_classes,
                            k=min(K, len(b)))
