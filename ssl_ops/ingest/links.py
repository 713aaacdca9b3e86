"""The landing policy for symbolic links inside a batch folder (or the eval folder).

    link_outside_batch(os.path.realpath(batch_dir), path)  # -> the target when it lies outside, else None

A link that resolves inside the batch folder is read like the file it names (and is then a duplicate of
it). A link that resolves outside (to another batch, another folder of the machine, /etc/passwd) is
quarantined as `outside_batch` and never opened, stat'ed or hashed; a sidecar (metadata.csv, labels.csv)
that does so is refused. The contract's `batch.links: follow` reads such links too, for landing folders
built from links on purpose.
"""

from __future__ import annotations

import os

LINK_POLICIES = ("inside", "follow")  # the contract's batch.links; see link_outside_batch


def link_outside_batch(root_real: str, path: str) -> str | None:
    """Where a symbolic link at `path` leads when that is outside the batch folder (root_real: the batch folder's
    realpath), else None (not a link, or a link inside). Only the link chain is read (readlink), never the
    target's bytes."""
    if not os.path.islink(path):
        return None
    target = os.path.realpath(path)
    if target == root_real or target.startswith(root_real.rstrip(os.sep) + os.sep):
        return None
    return target
