"""Fixtures shared by all tests: awkward image files, and a clean environment after each test."""

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one torch (OpenMP) thread each, and in the processes they start, not two each
    # fighting over the cores. Set before torch is first imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from imagefiles import bomb_png, cmyk_jpeg, jpeg_bytes, png_bytes, write  # noqa: E402

TESTS = Path(__file__).resolve().parent
# The files that take longest (CI's --durations: a real daemon, all of CIFAR-10, the demo at its shipped default,
# the production services), started first so that no worker is left with one of them at the end.
LONG_FIRST = ("pipelines/test_daemon.py", "pipelines/test_real_data.py", "production/",
              "assets/test_registered_model.py", "assets/test_ssl_encoder.py")


def _scope(nodeid: str) -> str:
    """The unit one worker runs whole: a test file (its module fixtures built once), or all of tests/production
    (its tests share one set of services, and some stop the MLflow server)."""
    path = nodeid.split("::", 1)[0]
    return "tests/production" if path.startswith("tests/production/") else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """The suite runs on two pytest-xdist workers (`-n 2 --dist loadscope` in pyproject.toml), each taking the
    scopes of `_scope` whole, in collection order. (xdist's `loadgroup` does not group under pytest 9: it renames
    node ids through an attribute pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrServices(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return FileOrServices(config, log)


def pytest_collection_modifyitems(config, items):
    """LONG_FIRST's files first, each file's tests in their own order."""
    def rank(item) -> int:
        rel = Path(str(item.path)).resolve().relative_to(TESTS).as_posix()
        return next((i for i, p in enumerate(LONG_FIRST) if rel.startswith(p)), len(LONG_FIRST))

    items.sort(key=rank)  # stable


@pytest.fixture(autouse=True)
def restore_environ():
    """A test that sets variables (SSLPIPE_CONFIG for a code location, ...) by hand leaves none behind. (The pipeline
    itself puts nothing there: tests/pipelines/test_graph.py checks that.)"""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True, scope="session")
def landing_is_complete_at_once():
    """Tests write a batch folder and run at once: a quiet period of 0 makes every folder complete (as a _READY
    file would), for module fixtures too. Subprocesses do not see this: the tests that start them write _READY
    files."""
    from pipelines.settings import DEFAULT_AUTOMATION

    shipped = DEFAULT_AUTOMATION["quiet_seconds"]
    DEFAULT_AUTOMATION["quiet_seconds"] = 0
    yield shipped
    DEFAULT_AUTOMATION["quiet_seconds"] = shipped


@pytest.fixture(autouse=True)
def shipped_quiet_period(request, monkeypatch, landing_is_complete_at_once):
    """Tests of the quiet period itself (marked `quiet_period`) get the shipped one back."""
    if request.node.get_closest_marker("quiet_period") is not None:
        monkeypatch.setitem(__import__("pipelines.settings").settings.DEFAULT_AUTOMATION, "quiet_seconds",
                            landing_is_complete_at_once)


@pytest.fixture(scope="session")
def bomb() -> bytes:
    return bomb_png()


@pytest.fixture
def zoo(tmp_path, bomb) -> Path:
    """A batch folder holding one file of each awkward kind. Expected outcome per file in ZOO_EXPECTED."""
    d = tmp_path / "zoo"
    good = jpeg_bytes(1)
    write(d / "good.jpg", good)
    write(d / "empty.jpg", b"")
    write(d / "truncated.jpg", jpeg_bytes(2, size=(64, 64))[:300])
    write(d / "text.jpg", b"this is not an image, just text\n")
    write(d / "alpha.png", png_bytes("RGBA", value=(200, 10, 10, 128)))
    write(d / "sixteen.png", png_bytes("I;16"))
    write(d / "palette.png", png_bytes("P"))
    write(d / "cmyk.jpg", cmyk_jpeg())
    write(d / "bomb.png", bomb)
    write(d / "tiny.png", png_bytes("RGB", size=(1, 1)))
    write(d / "nested" / "deeper" / "copy of good.jpg", good)  # duplicate, spaces, nested
    write(d / "ünïcode 画像.jpg", jpeg_bytes(3))
    return d


@pytest.fixture(scope="session")
def cifar_shards(tmp_path_factory) -> Path:
    """1,000 real CIFAR-10 train images (every 50th) ingested and written as 8 shards of 125: -> index.json."""
    from imagefiles import extract, need_shared
    from ssl_ops.ingest import ImageLimits, scan_batch
    from ssl_ops.shards import ShardConfig, shard_batch

    z = need_shared("cifar10-jpg", "train.zip")
    root = tmp_path_factory.mktemp("cifar-shards")
    extract(z, root / "landing", "train/", every=50)
    accepted = scan_batch(root / "landing", "cifar", ImageLimits(), workers=1).accepted
    shard_batch(accepted, root / "landing", root / "shards", ShardConfig(max_samples=125))
    return root / "shards" / "index.json"
