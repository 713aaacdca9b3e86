"""Advisory file locks between processes that share one home (fcntl.flock on a lock file).

    with file_lock(home / "models" / key / ".lock", what=f"training {key}", timeout=None):
        ...                                  # one process at a time holds it; others wait (or time out)

    lock = try_lock(path)                    # None when another process holds it
    if lock is not None:
        with lock: ...

flock locks belong to an open file description: they are released when the holder closes the file or
dies (a killed process never leaves a stale lock behind), and they are not inherited across exec.
The lock file itself is left in place (removing it would race with a process about to lock it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than the caller was willing to wait."""


class HeldLock:
    """An acquired lock; release() (or leaving the `with` block) lets the next process in."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "HeldLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def try_lock(path: str | os.PathLike) -> HeldLock | None:
    """The lock if it is free now, else None (never waits)."""
    path = Path(path)
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:  # say who holds it, for the message of a process that waits
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return HeldLock(fd, path)


def holder(path: str | os.PathLike) -> str:
    """The process id written by the lock's current (or last) holder, or '' if unknown."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str = "", timeout: float | None = None, poll: float = 0.1,
              on_wait=None):
    """Hold an exclusive lock on `path` for the block. timeout: seconds to wait (None: forever).

    on_wait(message) is called once when the lock is busy, so that a caller can say why it waits.
    """
    path = Path(path)
    held = try_lock(path)
    if held is None:
        if on_wait is not None:
            pid = holder(path)
            on_wait(f"waiting for another process{f' (pid {pid})' if pid else ''} to finish {what or path} "
                    f"(lock {path})")
        deadline = None if timeout is None else time.monotonic() + timeout
        while held is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"another process has held the lock on {what or path} ({path}) for over "
                                  f"{timeout:g}s; wait for it to finish, or stop it")
            time.sleep(poll)
            held = try_lock(path)
    try:
        yield held
    finally:
        held.release()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (another user's counts): a temporary file named
    after a dead pid belongs to a writer that was killed or crashed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
