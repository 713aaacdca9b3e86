"""WebDataset loading of training shards, distributed-aware and seeded.

    entries = shard_entries([Path(".sslpipe/shards/b1/index.json"), ...])  # [(url, samples)]
    urls = [u for u, _ in entries]
    for images in make_loader(urls, LoaderConfig(image_size=32, batch_size=256), rank=0, world=1, steps=100,
                              expected=dict(entries)):
        images  # [B, 3, 32, 32] uint8, on the CPU; augmentation happens on the training device

- Explicit splitters: shards go to ranks as urls[rank::world], then to DataLoader workers as
  shards[worker::workers]. WebDataset's default `single_node_only` is not used.
- Epoch mode (steps=None): every sample once per epoch (less each worker's last partial batch), shard
  order and samples shuffled with a seed derived from (seed, epoch); needs at least world x max(workers, 1)
  shards, else a clear error.
- Resampled mode (steps=N): shards are drawn with replacement, forever, and exactly N batches come out.
- Every image is decoded to RGB, its shorter side resized to image_size and centre-cropped: any size works.
- Integrity while reading: each shard's samples are counted against the count its index gives (`expected`,
  from shard_entries), and a tar that ends early, holds fewer samples or cannot be parsed past some member is
  an error naming the shard (webdataset itself stops silently at a damaged tar header); an image that does
  not decode is an error naming the shard and the sample. Both are ShardDamaged, raised in the training
  process too when a DataLoader worker hits them (the message survives the worker's re-raise). Verify the
  shards' sha256 before training (ssl_ops.shards.verify.require_intact): this catches what slips past that.
- URLs: local paths, WebDataset's own schemes (http, pipe:, gs, ...) and any fsspec URL (s3://, gs://, az://,
  memory://, ...; the filesystem's fsspec package must be installed), for the index files and the shards.
"""

from __future__ import annotations

import io
import json
import random
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_ops.pixels import to_8bit
from ssl_ops.shards.verify import ShardDamaged

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


def shard_entries(index_paths: list[Path | str]) -> list[tuple[str, int]]:
    """(shard path or URL, samples the index says it holds) for ssl_ops.shards index.json files (paths or
    fsspec URLs), in order. The counts go to make_loader(expected=dict(entries))."""
    out = []
    for p in index_paths:
        if _is_url(p):
            import fsspec

            with fsspec.open(p, "rt") as f:
                index = json.load(f)
            base = p.rsplit("/", 1)[0]
            out += [(f"{base}/{s['name']}", s["samples"]) for s in index["shards"]]
        else:
            index = json.loads(Path(p).read_text())
            out += [(str(Path(p).parent / s["name"]), s["samples"]) for s in index["shards"]]
    return out


def shard_urls(index_paths: list[Path | str]) -> list[str]:
    """The shard paths (or URLs) listed by ssl_ops.shards index.json files (paths or fsspec URLs), in order."""
    return [u for u, _ in shard_entries(index_paths)]


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
            try:
                return decode_image(sample[k], size)
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken data
                raise ShardDamaged(f"shard {sample.get('__url__')}: sample {sample.get('__key__')} (.{k}) does not "
                                   f"decode ({type(e).__name__}: {e}); verify the shards (sslpipe verify) and "
                                   f"rebuild the batch's shards") from e
    raise ShardDamaged(f"shard {sample.get('__url__')}: sample {sample.get('__key__')} holds no image "
                       f"({sorted(k for k in sample if not k.startswith('__'))})")


def worker_message(e: BaseException) -> str:
    """The message of an error as its DataLoader worker raised it: torch re-raises it in the training process
    as `type(e)("Caught X in DataLoader worker process N.\nOriginal Traceback ...\nmodule.X: message")`."""
    text = str(e)
    if not text.startswith("Caught "):
        return text
    marker = f"{type(e).__name__}: "
    at = text.rfind(marker)
    return text[at + len(marker):].strip() if at >= 0 else text


_MEMBER = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # <key>.<ext>, key up to the first dot (webdataset's rule)


