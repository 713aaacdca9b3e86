"""Real processes and real filesystems for the tests of homes shared between runs and of full disks:
tiny homes, `sslpipe` as a subprocess, small tmpfs mounts, and a start barrier for racing processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from imagefiles import jpeg_bytes, write

PROJECT = Path(__file__).resolve().parents[2]
TINY_TRAIN = {"method": "simclr", "backbone": "resnet18", "width": 8, "image_size": 32, "batch_size": 32, "steps": 3,
              "warmup_steps": 1, "workers": 0, "checkpoint_every": 0, "health_every": 1}


def tiny_home(root: Path, batches=("b1", "b2"), images: int = 6) -> Path:
    """A home with `images` small JPEGs per landing batch and a 2-class eval set of 12; -> its config file
    (one ingestion process, a 3-step training)."""
    for k, b in enumerate(batches):
        for i in range(images):
            write(root / "landing" / b / f"{i}.jpg", jpeg_bytes(100 * k + i))
        (root / "landing" / b / "_READY").touch()  # complete (subprocesses keep the shipped quiet period)
    for c in ("cat", "dog"):
        for i in range(6):
            write(root / "eval" / c / f"{i}.jpg", jpeg_bytes(500 + 10 * (c == "dog") + i, size=(36, 36)))
    cfg = root.parent / f"{root.name}-config.yaml"
    cfg.write_text(yaml.safe_dump({"workers": 1, "train": TINY_TRAIN}))
    return cfg


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSLPIPE_", "DAGSTER_HOME"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), str(PROJECT / "tests")])
    return env


def sslpipe(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=PROJECT, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    """A Python process running `code` (sys.argv[1:] = args), its output captured."""
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=PROJECT, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str, str]]:
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


# The racing processes import everything first, then meet here: each says it is ready, and all go together.
BARRIER = '''
def barrier(folder, me, n):
    import os, pathlib, time
    d = pathlib.Path(folder); d.mkdir(parents=True, exist_ok=True)
    (d / f"ready-{me}").touch()
    t0 = time.time()
    while len(list(d.glob("ready-*"))) < n and time.time() - t0 < 60:
        time.sleep(0.001)
'''


class Tmpfs:
    """Mounts small tmpfs filesystems (a real full disk); unmounts them at the end. Skips where not permitted."""

    def __init__(self):
        self.mounted: list[Path] = []

    def __call__(self, path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root (run the tests as root)")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}): a real full disk is needed")
        self.mounted.append(path)
        return path

    def unmount_all(self) -> None:
        for p in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(p)], capture_output=True)
        self.mounted.clear()


def wait_for(predicate, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
