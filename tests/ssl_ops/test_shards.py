"""Shards: original bytes, deterministic, atomic, indexed, reused when unchanged."""

import hashlib
import json

import pytest
import webdataset as wds

from imagefiles import jpeg_bytes, png_bytes, write
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.shards import ShardConfig, load_index, shard_batch
from ssl_ops.shards import writer as writer_mod
from ssl_ops.shards.writer import ShardInputError


@pytest.fixture
def batch(tmp_path):
    d = tmp_path / "landing" / "b1"
    for i in range(23):
        write(d / f"img {i:02d}.jpg", jpeg_bytes(i))
    write(d / "sub" / "p.png", png_bytes("RGBA"))
    (d / "metadata.csv").write_text("path,domain\n" + "".join(f"img {i:02d}.jpg,d{i % 3}\n" for i in range(23)))
    return d, scan_batch(d, "b1", ImageLimits(), workers=1).accepted


def read_all(out, index):
    samples = []
    for s in index.shards:
        samples += list(wds.WebDataset(str(out / s["name"]), shardshuffle=False))
    return samples


def test_shards_hold_original_bytes_and_attributes(batch, tmp_path):
    d, manifest = batch
    out = tmp_path / "shards" / "b1"
    index = shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    assert [s["samples"] for s in index.shards] == [10, 10, 4] and index.samples == 24
    samples = read_all(out, index)
    assert len(samples) == 24 and len({s["__key__"] for s in samples}) == 24
    for s in samples:
        meta = json.loads(s["json"])
        data = s.get("jpg") or s.get("png")
        assert data == (d / meta["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["__key__"] == meta["sample_id"]
        if meta["path"].startswith("img"):
            assert meta["attributes"]["domain"] == f"d{int(meta['path'][4:6]) % 3}"
    for s in index.shards:
        p = out / s["name"]
        assert p.stat().st_size == s["bytes"] and hashlib.sha256(p.read_bytes()).hexdigest() == s["sha256"]
    assert load_index(out / "index.json").digest == index.digest


def test_same_input_gives_byte_identical_shards(batch, tmp_path):
    d, manifest = batch
    a = shard_batch(manifest, d, tmp_path / "a", ShardConfig(max_samples=7, seed=3))
    reversed_rows = manifest.take(list(range(manifest.num_rows))[::-1])
    b = shard_batch(reversed_rows, d, tmp_path / "b", ShardConfig(max_samples=7, seed=3))
    assert a.digest == b.digest  # manifest row order does not matter either
    for s in a.shards:
        assert (tmp_path / "a" / s["name"]).read_bytes() == (tmp_path / "b" / s["name"]).read_bytes()
    c = shard_batch(manifest, d, tmp_path / "c", ShardConfig(max_samples=7, seed=4))
    assert c.digest != a.digest  # the seed sets the order


def test_unchanged_input_is_reused_and_changed_input_rewritten(batch, tmp_path):
    d, manifest = batch
    out = tmp_path / "s"
    first = shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    again = shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    assert again.reused and again.digest == first.digest
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == mtimes
    smaller = shard_batch(manifest.slice(0, 5), d, out, ShardConfig(max_samples=10))
    assert not smaller.reused and smaller.samples == 5
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar"]  # stale shards removed
    data = bytearray((out / "shard-000000.tar").read_bytes())
    data[700] ^= 0xFF  # one flipped byte inside a member, same size
    (out / "shard-000000.tar").write_bytes(bytes(data))
    rewritten = shard_batch(manifest.slice(0, 5), d, out, ShardConfig(max_samples=10))
    assert not rewritten.reused and rewritten.digest == smaller.digest  # rebuilt, byte-identical to before


def test_a_failure_midway_leaves_no_partial_shard_and_the_old_index(batch, tmp_path, monkeypatch):
    d, manifest = batch
    out = tmp_path / "s"
    old = shard_batch(manifest.slice(0, 4), d, out, ShardConfig(max_samples=10))
    old_bytes = (out / "shard-000000.tar").read_bytes()
    real_read, calls = writer_mod.read_landing_file, {"n": 0}

    def flaky_read(batch_dir, rel, *a, **k):
        calls["n"] += 1
        if calls["n"] == 15:
            raise OSError("disk went away")
        return real_read(batch_dir, rel, *a, **k)

    monkeypatch.setattr(writer_mod, "read_landing_file", flaky_read)
    with pytest.raises(OSError, match="disk went away"):
        shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    assert calls["n"] == 15  # it failed in the second shard, after the first was complete
    idx = load_index(out / "index.json")
    assert idx.digest == old.digest  # readers still see the old, whole set ...
    assert (out / "shard-000000.tar").read_bytes() == old_bytes  # ... with the old bytes
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-000000.tar"]  # no temporaries left


def test_a_landing_file_changed_after_ingestion_is_an_error(batch, tmp_path):
    d, manifest = batch
    (d / "img 03.jpg").write_bytes(jpeg_bytes(99))
    with pytest.raises(ShardInputError, match="changed after ingestion"):
        shard_batch(manifest, d, tmp_path / "s")


def test_empty_manifest_gives_an_empty_index(tmp_path):
    (tmp_path / "e").mkdir()
    m = scan_batch(tmp_path / "e", "e", ImageLimits(), workers=1).accepted
    idx = shard_batch(m, tmp_path / "e", tmp_path / "s")
    assert idx.samples == 0 and idx.shards == [] and (tmp_path / "s" / "index.json").is_file()


def test_files_swapped_after_ingestion_are_refused_unread(tmp_path):
    """A link accepted at ingestion (inside the batch) re-pointed before sharding to /dev/zero, /etc/passwd or a
    FIFO is refused without reading it (an endless /dev/zero once ran the machine out of memory)."""
    import os

    from imagefiles import jpeg_bytes, write
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.shards import ShardConfig, shard_batch
    from ssl_ops.shards.writer import ShardInputError

    d = tmp_path / "b"
    write(d / "a.jpg", jpeg_bytes(1))
    write(d / "sub" / "c.jpg", jpeg_bytes(3))
    os.symlink(d / "sub" / "c.jpg", d / "b.jpg")
    accepted = scan_batch(d, "b", ImageLimits(), workers=1).accepted
    assert sorted(accepted.column("path").to_pylist()) == ["a.jpg", "b.jpg"]
    for target, why in (("/dev/zero", "leads outside the batch folder; not read"),
                        ("/etc/passwd", "leads outside the batch folder; not read")):
        os.unlink(d / "b.jpg")
        os.symlink(target, d / "b.jpg")
        with pytest.raises(ShardInputError, match=why):
            shard_batch(accepted, d, tmp_path / "shards", ShardConfig())
    os.unlink(d / "b.jpg")
    os.mkfifo(d / "sub" / "fifo")
    os.symlink(d / "sub" / "fifo", d / "b.jpg")  # inside the batch, but not a regular file: never blocks
    with pytest.raises(ShardInputError, match="no longer a regular file; not read"):
        shard_batch(accepted, d, tmp_path / "shards", ShardConfig())
    os.unlink(d / "b.jpg")
    write(d / "b.jpg", jpeg_bytes(3) + b"grown")
    with pytest.raises(ShardInputError, match="changed after ingestion"):
        shard_batch(accepted, d, tmp_path / "shards", ShardConfig())
    assert not list((tmp_path / "shards").glob(".*.tmp"))