def read_shard_samples(url: str, expected: int | None = None):
    """Samples {"__key__", "__url__", ext: bytes} of one tar shard, in order; ShardDamaged naming the shard when
    the tar cannot be parsed, ends early, holds data after a damaged header, or holds other than `expected`
    samples. Local paths and every URL webdataset.gopen opens."""
    from webdataset.gopen import gopen

    count, current = 0, None
    try:
        stream = gopen(url, "rb")
    except Exception as e:
        raise ShardDamaged(f"shard {url} cannot be opened ({type(e).__name__}: {e})") from e
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")
        for m in tar:
            if not m.isfile():
                continue
            match = _MEMBER.match(m.name)
            if match is None:
                raise ShardDamaged(f"shard {url}: member {m.name!r} is not <key>.<ext> (after {count} samples)")
            key, ext = match.groups()
            if current is not None and current["__key__"] != key:  # the previous sample is whole
                yield current
                count += 1
                current = None
            if current is None:
                current = {"__key__": key, "__url__": url}
            current[ext.lower()] = tar.extractfile(m).read()
        if current is not None:
            yield current
            count += 1
            current = None
        # after the end-of-archive blocks a tar holds only zeros; anything else follows a header that did not
        # parse, where tarfile stops without a word
        while block := tar.fileobj.read(1 << 16):
            if block.strip(b"\0"):
                raise ShardDamaged(f"shard {url}: a tar header after sample {count} does not parse; the rest of "
                                   f"the shard is unreadable")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ShardDamaged(f"shard {url} cannot be read past sample {count} ({type(e).__name__}: {e}): "
                           f"truncated or damaged") from e
    finally:
        stream.close()
    if expected is not None and count != expected:
        raise ShardDamaged(f"shard {url} holds {count} samples, its index says {expected}: truncated or damaged")


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


# The pipeline's stages are module-level classes, not closures: DataLoader workers started by "spawn" or
# "forkserver" (the start method of a run launched by the Dagster daemon, or of macOS) receive them pickled.
class _EpochShards:
    """One epoch of this rank's shards, in a seeded order that is the same on every rank and worker."""

    def __init__(self, urls: list[str], seed: int, rank: int, world: int):
        self.urls, self.seed, self.rank, self.world = list(urls), seed, rank, world

    def __call__(self):
        _register_fsspec_schemes(self.urls)  # here too: this runs in the DataLoader worker
        order = list(self.urls)
        random.Random(self.seed).shuffle(order)
        w, nw = _worker()
        for url in order[self.rank::self.world][w::nw]:  # node split, then worker split
            yield {"url": url}


class _ResampledShards:
    """Shards drawn with replacement: a different, reproducible stream per rank and worker."""

    def __init__(self, urls: list[str], seed: int, rank: int):
        self.urls, self.seed, self.rank = list(urls), seed, rank

    def __call__(self):
        _register_fsspec_schemes(self.urls)
        w, _ = _worker()
        rng = random.Random(f"{self.seed}/{self.rank}/{w}")
        while True:
            yield {"url": rng.choice(self.urls)}


class _Samples:
    """The samples of each shard, counted against the index (url -> samples)."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def __call__(self, src):
        for item in src:
            yield from read_shard_samples(item["url"], self.counts.get(item["url"]))


class _ToImage:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample):
        return _to_image(sample, self.size)


def make_loader(urls: list[str], cfg: LoaderConfig, rank: int = 0, world: int = 1, steps: int | None = None,
                epoch: int = 0, expected: dict[str, int] | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader of [batch_size, 3, S, S] uint8 batches (last partial batch dropped).

    steps=None: one epoch of this rank's shards; steps=N: resampled, exactly N batches.
    expected: url -> samples the shard holds (dict(shard_entries(...))); a shard read whole with another
    count is an error. Without it, only a tar that cannot be parsed is.
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
    shards = _ResampledShards(urls, seed, rank) if steps is not None else _EpochShards(urls, seed, rank, world)
    stages = [shards, _Samples(dict(expected or {}))]
    if cfg.shuffle_buffer:
        stages.append(wds.shuffle(cfg.shuffle_buffer, initial=min(cfg.shuffle_buffer, 500),
                                  rng=random.Random(f"{seed}/{rank}")))
    stages += [wds.map(_ToImage(cfg.image_size)),
               wds.batched(cfg.batch_size, partial=False, collation_fn=torch.stack)]
    ds = wds.DataPipeline(*stages)
    if steps is not None:
        ds = ds.with_epoch(-(-steps // max(workers, 1)))  # batches per worker; the loader stops at `steps`
    loader = wds.WebLoader(ds, batch_size=None, num_workers=workers)
    return loader.slice(steps) if steps is not None else loader
