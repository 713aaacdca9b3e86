"""Real image files of every awkward kind, and access to the shared datasets, for the tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def jpeg_bytes(seed: int, size=(40, 32), quality=90) -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)  # smooth content: a real-looking, compressible image
    im = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(mode: str, size=(24, 24), value=None) -> bytes:
    buf = io.BytesIO()
    if mode == "I;16":
        arr = np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0]).astype(np.uint16)
        im = Image.fromarray(arr)
    elif mode == "P":
        im = Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).quantize(16)
    else:
        im = Image.new(mode, size, value if value is not None else 128)
    im.save(buf, "PNG")
    return buf.getvalue()


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (30, 30), (10, 200, 30, 5)).save(buf, "JPEG")
    return buf.getvalue()


def bomb_png(side: int = 9000) -> bytes:
    """A real PNG of side x side 1-bit pixels: a few KB on disk, side^2 pixels when decoded."""
    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, "PNG")
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


ZOO_EXPECTED = {
    "good.jpg": "accepted", "empty.jpg": "empty", "truncated.jpg": "truncated", "text.jpg": "not_an_image",
    "alpha.png": "accepted", "sixteen.png": "accepted", "palette.png": "accepted", "cmyk.jpg": "accepted",
    "bomb.png": "decompression_bomb", "tiny.png": "too_small", "nested/deeper/copy of good.jpg": "duplicate",
    "ünïcode 画像.jpg": "accepted",
}


def need_shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent: the shared datasets (../shared/datasets beside the project) are needed")
    return p


def extract(zip_path: Path, dest: Path, prefix: str = "", limit: int | None = None, every: int = 1,
            strip: int = 0) -> list[str]:
    """Extract image members under `prefix` (every n-th, at most `limit`) into dest, minus `strip` leading parts."""
    out = []
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/"))
        for n in names[::every][:limit]:
            rel = "/".join(n.split("/")[strip:])
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(n))
            out.append(rel)
    return out
