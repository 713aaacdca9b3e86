"""ssl_ops.storage over fsspec's in-memory filesystem (the same code that talks to s3:// through s3fs; the
production tests run it against a real S3 server)."""

import os
import time
import uuid
from pathlib import Path

import pytest

from ssl_ops.ingest.ready import listing_readiness
from ssl_ops.storage import ObjectStore, StorageError


@pytest.fixture
def store():
    s = ObjectStore(f"memory://t-{uuid.uuid4().hex[:8]}/prefix")
    yield s
    s.fs.rm(s.root, recursive=True) if s.fs.exists(s.root) else None


def folder(tmp: Path, files: dict) -> Path:
    for name, data in files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return tmp


def test_publish_sends_the_marker_last_and_removes_what_the_new_version_lacks(store, tmp_path, monkeypatch):
    local = folder(tmp_path / "b1", {"index.json": b"{v1}", "shard-000000.tar": b"a" * 10,
                                     "shard-000001.tar": b"b" * 10, ".lock": b"", "sub/x.txt": b"x"})
    order = []
    real = store.fs.put_file
    monkeypatch.setattr(store.fs, "put_file", lambda src, dst, **kw: (order.append(dst.rsplit("/", 1)[1]),
                                                                      real(src, dst, **kw)))
    assert store.publish(local, "shards/b1", last="index.json") == 4
    assert order[-1] == "index.json" and ".lock" not in order
    assert [n for n, _, _ in store.files("shards/b1")] == ["index.json", "shard-000000.tar", "shard-000001.tar",
                                                          "sub/x.txt"]
    # the next version has one shard fewer: the stale object goes, after the new index is in place
    (local / "shard-000001.tar").unlink()
    (local / "index.json").write_bytes(b"{v2}")
    order.clear()
    store.publish(local, "shards/b1", last="index.json")
    assert [n for n, _, _ in store.files("shards/b1")] == ["index.json", "shard-000000.tar", "sub/x.txt"]
    assert store.read_bytes("shards/b1/index.json") == b"{v2}"


def test_a_publish_that_fails_midway_leaves_the_previous_index_in_place(store, tmp_path, monkeypatch):
    local = folder(tmp_path / "b1", {"index.json": b"{v1}", "shard-000000.tar": b"a" * 10})
    store.publish(local, "shards/b1", last="index.json")
    (local / "shard-000000.tar").write_bytes(b"c" * 10)
    (local / "shard-000001.tar").write_bytes(b"d" * 10)
    (local / "index.json").write_bytes(b"{v2}")
    real, calls = store.fs.put_file, []

    def flaky(src, dst, **kw):
        calls.append(dst)
        if len(calls) == 2:
            raise ConnectionError("connection reset by peer")
        return real(src, dst, **kw)

    monkeypatch.setattr(store.fs, "put_file", flaky)
    with pytest.raises(StorageError, match=r"uploading to memory://\S*/shards/b1/shard-000000.tar \(and 1 more\) "
                                           r"failed: ConnectionError.*endpoint"):
        store.publish(local, "shards/b1", last="index.json")
    assert store.read_bytes("shards/b1/index.json") == b"{v1}"  # readers still see the complete old version


def test_pull_copies_what_changed_and_prunes_only_when_asked(store, tmp_path):
    src = folder(tmp_path / "src", {"a.jpg": b"1" * 5, "d/b.jpg": b"2" * 7, "_READY": b""})
    store.publish(src, "landing/b1")
    dst = tmp_path / "copy"
    assert store.pull("landing/b1", dst) == 3
    assert (dst / "d" / "b.jpg").read_bytes() == b"2" * 7
    assert store.pull("landing/b1", dst) == 0  # unchanged: nothing downloaded
    (dst / "own.txt").write_text("mine")
    time.sleep(0.01)
    (src / "a.jpg").write_bytes(b"9" * 5)  # same size, new bytes: the object's time differs
    store.publish(src, "landing/b1")
    assert store.pull("landing/b1", dst) >= 1 and (dst / "a.jpg").read_bytes() == b"9" * 5
    assert (dst / "own.txt").is_file()  # not pruned: a folder may be the user's
    store.pull("landing/b1", dst, prune=True)
    assert not (dst / "own.txt").exists()
    assert not [p for p in dst.rglob("*.part")]


def test_batches_are_listed_in_one_go_and_readiness_follows_the_folder_rule(store, tmp_path):
    store.write_bytes("landing/b1/x.jpg", b"1")
    store.write_bytes("landing/b1/_READY", b"")
    store.write_bytes("landing/b2/y.jpg", b"1")
    store.write_bytes("landing/b3/_READY", b"")
    got = dict(store.batches("landing"))
    assert sorted(got) == ["b1", "b2", "b3"]
    now = time.time()
    assert listing_readiness(got["b1"], 60, now) == (True, "marked _READY")
    ready, why = listing_readiness(got["b2"], 60, now)
    assert not ready and "still landing" in why
    assert listing_readiness(got["b2"], 60, now + 120)[0]
    assert listing_readiness(got["b3"], 60, now) == (False, "_READY is there but the folder holds no files: nothing "
                                                            "to ingest")
    assert listing_readiness([(".hidden/x", 1, now - 999)], 0, now)[0] is False


def test_the_store_pickles_without_its_connection(store):
    import pickle

    store.write_bytes("k", b"v")
    again = pickle.loads(pickle.dumps(store))
    assert again.read_bytes("k") == b"v" and again.uri("k") == store.uri("k")


def test_prefixes_lists_batches_without_their_objects(store):
    store.write_bytes("landing/b1/x.jpg", b"1")
    store.write_bytes("landing/b2/sub/y.jpg", b"1")
    store.write_bytes("landing/loose.txt", b"1")  # a file beside the batches is not a batch
    assert store.prefixes("landing") == ["b1", "b2"]
    assert store.prefixes("nothing-here") == []
