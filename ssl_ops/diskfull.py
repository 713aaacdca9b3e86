"""A full disk, recognised wherever it surfaces and said in one line.

    if is_disk_full(err, path=home):               # an exception (its causes too) or an error's text
        raise DiskFull.at(path_written, needed=n) from err
    str(DiskFull.at("/h/shards/b1", needed=3 << 20, during="image_shards [b1]"))
    # -> "disk full writing /h/shards/b1 during image_shards [b1] (free 0 B of 8.0 MB on /h; about 3.0 MB
    #     needed): free space and run again"

A full disk reaches the pipeline in several guises: OSError ENOSPC (or EDQUOT, a full quota) from a plain
write, SQLite's SQLITE_FULL ("database or disk is full"), and SQLite's SQLITE_IOERR ("disk I/O error"),
which SQLite also returns when a write of its journal or WAL fails for want of space. The last one means
a full disk only when the filesystem is in fact (nearly) full, so is_disk_full checks that with
shutil.disk_usage before saying so.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

FULL_BELOW = 1 << 20  # bytes: a filesystem with less free than this counts as full (for SQLite's disk I/O error)
_ENOSPC = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE = re.compile(r"\[Errno (?:28|122)\]|No space left on device|Disk quota exceeded|database or disk is full")
_IO_ERROR = re.compile(r"disk I/O error")
_PATH_IN_TEXT = re.compile(r"(?:No space left on device|Disk quota exceeded): '([^']+)'")


def is_disk_full(err: BaseException | str | None, path: str | os.PathLike | None = None) -> bool:
    """True when `err` says the disk is full: an OSError ENOSPC/EDQUOT anywhere in its chain of causes,
    SQLite's "database or disk is full", or SQLite's "disk I/O error" while the filesystem of `path` has
    less than FULL_BELOW free. `err` may be an exception or the text of one (e.g. a Dagster step's error)."""
    texts = []
    for e in _chain(err) if isinstance(err, BaseException) else []:
        if isinstance(e, OSError) and e.errno in _ENOSPC:
            return True
        texts.append(f"{type(e).__name__}: {e}")
    if isinstance(err, str):
        texts.append(err)
    text = "\n".join(texts)
    if _NO_SPACE.search(text):
        return True
    return bool(_IO_ERROR.search(text)) and path is not None and free_bytes(path) < FULL_BELOW


def path_in_error(err: BaseException | str | None) -> str | None:
    """The file an ENOSPC error names, when it names one (a failed open() does; a failed write() does not)."""
    for e in _chain(err) if isinstance(err, BaseException) else []:
        if isinstance(e, OSError) and e.errno in _ENOSPC and e.filename:
            return os.fsdecode(e.filename)
    m = _PATH_IN_TEXT.search(err if isinstance(err, str) else "")
    return m.group(1) if m else None


class DiskFull(OSError):
    """The disk under `path` is full; str() is the one line to show (what, where, how much is free)."""

    def __init__(self, path: str | os.PathLike, free: int, total: int, mount: str, needed: int | None = None,
                 during: str = "", at_least: bool = False):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.path, self.free, self.total, self.mount, self.needed = str(path), free, total, mount, needed
        self.during = during  # what was running, e.g. "validated_images [b1]"
        self.at_least = at_least  # `needed` is a floor (the room to record the failure), not an estimate

    @classmethod
    def at(cls, path: str | os.PathLike, needed: int | None = None, during: str = "",
           at_least: bool = False) -> "DiskFull":
        """Measure the filesystem that holds `path` now (its nearest existing folder)."""
        where = _existing(path)
        usage = shutil.disk_usage(where)
        return cls(path, usage.free, usage.total, str(mount_point(where)), needed, during, at_least)

    def __str__(self) -> str:
        need = f"; {'at least' if self.at_least else 'about'} {human_bytes(self.needed)} needed" if self.needed else ""
        during = f" during {self.during}" if self.during else ""
        return (f"disk full writing {self.path}{during} (free {human_bytes(self.free)} of "
                f"{human_bytes(self.total)} on {self.mount}{need}): free space and run again")


def free_bytes(path: str | os.PathLike) -> int:
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return 0


def mount_point(path: str | os.PathLike) -> Path:
    p = Path(path).resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__
