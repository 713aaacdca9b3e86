"""Integrity of shards: damage a real shard the ways disks and people do, and every reader names it.

Flipped byte in a tar header, truncated shard, hand-edited index.json, flipped byte inside a JPEG member;
the loader's own counting and decode errors (through a DataLoader worker too); `python -m ssl_ops.train`
refusing damaged shards; temporaries of a dead shard writer removed by the next writer."""

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from imagefiles import jpeg_bytes, write
from ssl_ops.data.loader import LoaderConfig, decode_image, make_loader, shard_entries
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.shards import ShardConfig, load_index, shard_batch
from ssl_ops.shards.verify import ShardDamaged, require_intact, verify_batch
from ssl_ops.train.source import ShardSource

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def batch(tmp_path):
    """20 real JPEGs in landing/b1, sharded as 2 shards of 10 in shards/b1."""
    d = tmp_path / "landing" / "b1"
    for i in range(20):
        write(d / f"img{i:02d}.jpg", jpeg_bytes(i, size=(40, 32)))
    manifest = scan_batch(d, "b1", ImageLimits(), workers=1).accepted
    out = tmp_path / "shards" / "b1"
    index = shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    return d, manifest, out, index


def members(shard: Path):
    with tarfile.open(shard) as t:
        return t.getmembers()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def loader_ids(out: Path, workers=0):
    entries = shard_entries([out / "index.json"])
    cfg = LoaderConfig(image_size=8, batch_size=1, workers=workers, shuffle_buffer=0)
    return list(make_loader([u for u, _ in entries], cfg, expected=dict(entries)))


def test_an_intact_batch_passes_every_check(batch):
    d, manifest, out, index = batch
    rep = verify_batch(out, full=True)
    assert rep.ok, rep.problems
    assert rep.samples == 20 and len(rep.shards) == 2 and rep.digest == index.digest
    assert rep.sample_ids == set(manifest.column("sample_id").to_pylist())
    assert [c.batch for c in require_intact([out / "index.json"], full=True)] == ["b1"]
    assert len(loader_ids(out)) == 20


def test_a_flipped_byte_in_a_tar_header_is_caught_by_verify_and_by_the_loader(batch):
    d, manifest, out, index = batch
    shard = out / "shard-000000.tar"
    flip(shard, members(shard)[6].offset + 3)  # the name field of sample 4's header: its checksum fails
    # what webdataset alone does: it stops at the bad header without a word
    assert len(list(wds.WebDataset(str(shard), shardshuffle=False))) == 3
    rep = verify_batch(out, full=True)
    whats = [p.what for p in rep.problems]
    assert any("sha256" in w for w in whats) and any("unreadable tar header" in w for w in whats)
    assert any("holds 3 samples, the index says 10" in w for w in whats)
    assert rep.rebuild == "sslpipe run --select image_shards --batches b1"
    with pytest.raises(ShardDamaged, match="shard-000000.tar.*sha256.*Rebuild with: sslpipe run --select image_shards"):
        require_intact([out / "index.json"])
    with pytest.raises(ShardDamaged, match=r"shard .*shard-000000\.tar: a tar header after sample 3 does not parse"):
        loader_ids(out)


@pytest.mark.parametrize("where", ["member_boundary", "inside_member"])
def test_a_truncated_shard_is_caught_by_verify_and_by_the_loader(batch, where):
    d, manifest, out, index = batch
    shard = out / "shard-000001.tar"
    ms = members(shard)
    cut = ms[10].offset if where == "member_boundary" else ms[10].offset_data + 100  # after 5 whole samples
    shard.write_bytes(shard.read_bytes()[:cut])
    rep = verify_batch(out)
    assert [p.what for p in rep.problems] == [f"{cut} bytes, the index says {index.shards[1]['bytes']} "
                                              f"(truncated or overwritten)"]
    with pytest.raises(ShardDamaged, match=r"shard-000001\.tar"):
        loader_ids(out)
    # the loader alone, without the index's count: a cut inside a member is still an error
    if where == "inside_member":
        cfg = LoaderConfig(image_size=8, batch_size=1, workers=0, shuffle_buffer=0)
        with pytest.raises(ShardDamaged, match=r"shard-000001\.tar cannot be read past sample 5"):
            list(make_loader([str(shard)], cfg))


