"""Bring any PIL image to 8 bits per channel without clipping: 16-bit and 32-bit/float images are scaled."""

from __future__ import annotations

import numpy as np
from PIL import Image

WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_8bit(im: Image.Image) -> Image.Image:
    """16-bit modes scaled by 255/65535, 'I' and 'F' by 255/max; other modes returned as they are."""
    if im.mode not in WIDE_MODES:
        return im
    arr = np.asarray(im, dtype=np.float32)
    top = 65535.0 if im.mode.startswith("I;16") else max(float(arr.max()), 1.0)
    return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8))
