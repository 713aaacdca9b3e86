"""Confirm a perceptual-hash match by the pixels: is a pHash near pair really the same picture?

pHash keeps only the 8x8 lowest DCT frequencies of a 32x32 luminance thumbnail, so two different pictures
that share a layout (aligned face crops of different people, centred objects on plain backgrounds) can
land within a few bits of each other. Before an image is excluded as a copy of an eval image or flagged
as a near duplicate, the pair is confirmed here by a second, pixel-level measure:

    mean pixel difference = mean |a' - b'| over the two images' luminance decoded to 64x64 the same way
    (grey levels, 0..255), after matching brightness and contrast (a', b': each centred and scaled to the
    pair's mean standard deviation); the raw difference (no matching) is reported beside it;
    correlation = Pearson correlation of the same thumbnails (-1..1).

64x64 rather than pHash's own 32x32: line drawings (sketches) of different objects on white agree at 32x32
(correlation up to 0.97 on PACS) and differ at 64x64.

A pair is confirmed when the difference is at or below the contract's threshold and the correlation at or
above its minimum (`leakage: max_pixel_difference, min_correlation`; `bias:
near_duplicate_max_pixel_difference, near_duplicate_min_correlation`; defaults
data_contracts.contract.MAX_PIXEL_DIFFERENCE = 16 and MIN_CORRELATION = 0.85, measured by
bench/phash_confirm.py). Exact sha256 copies never need this.

Only the candidate pairs' images are read (few): from a folder (the eval set, a landing batch) or from the
WebDataset shards (by the tar member offsets, one seek each). Bytes are checked against the sample id
(sha256); an image that cannot be read or no longer matches its id cannot be confirmed either way and is
kept as a match ("unverified"): a copy must not slip through because a file moved.

    pm = PixelMatcher({"eval": FolderSource(eval_dir), "train": ShardSource.of(shard_paths)}, 16, 0.85)
    v = pm.verdict(("eval", sample_id, path), ("train", sample_id2, "<batch>/<path>"))
    v.confirmed, v.difference, v.correlation   # difference None: an image could not be read (kept as a match)
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from PIL import Image

from data_contracts.contract import MAX_PIXEL_DIFFERENCE, MIN_CORRELATION
from ssl_ops.ingest.probe import ImageLimits
from ssl_ops.pixels import to_8bit

__all__ = ["MAX_PIXEL_DIFFERENCE", "MIN_CORRELATION", "SIDE", "FolderSource", "ShardSource", "PixelMatcher",
           "thumbnail", "mean_pixel_difference", "raw_pixel_difference", "correlation", "Verdict"]

SIDE = 64  # px: both images of a pair are decoded to SIDE x SIDE luminance, the same way, before comparing

# A source: (sample id, name) -> the image's bytes, or None when it cannot be read.
Source = Callable[[str, str], "bytes | None"]


def thumbnail(data: bytes, side: int = SIDE) -> np.ndarray | None:
    """[side, side] float32 luminance (0..255) of an image's bytes (BOX-averaged down, bilinear up: the resize
    ingestion uses for the pHash thumbnail, at twice its size); None if it does not decode or is a
    decompression bomb."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > ImageLimits().max_pixels:
                return None
            if im.format == "JPEG":
                im.draft("L", (side * 2, side * 2))  # DCT-domain downscale, never below 2x side
            im.load()
        im = to_8bit(im)
        if im.mode != "L":
            im = im.convert("L")
        if im.size != (side, side):
            im = im.resize((side, side), Image.Resampling.BOX if min(im.size) >= side else Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float32)
    except Exception:  # undecodable now (it decoded at ingestion): treated as unreadable
        return None


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two luminance thumbnails (-1..1): 1 for the same picture whatever its brightness and
    contrast; thin-line drawings of different objects with the same outline stay well below it."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.sqrt((a * a).sum()), np.sqrt((b * b).sum())
    if na < 1e-6 or nb < 1e-6:
        return 1.0 if na < 1e-6 and nb < 1e-6 else 0.0
    return float((a * b).sum() / (na * nb))


def raw_pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two luminance thumbnails as they are, in grey levels (0..255)."""
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def mean_pixel_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two luminance thumbnails after matching brightness and contrast, in grey
    levels (0..255): each thumbnail is centred on its mean and scaled to the pair's mean standard deviation.
    Symmetric. A brightness or contrast change, a re-encode or a resize leaves it small (at most 9.2 on PACS
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
    correlation: float | None = None  # Pearson correlation of the thumbnails (-1..1)
    why: str = ""  # words for reports

    @property
    def verified(self) -> bool:
        return self.difference is not None

    def fields(self) -> dict:
        """For reports: {"difference", "raw", "correlation"}."""
        return {"difference": self.difference, "raw": self.raw, "correlation": self.correlation}


class PixelMatcher:
    """Confirms pHash pairs by the pixels: mean pixel difference at most `max_difference` and correlation at least
    `min_correlation`. Each image is read and decoded once (cached).

    sources: name -> Source; a pair names its images as (source name, sample id, name within the source)."""

    def __init__(self, sources: dict[str, Source], max_difference: float = MAX_PIXEL_DIFFERENCE,
                 min_correlation: float = MIN_CORRELATION):
        self.sources = sources
        self.max_difference = float(max_difference)
        self.min_correlation = float(min_correlation)
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
            return Verdict(True, None, None, None, "pixels not verified (an image could not be read, or its bytes "
                                                   "changed since ingestion): kept as a match")
        d, raw = round(mean_pixel_difference(ta, tb), 1), round(raw_pixel_difference(ta, tb), 1)
        r = round(correlation(ta, tb), 3)
        if d <= self.max_difference and r >= self.min_correlation:
            return Verdict(True, d, raw, r, f"confirmed: mean pixel difference {d:.1f} <= {self.max_difference:g}, "
                                            f"correlation {r:.3f} >= {self.min_correlation:g}")
        return Verdict(False, d, raw, r, f"pHash match not confirmed: mean pixel difference {d:.1f} (at most "
                                         f"{self.max_difference:g}; {raw:.1f} before matching brightness and contrast), "
                                         f"correlation {r:.3f} (at least {self.min_correlation:g})")