def test_a_hand_edited_index_is_caught_and_rewritten_by_the_writer(batch):
    d, manifest, out, index = batch
    p = out / "index.json"
    original = p.read_text()
    edited = json.loads(original)
    edited["shards"][1]["samples"] = 9  # someone "fixed" a count; digest and total left as they were
    p.write_text(json.dumps(edited))
    rep = verify_batch(out)
    assert any("digest does not match its shard list" in x.what for x in rep.problems)
    assert any("add up to 19, but it says samples=20" in x.what for x in rep.problems)
    with pytest.raises(ShardDamaged, match="index.json"):
        require_intact([p])
    edited["samples"], edited["digest"] = 19, "0" * 64  # consistent counts, made-up digest
    p.write_text(json.dumps(edited))
    assert [x.what for x in verify_batch(out).problems] == [
        "its digest does not match its shard list (the index was edited or is damaged)"]
    again = shard_batch(manifest, d, out, ShardConfig(max_samples=10))  # image_shards' rebuild
    assert not again.reused and p.read_text() == original and verify_batch(out, full=True).ok


def _undecodable_flip(data: bytes) -> int:
    """An offset inside a JPEG whose flipped byte makes it fail to decode (as a disk error would)."""
    for pos in range(2, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        try:
            decode_image(bytes(bad), 8)
        except Exception:
            return pos
    raise AssertionError("no single flipped byte breaks this JPEG")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_flipped_byte_inside_a_jpeg_names_the_shard_and_the_sample(batch, workers):
    d, manifest, out, index = batch
    shard = out / "shard-000001.tar"
    jpg = [m for m in members(shard) if m.name.endswith(".jpg")][2]
    key = jpg.name.split(".")[0]
    with tarfile.open(shard) as t:
        data = t.extractfile(jpg).read()
    flip(shard, jpg.offset_data + _undecodable_flip(data))
    rep = verify_batch(out, full=True)
    assert any(f"sample {key}: .jpg does not decode" in p.what for p in rep.problems)
    # the loader on its own (no sha256 pass first), in the training process or in a DataLoader worker
    entries = shard_entries([out / "index.json"])
    source = ShardSource([u for u, _ in entries], 8, 2, workers=workers, shuffle_buffer=0, expected=dict(entries))
    with pytest.raises(ShardDamaged) as e:
        for _ in source(0, 40):
            pass
    msg = str(e.value)
    assert f"shard {shard}: sample {key} (.jpg) does not decode" in msg
    assert "Traceback" not in msg  # the worker's message, not torch's wrapper around it


def test_python_m_ssl_ops_train_refuses_a_damaged_shard_naming_it(batch, tmp_path, capsys):
    from ssl_ops.train.__main__ import main

    d, manifest, out, index = batch
    cfg = tmp_path / "train.yaml"
    cfg.write_text("method: simclr\nbackbone: resnet18\nwidth: 4\nbatch_size: 4\nsteps: 2\nwarmup_steps: 1\n"
                   "workers: 0\nimage_size: 16\ndevice: cpu\n")
    flip(out / "shard-000001.tar", members(out / "shard-000001.tar")[3].offset_data + 1)
    assert main(["--config", str(cfg), "--index", str(out / "index.json"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "shard-000001.tar: sha256" in err and "sslpipe run --select image_shards --batches b1" in err
    assert not (tmp_path / "run" / "encoder.pt").exists()


def test_stale_temporaries_of_a_dead_writer_are_removed_by_the_next_writer(batch):
    d, manifest, out, index = batch
    stale = [out / ".shard-000000.tar.4242.tmp", out / ".index.json.4242.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)  # what a kill -9 or a full disk leaves behind
    again = shard_batch(manifest, d, out, ShardConfig(max_samples=10))
    assert again.reused  # nothing to rewrite, but the folder is cleaned all the same
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-000000.tar", "shard-000001.tar"]


SLOW_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from ssl_ops.ingest import ImageLimits, scan_batch
from ssl_ops.shards import ShardConfig, shard_batch
from ssl_ops.shards import writer
real = writer.ShardTar.write
def slow(self, key, members):
    time.sleep(0.2)
    return real(self, key, members)
writer.ShardTar.write = slow
d = Path({landing!r})
m = scan_batch(d, "b1", ImageLimits(), workers=1).accepted
shard_batch(m, d, Path({out!r}), ShardConfig(max_samples=4, seed=7))
"""


def test_a_killed_writer_leaves_temporaries_that_the_next_run_removes(batch, tmp_path):
    d, manifest, out, index = batch
    code = SLOW_WRITER.format(tests=str(ROOT / "tests"), landing=str(d), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and len(list(out.glob(".shard-*.tmp"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: one shard whole, the next half written
    proc.wait()
    left = list(out.glob(".*.tmp"))
    assert len(left) >= 2, "the writer did not get as far as its second shard"
    assert load_index(out / "index.json").digest == index.digest  # readers still see the old set
    again = shard_batch(manifest, d, out, ShardConfig(max_samples=4, seed=7))
    assert not list(out.glob(".*.tmp")) and not again.reused and len(again.shards) == 5
    assert verify_batch(out, full=True).ok
