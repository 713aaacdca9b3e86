"""Loading shards: every sample once per epoch across ranks and workers, seeded, resampled, any image mode."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from imagefiles import write
from ssl_ops.data import LoaderConfig, decode_image, make_loader, shard_urls
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.shards import ShardConfig, shard_batch


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """120 images whose grey level is their number (i + 10), in 8 shards of 15."""
    root = tmp_path_factory.mktemp("loader")
    for i in range(120):
        write(root / "b" / f"{i:03d}.png", _png(Image.new("L", (12, 10), i + 10)))
    m = scan_batch(root / "b", "b", ImageLimits(), workers=1).accepted
    shard_batch(m, root / "b", root / "s", ShardConfig(max_samples=15))
    return shard_urls([root / "s" / "index.json"])


def _png(im):
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def ids(batches):
    return [int(b[0, 0, 0]) - 10 for batch in batches for b in batch]


def test_an_epoch_covers_every_sample_once_across_ranks_and_workers(shards):
    assert len(shards) == 8
    cfg = LoaderConfig(image_size=8, batch_size=1, workers=2, seed=1, shuffle_buffer=10)
    per_rank = [ids(make_loader(shards, cfg, rank=r, world=2)) for r in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == list(range(120))
    assert set(per_rank[0]).isdisjoint(per_rank[1]) and len(per_rank[0]) == 60
    again = ids(make_loader(shards, cfg, rank=0, world=2))
    assert again == per_rank[0]  # seeded: the same order
    assert ids(make_loader(shards, cfg, rank=0, world=2, epoch=1)) != again  # another epoch, another order


def test_batches_are_fixed_size_uint8_at_the_configured_size(shards):
    batches = list(make_loader(shards, LoaderConfig(image_size=8, batch_size=16, workers=0)))
    assert len(batches) == 7 and all(b.shape == (16, 3, 8, 8) and b.dtype == torch.uint8 for b in batches)


def test_resampled_mode_gives_exactly_the_steps_asked(shards):
    cfg = LoaderConfig(image_size=8, batch_size=32, workers=2, seed=3)
    a = list(make_loader(shards, cfg, rank=0, world=2, steps=9))
    b = list(make_loader(shards, cfg, rank=1, world=2, steps=9))
    assert len(a) == len(b) == 9
    assert ids([a[0]]) != ids([b[0]])  # ranks draw different samples
    assert ids(a) == ids(make_loader(shards, cfg, rank=0, world=2, steps=9))  # reproducible


def test_too_few_shards_is_a_clear_error(shards):
    with pytest.raises(ValueError, match=r"8 shard\(s\) for 4 rank\(s\) x 3 worker\(s\)"):
        make_loader(shards, LoaderConfig(workers=3), rank=0, world=4)
    with pytest.raises(ValueError, match="no shards"):
        make_loader([], LoaderConfig())
    assert len(list(make_loader(shards, LoaderConfig(image_size=8, batch_size=4, workers=3), world=4, steps=2))) == 2


@pytest.mark.parametrize("mode", ["RGBA", "P", "CMYK", "I;16", "L", "1"])
def test_any_mode_and_size_decodes_to_rgb_at_the_configured_size(mode):
    if mode == "I;16":
        im = Image.fromarray((np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16))
    else:
        im = Image.new(mode, (40, 30))
    buf = io.BytesIO()
    im.save(buf, "JPEG" if mode == "CMYK" else "PNG")
    x = decode_image(buf.getvalue(), 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    if mode == "I;16":
        assert 0 < x.float().mean() < 255  # scaled from 16 bits, not clipped to white


def test_fsspec_urls_for_the_index_and_the_shards(shards):
    """Shards on object storage are read through fsspec: here its in-memory filesystem stands in for s3://."""
    import fsspec

    from pathlib import Path

    fs = fsspec.filesystem("memory")
    local = Path(shards[0]).parent
    for p in sorted(local.iterdir()):
        fs.pipe(f"/bucket/b/{p.name}", p.read_bytes())
    urls = shard_urls(["memory://bucket/b/index.json"])
    assert urls[0].startswith("memory://bucket/b/shard-") and len(urls) == 8
    got = ids(make_loader(urls, LoaderConfig(image_size=8, batch_size=1, workers=0, shuffle_buffer=0)))
    assert sorted(got) == list(range(120))


SPAWNED = '''
import multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1], force=True)  # as in a run the Dagster daemon launches
from ssl_ops.data import LoaderConfig, make_loader
urls = sys.argv[2].split(",")
cfg = LoaderConfig(image_size=8, batch_size=1, workers=2, seed=1, shuffle_buffer=10)
epoch = [int(b[0, 0, 0]) - 10 for batch in make_loader(urls, cfg) for b in batch]
steps = list(make_loader(urls, cfg, steps=5))
print(sorted(epoch) == list(range(120)), len(steps))
'''


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_loader_workers_start_by_spawn_and_forkserver_too(shards, method):
    """Workers that receive the pipeline pickled (spawn, forkserver) read the same data as forked ones: a
    training launched by the daemon once failed with "Can't pickle local object ... resampled_shards"."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SPAWNED, method, ",".join(shards)], cwd=root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "5"]
