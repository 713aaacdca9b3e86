"""The ranges of every method option (`train.method_options`), checked when the config is read.

    check_options("simclr", {"temperature": -1})   # ValueError: method_options.temperature must be > 0, got -1

One table for all methods: an option means the same wherever it appears (a temperature is positive, a
momentum lies in [0, 1], a width is a whole number >= 1). A method's constructor keeps its own defaults.
"""

from __future__ import annotations

import math

# name -> (kind, low, high, low_inclusive, high_inclusive); None = unbounded
_POS_INT = ("int", 1, None, True, True)
RANGES: dict[str, tuple] = {
    "temperature": ("float", 0.0, None, False, True),  # softmax temperature: > 0
    "student_temp": ("float", 0.0, None, False, True),
    "teacher_temp": ("float", 0.0, None, False, True),
    "momentum": ("float", 0.0, 1.0, True, True),  # EMA teacher momentum
    "center_momentum": ("float", 0.0, 1.0, True, True),
    "proj_dim": _POS_INT, "hidden_dim": _POS_INT, "out_dim": _POS_INT, "bottleneck_dim": _POS_INT,
    "decoder_dim": _POS_INT, "decoder_depth": _POS_INT, "decoder_heads": _POS_INT,
    "local_crops": ("int", 0, None, True, True),  # DINO's small crops per image
    "local_size": ("int", 8, None, True, True),  # px (or null: a default from image_size)
    "crop_size": ("int", 8, None, True, True),  # px of the two-view methods' crops (or null: image_size)
    "mask_ratio": ("float", 0.0, 1.0, False, False),  # MAE: share of patches removed, strictly between 0 and 1
    "lambd": ("float", 0.0, None, True, True),  # Barlow Twins' off-diagonal weight
    "sim_weight": ("float", 0.0, None, True, True), "var_weight": ("float", 0.0, None, True, True),
    "cov_weight": ("float", 0.0, None, True, True),
    "rotate": ("float", 0.0, 180.0, True, True),  # degrees
    "hflip": ("bool",), "use_bn_in_head": ("bool",), "norm_pix": ("bool",),
    "crop_scale": ("scale",),  # [low, high] with 0 < low <= high <= 1: the crop's share of the image area
}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_option(key: str, v) -> None:
    """Raise ValueError naming `method_options.<key>` when v is outside the option's range."""
    rule = RANGES.get(key)
    if rule is None:
        return
    name = f"method_options.{key}"
    kind = rule[0]
    if kind == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false, got {v!r}")
        return
    if kind == "scale":
        if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_number(x) for x in v)
                or not 0 < v[0] <= v[1] <= 1):
            raise ValueError(f"{name} must be [low, high] with 0 < low <= high <= 1 (shares of the image area), "
                             f"got {v!r}")
        return
    if key in ("local_size", "crop_size") and v is None:
        return
    _, lo, hi, lo_in, hi_in = rule
    if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
        raise ValueError(f"{name} must be a whole number, got {v!r}")
    if not _number(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    too_low = lo is not None and (v < lo if lo_in else v <= lo)
    too_high = hi is not None and (v > hi if hi_in else v >= hi)
    if too_low or too_high:
        left = "" if lo is None else f"{'>=' if lo_in else '>'} {lo:g}"
        right = "" if hi is None else f"{'<=' if hi_in else '<'} {hi:g}"
        raise ValueError(f"{name} must be {' and '.join(x for x in (left, right) if x)}, got {v!r}")


def check_options(options: dict) -> None:
    for k, v in options.items():
        check_option(k, v)
