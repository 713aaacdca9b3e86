"""A minimal, reproducible WebDataset tar writer: USTAR members `<key>.<ext>`, fixed mtime, owner and mode.

webdataset.TarWriter writes PAX headers whatever its `format` argument says (and imports torch); plain
USTAR headers are enough for our member names (64 hex digits + an extension) and cost less to write.
The result is an ordinary WebDataset shard: `webdataset.WebDataset(url)` reads it.
"""

from __future__ import annotations

import io
import tarfile

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z, for every member
OWNER = "sslpipe"


class ShardTar:
    def __init__(self, fileobj):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT)

    def write(self, key: str, members: dict[str, bytes]) -> int:
        """Add one sample: a member `<key>.<ext>` per entry, in sorted extension order. Returns its bytes."""
        total = 0
        for ext in sorted(members):
            data = members[ext]
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size, ti.mtime, ti.mode = len(data), FIXED_MTIME, 0o444
            ti.uname = ti.gname = OWNER
            self._tar.addfile(ti, io.BytesIO(data))
            total += len(data)
        return total

    def close(self) -> None:
        self._tar.close()
