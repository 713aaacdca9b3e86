"""WebDataset loading of training shards, distributed-aware and seeded.

    urls = shard_urls([Path(".sslpipe/shards/b1/index.json"), ...])
    for images in make_loader(urls, LoaderConfig(image_size=32, batch_size=256), rank=0, world=1, steps=100):
        images  # [B, 3, 32, 32] uint8, on the CPU; augmentation happens on the training device

- Explicit splitters: shards go to ranks as urls[rank::world], then to DataLoader workers as
  shards[worker::workers]. WebDataset's default `single_node_only` is not used.
- Epoch mode (steps=None): every sample once per epoch (less each worker's last partial batch), shard
  order and samples shuffled with a seed derived from (seed, epoch); needs at least world x max(workers, 1)
  shards, else a clear error.
- Resampled mode (steps=N): shards are drawn with replacement, forever, and exactly N batches come out.
- Every image is decoded to RGB, its shorter side resized to image_size and centre-cropped: any size works.
- URLs: local paths, WebDataset's own schemes (http, pipe:, gs, ...) and any fsspec URL (s3://, gs://, az://,
  memory://, ...; the filesystem's fsspec package must be installed), for the index files and the shards.
"""

from __future__ import annotations

import io
import random
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_ops.pixels import to_8bit

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff", "ppm", "tga", "ico")


@dataclass(frozen=True)
class LoaderConfig:
    image_size: int = 32  # px; side of the square uint8 images a batch holds
    batch_size: int = 256  # images per batch, per rank
    workers: int = 2  # DataLoader worker processes per rank (0 = load in the training process)
    seed: int = 0  # seeds shard order and the sample shuffle buffer
    shuffle_buffer: int = 2000  # samples held for sample-level shuffling (0 = none)


def _is_url(p) -> bool:
    return isinstance(p, str) and "://" in p and not p.startswith("file://")


def shard_urls(index_paths: list[Path | str]) -> list[str]:
    """The shard paths (or URLs) listed by ssl_ops.shards index.json files (paths or fsspec URLs), in order."""
    urls = []
    for p in index_paths:
        if _is_url(p):
            import fsspec

            with fsspec.open(p, "rt") as f:
                index = json.load(f)
            base = p.rsplit("/", 1)[0]
            urls += [f"{base}/{s['name']}" for s in index["shards"]]
        else:
            index = json.loads(Path(p).read_text())
            urls += [str(Path(p).parent / s["name"]) for s in index["shards"]]
    return urls


def _open_fsspec(url, mode="rb", bufsize=8192, **kw):
    import fsspec

    return fsspec.open(url, mode).open()


def _register_fsspec_schemes(urls: list[str]) -> None:
    """Let WebDataset open URL schemes it does not know itself (s3://, az://, memory://, ...) through fsspec."""
    from webdataset.gopen import gopen_schemes  # (webdataset.gopen the attribute is the function)

    for u in urls:
        if _is_url(u):
            gopen_schemes.setdefault(u.split("://", 1)[0], _open_fsspec)


def decode_image(data: bytes, size: int) -> torch.Tensor:
    """Encoded bytes -> [3, size, size] uint8: RGB (alpha, palette, CMYK, 16-bit handled), shorter side resized
    to `size`, centre-cropped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = to_8bit(Image.open(io.BytesIO(data))).convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def _to_image(sample: dict, size: int) -> torch.Tensor:
    for k in IMAGE_KEYS:
        if k in sample:
            return decode_image(sample[k], size)
    raise ValueError(f"sample {sample.get('__key__')} in {sample.get('__url__')} holds no image ({sorted(sample)})")


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def make_loader(urls: list[str], cfg: LoaderConfig, rank: int = 0, world: int = 1, steps: int | None = None,
                epoch: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader of [batch_size, 3, S, S] uint8 batches (last partial batch dropped).

    steps=None: one epoch of this rank's shards; steps=N: resampled, exactly N batches.
    """
    import webdataset as wds

    if not urls:
        raise ValueError("no shards to read: materialize image_shards for at least one batch")
    workers = max(cfg.workers, 0)
    if steps is None and len(urls) < world * max(workers, 1):
        raise ValueError(f"{len(urls)} shard(s) for {world} rank(s) x {max(workers, 1)} worker(s): each needs at least "
                         f"one. Lower the workers, use resampled mode (steps=N), or write smaller shards "
                         f"(shards.max_samples) so there are more of them.")
    seed = cfg.seed * 100003 + epoch

    def epoch_shards():
        _register_fsspec_schemes(urls)  # here too: this runs in the DataLoader worker
        order = list(urls)
        random.Random(seed).shuffle(order)  # the same order on every rank and worker
        w, nw = _worker()
        for url in order[rank::world][w::nw]:  # node split, then worker split
            yield {"url": url}

    def resampled_shards():
        _register_fsspec_schemes(urls)
        w, _ = _worker()
        rng = random.Random(f"{seed}/{rank}/{w}")  # a different, reproducible stream per rank and worker
        while True:
            yield {"url": rng.choice(urls)}

    w_rng_seed = f"{seed}/{rank}"
    stages = [resampled_shards if steps is not None else epoch_shards, wds.tarfile_to_samples()]
    if cfg.shuffle_buffer:
        stages.append(wds.shuffle(cfg.shuffle_buffer, initial=min(cfg.shuffle_buffer, 500),
                                  rng=random.Random(w_rng_seed)))
    stages += [wds.map(lambda s: _to_image(s, cfg.image_size)),
               wds.batched(cfg.batch_size, partial=False, collation_fn=torch.stack)]
    ds = wds.DataPipeline(*stages)
    if steps is not None:
        ds = ds.with_epoch(-(-steps // max(workers, 1)))  # batches per worker; the loader stops at `steps`
    loader = wds.WebLoader(ds, batch_size=None, num_workers=workers)
    return loader.slice(steps) if steps is not None else loader
