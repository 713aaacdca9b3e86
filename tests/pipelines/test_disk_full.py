"""A full disk, for real (small tmpfs mounts): recognised in each guise, said in one line by `sslpipe run`
(exit 1, no traceback), and never leaving a Dagster run STARTED."""

import errno
import re
import shutil
import sqlite3

import dagster as dg
import pytest

from realproc import Tmpfs, sslpipe, tiny_home
from ssl_ops.diskfull import DiskFull, is_disk_full, path_in_error

UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@pytest.fixture
def tmpfs():
    t = Tmpfs()
    yield t
    t.unmount_all()


def fill(folder, chunk: int = 4096):
    """Write into folder/filler until the filesystem refuses; -> the OSError it refused with."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * chunk)
        except OSError as e:
            return e
    raise AssertionError("the filesystem never filled")


def test_a_full_disk_is_recognised_in_each_guise(tmp_path, tmpfs):
    disk = tmpfs(tmp_path / "disk", "256k")
    db = sqlite3.connect(disk / "store.db")
    db.execute("create table t (b blob)")
    db.commit()
    err = fill(disk)
    assert err.errno == errno.ENOSPC and is_disk_full(err)
    with pytest.raises(OSError) as opened:  # an open() that fails names its file
        (disk / "more").mkdir()
        for i in range(1000):
            (disk / "more" / f"{i}.bin").write_bytes(b"y" * 4096)
    assert is_disk_full(opened.value)
    with pytest.raises(sqlite3.OperationalError) as sql:  # SQLite: "database or disk is full" or "disk I/O error"
        for _ in range(100):
            db.execute("insert into t values (?)", (b"z" * 65536,))
            db.commit()
    assert is_disk_full(sql.value, disk)
    assert is_disk_full(f"OperationalError: {sql.value}", disk)  # as text, the way a Dagster step error holds it
    assert not is_disk_full("OperationalError: disk I/O error", tmp_path)  # a disk with room: a real I/O error
    assert not is_disk_full(RuntimeError("no"), disk) and not is_disk_full(None)
    assert path_in_error("OSError: [Errno 28] No space left on device: '/h/shards/b1/x.tar'") == "/h/shards/b1/x.tar"
    full = DiskFull.at(disk / "store.db", needed=3 << 20, during="image_shards [b1]")
    assert str(full) == (f"disk full writing {disk / 'store.db'} during image_shards [b1] (free {full.free} B of "
                         f"256.0 KB on {disk}; about 3.0 MB needed): free space and run again")
    assert full.free < 4096


def test_sslpipe_run_on_a_full_disk_says_so_in_one_line_and_leaves_no_run_started(tmp_path, tmpfs):
    disk = tmpfs(tmp_path / "disk", "16m")
    home = disk / "home"
    cfg = tiny_home(home)
    leave = 6 << 20  # nearly full: the eval set and a batch's manifests fit, the batch's reports (data docs) do not
    (disk / "filler").write_bytes(b"x" * (shutil.disk_usage(disk).free - leave))
    r = sslpipe("run", "--home", str(home), "--config", str(cfg))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, r.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith(f"sslpipe: disk full writing {home}/"), lines
    assert f"on {disk}" in lines[0] and "free space and run again" in lines[0]
    assert re.search(r"; (about|at least) [0-9.]+ [KM]?B needed\)", lines[0]), lines  # how much to free

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))  # (a read needs no space)
    runs = instance.get_runs()
    assert [r.status for r in runs if r.status in UNFINISHED] == []  # the run that hit the full disk: FAILED
    failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
    assert len(failed) == 1 and failed[0].tags["sslpipe/pid"].isdigit() and failed[0].tags["sslpipe/host"]
    assert instance.event_log_storage.get_concurrency_info("sslpipe_ingest").claimed_slots == []

    (disk / "filler").unlink()  # space again: the home carries on, with nothing left over to clean up
    r = sslpipe("run", "--home", str(home), "--config", str(cfg), "--select", "raw_images,validated_images")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr[-3000:]
    assert "[b1] ok" in r.stdout and "[b2] ok" in r.stdout and "marked run" not in r.stdout
    assert [r.status for r in instance.get_runs() if r.status in UNFINISHED] == []


def test_a_step_that_fills_its_folder_is_named_with_the_folder(tmp_path, tmpfs):
    home = tmp_path / "home"
    cfg = tiny_home(home, batches=("b1",))
    tmpfs(home / "reports", "1m")  # the data docs of a batch take a few MB; the rest of the home has room
    r = sslpipe("run", "--home", str(home), "--config", str(cfg), "--select", "raw_images,validated_images")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith(f"sslpipe: disk full writing {home / 'reports' / 'b1'}"), lines
    assert f"during validated_images [b1] (free 0 B of 1.0 MB on {home / 'reports'}" in lines[0]
    runs = dg.DagsterInstance.from_config(str(home / "dagster")).get_runs()
    assert sorted(r.status.value for r in runs) == ["FAILURE"]  # Dagster recorded the step's failure itself


def test_verbose_shows_the_traceback_as_well(tmp_path, tmpfs):
    disk = tmpfs(tmp_path / "disk", "1m")
    home = disk / "home"
    cfg = tiny_home(home, batches=("b1",))
    fill(disk)
    r = sslpipe("run", "--home", str(home), "--config", str(cfg), "--select", "raw_images", "-v")
    assert r.returncode == 1
    assert "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"sslpipe: disk full writing {home}")
