"""Where training batches come from: a callable (start_step, n_steps) -> iterable of n_steps uint8 batches
[B_rank, 3, S, S]. The loop asks for one segment (between checkpoints) at a time, so a run resumed from a
checkpoint reads exactly the stream an uninterrupted run reads."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ssl_ops.data import LoaderConfig
from ssl_ops.data.loader import make_loader, worker_message
from ssl_ops.shards.verify import ShardDamaged

BatchSource = Callable[[int, int], Iterable[torch.Tensor]]


class ShardSource:
    """Resampled WebDataset batches from shard URLs; the stream of a segment is seeded by (seed, start_step),
    and each rank and DataLoader worker draws its own shards.

    expected: url -> samples its index gives (dict(shard_entries(index_paths))): each shard read whole is
    counted against it. A damaged shard raises ShardDamaged naming the shard (and the sample), with the
    message as the worker wrote it."""

    def __init__(self, urls: list[str], image_size: int, batch_size: int, workers: int = 2, seed: int = 0,
                 rank: int = 0, world: int = 1, shuffle_buffer: int = 2000, expected: dict[str, int] | None = None):
        if not urls:
            raise ValueError("no shards to train on: materialize image_shards for at least one accepted batch")
        self.urls, self.rank, self.world = list(urls), rank, world
        self.expected = dict(expected or {})
        self.cfg = LoaderConfig(image_size=image_size, batch_size=batch_size, workers=workers, seed=seed,
                                shuffle_buffer=shuffle_buffer)

    def __call__(self, start_step: int, n_steps: int) -> Iterable[torch.Tensor]:
        loader = make_loader(self.urls, self.cfg, self.rank, self.world, steps=n_steps, epoch=start_step,
                             expected=self.expected)
        try:
            yield from loader
        except ShardDamaged as e:
            raise ShardDamaged(worker_message(e)) from None
