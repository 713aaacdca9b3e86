"""Image pairs for the pHash confirmation tests (ssl_ops.pixel_match): a look-alike (the same pHash, other
pixels), a true near copy (re-encoded, brighter), and a real colliding pair of different people's faces."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image, ImageEnhance

from imagefiles import SHARED
from ssl_ops.phash import _dct_matrix

SIDE = 64  # px of the files; their 32x32 thumbnails (BOX, the pHash's input) are the constructed pictures
# Two photos of two different people in PACS's photo/person (aligned frontal face crops), 4 pHash bits apart:
# found by bench/phash_confirm.py, checked by eye; mean pixel difference 33.8 (38.2 raw), correlation 0.647
PACS_FACES = ("photo/person/253_0127.jpg", "photo/person/253_0223.jpg")
# Two PACS sketches, a giraffe and a guitar, 4 pHash bits apart: thin lines on white, so their mean pixel
# difference is small (10.7 of 255); their correlation (0.38) tells them apart
PACS_SKETCHES = ("sketch/giraffe/n02439033_67-5.jpg", "sketch/guitar/n02676566_6560-4.jpg")


def _smooth(rng, cells: int, lo: float, hi: float) -> np.ndarray:
    a = rng.uniform(lo, hi, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(a, mode="F").resize((32, 32), Image.Resampling.BICUBIC), np.float64)


def _png(gray32: np.ndarray) -> bytes:
    im = Image.fromarray(np.clip(np.round(gray32), 0, 255).astype(np.uint8), "L").resize((SIDE, SIDE), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def lookalike_pair(seed: int = 2) -> tuple[bytes, bytes]:
    """(a, b): two PNG pictures whose 32x32 thumbnails share the 8x8 lowest DCT frequencies (what pHash sees) but
    not the rest: b's structure above pHash's resolution comes from another random picture."""
    rng = np.random.default_rng(seed)
    d = _dct_matrix(32).astype(np.float64)
    a = _smooth(rng, 5, 70, 185)
    other = _smooth(rng, 16, 20, 235)
    ca, co = d @ a @ d.T, d @ other @ d.T
    co[:8, :8] = ca[:8, :8]
    return _png(a), _png(d.T @ co @ d)


def near_copy(data: bytes, brightness: float = 1.08, quality: int = 80) -> bytes:
    """The same picture re-encoded as JPEG, a little brighter."""
    im = ImageEnhance.Brightness(Image.open(io.BytesIO(data)).convert("RGB")).enhance(brightness)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def pacs_pair(names: tuple[str, str] = PACS_FACES) -> tuple[bytes, bytes] | None:
    z = SHARED / "pacs-64" / "pacs-64px.zip"
    if not z.exists():
        return None
    with zipfile.ZipFile(z) as f:
        return f.read(names[0]), f.read(names[1])
