"""When is a landing batch folder complete? When it holds a `_READY` file (the marker wins), or when nothing in
it changed for a quiet period. Incomplete folders are never ingested.

    ready, why = batch_readiness(Path("landing/b7"), quiet_seconds=60)

"Changed" is the newest of each file's mtime and ctime: a copy that keeps the files' old mtimes (cp -p,
rsync -t) still changes their ctime, which no one can set back. The folder may vanish or change while it is
looked at (a producer deletes it, renames a file): that is an answer (not ready, and why), never an error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

READY_MARKER = "_READY"  # an empty file a producer writes last, when the batch is complete


def _walk_files(folder: Path):
    """(path, stat) of each file under folder; files or folders that vanish meanwhile are left out."""
    for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda e: None):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:  # vanished, or a dangling link: not a file of the batch now
                continue
            if not name.startswith(".") or name == READY_MARKER:
                yield p, st


def batch_readiness(folder: Path, quiet_seconds: float, now: float | None = None) -> tuple[bool, str]:
    """-> (complete, why): "marked _READY", "unchanged for 75s", or why it is not complete and what makes it so."""
    now = time.time() if now is None else now
    if not folder.is_dir():
        return False, "the folder is gone (deleted or renamed while it was being looked at)"
    marker = folder / READY_MARKER
    newest, files = 0.0, 0
    for p, st in _walk_files(folder):
        if p == marker:
            continue
        files += 1
        newest = max(newest, st.st_mtime, st.st_ctime)
    has_marker = marker.is_file()
    if not folder.is_dir():
        return False, "the folder is gone (deleted or renamed while it was being looked at)"
    return _decide(files, newest, has_marker, quiet_seconds, now)


def listing_readiness(files: list[tuple[str, int, float]], quiet_seconds: float,
                      now: float | None = None) -> tuple[bool, str]:
    """The same rule for a batch in object storage, from its listing [(name relative to the batch, size, last
    modified)]: the `_READY` object wins, else the newest object's time against the quiet period. Hidden names
    (a '.' in front of any part) are not files of the batch, as in a folder."""
    now = time.time() if now is None else now
    has_marker, newest, n = False, 0.0, 0
    for name, _, mtime in files:
        if name == READY_MARKER:
            has_marker = True
        elif not any(part.startswith(".") for part in name.split("/")):
            n += 1
            newest = max(newest, mtime)
    return _decide(n, newest, has_marker, quiet_seconds, now)


def _decide(files: int, newest: float, has_marker: bool, quiet_seconds: float, now: float) -> tuple[bool, str]:
    if files == 0:
        return False, (f"{READY_MARKER} is there but the folder holds no files: nothing to ingest" if has_marker
                       else "empty folder (no files yet)")
    if has_marker:
        return True, f"marked {READY_MARKER}"
    age = now - newest
    if age >= quiet_seconds:
        return True, f"unchanged for {age:.0f}s (quiet period {quiet_seconds:g}s)"
    return False, (f"still landing: its newest file changed {max(age, 0):.0f}s ago; it is taken once nothing in it "
                   f"changed for {quiet_seconds:g}s, or at once when it holds a {READY_MARKER} file")
