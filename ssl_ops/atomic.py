"""Atomic file writes: a temporary file beside the target, fsync, rename. Readers see the old or the new file
whole; a failed write (a full disk) removes its temporary file, and those of writers that died (killed, or
stopped before they could clean up) are removed by the next write of the same file.

    atomic_write(path, lambda f: f.write(data))          # f: a binary file object
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

from ssl_ops.locks import pid_alive


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """`.<name>.<pid>.tmp` beside path: hidden, and naming the process that writes it."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def remove_dead_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files beside `path` whose writer process is gone; a live writer's are left alone.
    -> the files removed."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
