"""The speedrun's device and data (bench/speedrun.py): the device asked for, checked; the CIFAR-10 shards decoded
once, in worker processes, into one uint8 tensor (`--data resident`, batches gathered on the device), or read every
step through the project's loader (`--data stream`, pinned and prefetched by a thread)."""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import threading
from pathlib import Path

IMAGE_SIZE = 32


def resolve_device(ap: argparse.ArgumentParser, name: str):
    import torch

    # An explicit index (torch.cuda.set_device refuses a bare "cuda"), without initialising CUDA before the decode
    # processes are forked.
    if name == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
            ap.error(f"--device {name}: {why} (torch {torch.__version__}); use --device auto or cpu")
        try:
            dev = torch.device(name)
        except RuntimeError:
            ap.error(f"--device {name!r}: choose auto, cuda, cuda:N or cpu")
        if dev.index is None:
            return torch.device("cuda", 0)
        if dev.index >= torch.cuda.device_count():
            ap.error(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
        return dev
    if name == "cpu":
        return torch.device("cpu")
    ap.error(f"--device {name!r}: choose auto, cuda, cuda:N or cpu")


def decode_shard(job: tuple[str, int | None]):
    """One shard -> (uint8 [n, 3, 32, 32] array, class folder names), read and counted against its index."""
    import numpy as np

    from ssl_ops.data.loader import IMAGE_KEYS, decode_image, read_shard_samples
    from ssl_ops.shards.verify import ShardDamaged

    url, expected = job
    images, classes = [], []
    for s in read_shard_samples(url, expected):
        key = next((k for k in IMAGE_KEYS if k in s), None)
        if key is None or "json" not in s:
            raise ShardDamaged(f"shard {url}: sample {s['__key__']} lacks an image or its .json")
        images.append(decode_image(s[key], IMAGE_SIZE).numpy())
        classes.append(Path(json.loads(s["json"])["path"]).parent.name)
    return np.stack(images), classes


def load_train(index: Path, workers: int):
    """-> (uint8 tensor [N, 3, 32, 32], class names per sample, entries); shards checked, decoded in parallel."""
    import numpy as np
    import torch

    from ssl_ops.data.loader import shard_entries
    from ssl_ops.shards.verify import require_intact

    require_intact([index])
    entries = shard_entries([index])
    jobs = [(u, n) for u, n in entries]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            parts = list(pool.map(decode_shard, jobs))
    else:
        parts = [decode_shard(j) for j in jobs]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    names = [c for p in parts for c in p[1]]
    return x, names, entries


class Resident:
    """Batches gathered on the device from the whole decoded set, a fresh permutation per epoch (the last
    partial batch of an epoch is dropped, so shapes stay fixed for torch.compile)."""

    def __init__(self, images, batch: int, seed: int):
        import torch

        self.x, self.batch = images, batch
        self.gen = torch.Generator(device=images.device).manual_seed(seed)

    def __iter__(self):
        import torch

        n = self.x.shape[0]
        while True:
            perm = torch.randperm(n, device=self.x.device, generator=self.gen)
            for i in range(n // self.batch):
                yield self.x[perm[i * self.batch:(i + 1) * self.batch]]

    def close(self):
        pass


class Streamed:
    """The project's shard loader (resampled WebDataset, DataLoader workers decoding to uint8), each batch
    pinned by a prefetch thread and copied to the device without blocking."""

    def __init__(self, entries, batch: int, workers: int, seed: int, device, prefetch: int = 6):
        from ssl_ops.train import ShardSource

        source = ShardSource([u for u, _ in entries], IMAGE_SIZE, batch, workers, seed, expected=dict(entries))
        self.device, self.pin = device, device.type == "cuda"
        self.it = iter(source(0, 10 ** 9))
        # The first batch is taken here, so that the DataLoader forks its workers from this (the main) thread: a
        # fork from the prefetch thread, while the main thread trains, can copy a held lock into the workers.
        self.first = next(self.it)
        self.q: queue.Queue = queue.Queue(maxsize=prefetch)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, daemon=True)
        self.thread.start()

    def _fill(self):
        try:
            for b in itertools.chain([self.first], self.it):
                if self.pin:
                    b = b.pin_memory()
                while not self.stop.is_set():
                    try:
                        self.q.put(b, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the training thread
            self.q.put(e)

    def __iter__(self):
        while True:
            b = self.q.get()
            if isinstance(b, BaseException):
                raise b
            yield b.to(self.device, non_blocking=True)

    def close(self):
        self.stop.set()
        while not self.q.empty():
            self.q.get_nowait()
        self.thread.join(timeout=30)
        if not self.thread.is_alive():  # (a generator cannot be closed while the thread is inside it)
            self.it.close()  # shuts the DataLoader's workers down
