"""Decide whether one file's bytes are a usable image, and measure it.

`probe_image(data, limits)` returns either `Accepted` (format, size, mode and a 32x32 grayscale
thumbnail for the perceptual hash and image statistics) or `Rejected` (a reason from REASONS and a
human-readable detail). It never raises for bad input.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_ops.pixels import to_8bit

THUMB = 32  # side of the grayscale thumbnail used for the perceptual hash and image statistics, px

# Every quarantine reason, with what it means. Tests and reports rely on these names.
REASONS = {
    "empty": "zero-byte file",
    "unreadable": "the file could not be read (permissions, I/O error, broken link) or its name is not valid UTF-8",
    "not_a_file": "a link to a folder, a FIFO, a socket or a device: not a regular file",
    "outside_batch": "a symbolic link that resolves outside the batch folder: never read (landing policy for links)",
    "unsupported_format": "an image, but in a format or mode the contract does not accept",
    "not_an_image": "no image format recognised in the bytes",
    "truncated": "the image data ends early",
    "undecodable": "the header parsed but the pixel data could not be decoded",
    "too_small": "width or height below the contract's min_side",
    "too_large": "width or height above max_side, or file above max_bytes",
    "decompression_bomb": "width x height above max_pixels (checked before decoding)",
    "duplicate": "the same bytes (sha256) as a sample accepted earlier in this batch or in another batch ingested before it",
    "unlabeled": "an evaluation image with no label (not in labels.csv, or not inside a class folder)",
}


@dataclass(frozen=True)
class ImageLimits:
    """What ingestion accepts. Loaded from the data contract's `images:` section."""

    min_side: int = 8  # px; smaller width or height -> too_small
    max_side: int = 16384  # px; larger width or height -> too_large
    max_pixels: int = 64_000_000  # width*height above this -> decompression_bomb (never decoded)
    max_bytes: int = 64 * 2**20  # bytes; larger files -> too_large (never decoded)
    formats: tuple[str, ...] = ()  # accepted PIL formats (JPEG, PNG, ...); empty: any
    modes: tuple[str, ...] = ()  # accepted PIL modes (RGB, L, ...); empty: any


@dataclass(frozen=True)
class Accepted:
    format: str  # PIL format name: JPEG, PNG, ...
    width: int  # px
    height: int  # px
    mode: str  # PIL mode of the stored image: RGB, L, RGBA, P, CMYK, I;16, ...
    gray: bytes  # THUMB*THUMB bytes: row-major 8-bit luminance thumbnail (see gray_array)


@dataclass(frozen=True)
class Rejected:
    reason: str  # a key of REASONS
    detail: str


def _to_gray(im: Image.Image) -> bytes:
    """THUMB x THUMB 8-bit luminance of any PIL mode (16-bit and float scaled to 0..255, not clipped)."""
    im = to_8bit(im)
    if im.mode != "L":
        im = im.convert("L")
    if im.size != (THUMB, THUMB):
        im = im.resize((THUMB, THUMB), Image.Resampling.BOX if min(im.size) >= THUMB else Image.Resampling.BILINEAR)
    return im.tobytes()


def gray_array(grays: list[bytes]) -> np.ndarray:
    """[N, THUMB, THUMB] float32 luminance (0..255) from Accepted.gray values."""
    return np.frombuffer(b"".join(grays), dtype=np.uint8).reshape(-1, THUMB, THUMB).astype(np.float32)


def probe_image(data: bytes, limits: ImageLimits) -> Accepted | Rejected:
    """Classify and measure one file's bytes. Decodes fully (so truncation is caught) but never an oversized image."""
    n = len(data)
    if n == 0:
        return Rejected("empty", "zero-byte file")
    if n > limits.max_bytes:
        return Rejected("too_large", f"{n} bytes > max_bytes {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        return Rejected("decompression_bomb", str(e))
    except UnidentifiedImageError:
        return Rejected("not_an_image", "no image format recognised")
    except Exception as e:  # a recognised format whose header is cut short or corrupt
        reason = "truncated" if isinstance(e, EOFError) or "truncated" in str(e).lower() else "undecodable"
        return Rejected(reason, f"header: {type(e).__name__}: {e}")
    fmt, (w, h), mode = im.format or "UNKNOWN", im.size, im.mode
    if limits.formats and fmt not in limits.formats:
        return Rejected("unsupported_format", f"format {fmt} is not one of {', '.join(limits.formats)}")
    if limits.modes and mode not in limits.modes:
        return Rejected("unsupported_format", f"mode {mode} ({fmt}) is not one of {', '.join(limits.modes)}")
    if w * h > limits.max_pixels:
        return Rejected("decompression_bomb", f"{w}x{h} = {w * h} px > max_pixels {limits.max_pixels}")
    if min(w, h) < limits.min_side:
        return Rejected("too_small", f"{w}x{h} below min_side {limits.min_side}")
    if max(w, h) > limits.max_side:
        return Rejected("too_large", f"{w}x{h} above max_side {limits.max_side}")
    try:
        if fmt == "JPEG":
            im.draft("L", (THUMB * 2, THUMB * 2))  # DCT-domain downscale: still reads the whole stream
        im.load()
        gray = _to_gray(im)
    except (EOFError, OSError) as e:
        msg = str(e)
        if isinstance(e, EOFError) or "truncated" in msg or "premature end" in msg.lower():
            return Rejected("truncated", f"{type(e).__name__}: {msg}")
        return Rejected("undecodable", f"{type(e).__name__}: {msg}")
    except Exception as e:  # SyntaxError, ValueError, ...: corrupt pixel data
        return Rejected("undecodable", f"{type(e).__name__}: {e}")
    return Accepted(fmt, w, h, mode, gray)
