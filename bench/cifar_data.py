"""CIFAR-10 from ../shared/datasets for the training benchmarks: the train set ingested and sharded by the
pipeline's own code (cached in a work folder), and labelled uint8 arrays for the kNN evaluation."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.datasets import CIFAR
from bench.datasets import need as _need


def need(split: str) -> Path:
    return _need(CIFAR / f"{split}.zip")


def train_shards(work: Path, every: int = 1) -> Path:
    """Extract the train set (every n-th image), scan it and write shards; -> the index.json (cached)."""
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.shards import ShardConfig, shard_batch

    index = work / f"shards-every{every}" / "index.json"
    if index.exists():
        return index
    land = work / f"landing-every{every}"
    with zipfile.ZipFile(need("train")) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))[::every]
        for n in names:
            p = land / n
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(z.read(n))
    scan = scan_batch(land, "cifar-train", ImageLimits(), workers=2)
    shard_batch(scan.accepted, land, index.parent, ShardConfig(max_samples=1000))
    return index


def labelled(split: str, every: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (uint8 [N, 3, 32, 32], int64 labels) in sorted path order."""
    with zipfile.ZipFile(need(split)) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))[::every]
        classes = sorted({n.split("/")[1] for n in names})
        x = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
        y = np.array([classes.index(n.split("/")[1]) for n in names])
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
