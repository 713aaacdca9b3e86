"""Confirm a perceptual-hash match by the pixels: is a pHash near pair really the same picture?

pHash keeps only the 8x8 lowest DCT frequencies of a 32x32 luminance thumbnail, so two different pictures
that share a layout (aligned face crops of different people, centred objects on plain backgrounds) can
land within a few bits of each other. Before an image is excluded as a copy of an eval image or flagged
as a near duplicate, the pair is confirmed here by a second, pixel-level measure:

    mean pixel difference = mean |a' - b'| over the two 32x32 luminance thumbnails (grey levels, 0..255),
    after matching brightness and contrast (a', b': each thumbnail centred and scaled to the pair's mean
    standard deviation), where each thumbnail is exactly the one ingestion hashed (ssl_ops.ingest.probe: the
    same decode and resize). The raw difference (no matching) is reported beside it.

A pair is confirmed when the difference is at or below the contract's threshold (`leakage:
max_pixel_difference` and `bias: near_duplicate_max_pixel_difference`, default
data_contracts.contract.MAX_PIXEL_DIFFERENCE). Exact sha256 copies never need this.

Only the candidate pairs' images are read (few): from a folder (the eval set, a landing batch) or from the
WebDataset shards (by the tar member offsets, one seek each). Bytes are checked against the sample id
(sha256); an image that cannot be read or no longer matches its id cannot be confirmed either way and is
kept as a match ("unverified"): a copy must not slip through because a file moved.

    pm = PixelMatcher({"eval": FolderSource(eval_dir), "train": ShardSource.of(shard_paths)}, max_difference=12)
    d = pm.difference(("eval", sample_id, path), ("train", sample_id2, path2))   # float, or None if unreadable
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_contracts.contract import MAX_PIXEL_DIFFERENCE
from ssl_ops.ingest.probe import THUMB, Accepted, ImageLimits, probe_image

__all__ = ["MAX_PIXEL_DIFFERENCE", "FolderSource", "ShardSource", "PixelMatcher", "thumbnail",
           "mean_pixel_difference", "raw_pixel_difference", "Verdict"]

# A source: (sample id, name) -> the image's bytes, or None when it cannot be read.
Source = Callable[[str, str], "bytes | None"]


def thumbnail(data: bytes) -> np.ndarray | None:
    """[32, 32] float32 luminance (0..255) of an image's bytes, as ingestion made it for the pHash; None if it
    does not decode."""
    r = probe_image(data, ImageLimits())
    if not isinstance(r, Accepted):
        return None
    return np.frombuffer(r.gray, dtype=np.uint8).reshape(THUMB, THUMB).astype(np.float32)


def raw_pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two luminance thumbnails as they are, in grey levels (0..255)."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def mean_pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two luminance thumbnails after matching brightness and contrast, in grey
    levels (0..255): each thumbnail is centred on its mean and scaled to the pair's mean standard deviation.
    Symmetric. A brightness or contrast change, a re-encode or a resize leaves it small (at most 8 on PACS
    face photos); the fine structure of a different picture with the same layout does not (see the module)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    sa, sb = a.std(), b.std()
    if sa < 1e-6 or sb < 1e-6:  # a flat image: nothing to normalise, compare as is
        return raw_pixel_difference(a, b)
    s = (sa + sb) / 2
    return float(np.mean(np.abs((a - a.mean()) / sa - (b - b.mean()) / sb)) * s)


def _checked(data: bytes | None, sample_id: str) -> bytes | None:
    if data is None or (sample_id and hashlib.sha256(data).hexdigest() != sample_id):
        return None  # changed since it was ingested: not the image the hash was computed from
    return data


@dataclass
class FolderSource:
    """Images under a folder by their manifest path (the eval set; a landing batch). `root` may be a function of
    the batch name: FolderSource(lambda batch: home.batch_dir(batch)), then names are '<batch>/<path>'."""

    root: Path | Callable[[str], Path]

    def __call__(self, sample_id: str, name: str) -> bytes | None:
        if callable(self.root):
            batch, _, rel = name.partition("/")
            base = Path(self.root(batch))
        else:
            base, rel = Path(self.root), name
        p = base / rel
        try:
            if not stat.S_ISREG(os.stat(p).st_mode):
                return None  # never open a FIFO or a device (it could block); ingestion read regular files only
            return _checked(p.read_bytes(), sample_id)  # the sha256 must still be the sample id's
        except (OSError, ValueError):
            return None


@dataclass
class ShardSource:
    """Images inside WebDataset shards, found by sample id: {sample id: (tar path, data offset, size)}."""

    members: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    @staticmethod
    def members_of(path: Path | str) -> dict[str, tuple[str, int, int]]:
        """The image members of one shard by sample id (tar headers only). `.json` members are skipped."""
        out = {}
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if m.isfile():
                    key, _, ext = m.name.partition(".")
                    if ext != "json":
                        out[key] = (str(path), m.offset_data, m.size)
                    else:
                        out.setdefault(key, None)
        return out

    @classmethod
    def of(cls, shard_paths: Iterable[Path | str]) -> "ShardSource":
        members = {}
        for p in shard_paths:
            members.update({k: v for k, v in cls.members_of(p).items() if v is not None})
        return cls(members)

    def __call__(self, sample_id: str, name: str) -> bytes | None:
        where = self.members.get(sample_id)
        if where is None:
            return None
        path, offset, size = where
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return _checked(f.read(size), sample_id)
        except OSError:
            return None


@dataclass(frozen=True)
class Verdict:
    confirmed: bool  # counts as a copy: the pixels agree, or they could not be read (kept, to be safe)
    difference: float | None  # mean pixel difference after matching brightness and contrast (0..255); None: unread
    raw: float | None = None  # mean pixel difference as the images are (0..255)
    why: str = ""  # words for reports

    @property
    def verified(self) -> bool:
        return self.difference is not None


class PixelMatcher:
    """Confirms pHash pairs by mean pixel difference; each image is read and decoded once (cached).

    sources: name -> Source; a pair names its images as (source name, sample id, name within the source)."""

    def __init__(self, sources: dict[str, Source], max_difference: float = MAX_PIXEL_DIFFERENCE):
        self.sources = sources
        self.max_difference = float(max_difference)
        self._thumbs: dict[tuple[str, str], np.ndarray | None] = {}
        self.images_read = 0

    def _thumb(self, source: str, sample_id: str, name: str) -> np.ndarray | None:
        key = (source, sample_id or name)
        if key not in self._thumbs:
            data = self.sources[source](sample_id, name)
            self.images_read += data is not None
            self._thumbs[key] = thumbnail(data) if data is not None else None
        return self._thumbs[key]

    def verdict(self, a: tuple[str, str, str], b: tuple[str, str, str]) -> Verdict:
        """a, b: (source, sample id, name)."""
        ta, tb = self._thumb(*a), self._thumb(*b)
        if ta is None or tb is None:
            return Verdict(True, None, None, "pixels not verified (an image could not be read, or its bytes changed "
                                             "since ingestion): kept as a match")
        d, raw = round(mean_pixel_difference(ta, tb), 1), round(raw_pixel_difference(ta, tb), 1)
        if d <= self.max_difference:
            return Verdict(True, d, raw, f"confirmed: mean pixel difference {d:.1f} <= {self.max_difference:g}")
        return Verdict(False, d, raw, f"pHash match not confirmed: mean pixel difference {d:.1f} "
                                      f"(> {self.max_difference:g}; {raw:.1f} before matching brightness and contrast)")
