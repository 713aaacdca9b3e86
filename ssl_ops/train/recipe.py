"""The default recipe fitted to the data and the machine: the "auto" keys of a TrainConfig settled before training.

    cfg, notes = fit(TrainConfig(), short_sides=[32, 32, 28, ...], device="cpu", orientation_sensitive=False)
    cfg.image_size, cfg.width   # 32, 16
    notes                       # ["image_size 32 px: the median short side of 2,000 images (32 px) ..."]

- image_size (None = auto): the median short side of the accepted images, rounded down to a multiple of 8 (of
  the patch size for ViTs), at least 16 px and at most the device's cap: 32 px on a CPU, where more steps
  at a small size beat fewer at a large one within a budget, and 224 px on a GPU. Images larger than it
  are resized and centre-cropped to it, as always.
- width (None = auto): ResNet first-stage channels by device: 16 on a CPU (a quarter of the channels: many
  more steps within a CPU budget; bench/time_to_accuracy.py measures the choice), 64 (the paper's) on a GPU.
- horizontal flips: the two-view recipes flip by default; for images whose meaning changes in a mirror the
  contract says `images.orientation_sensitive: true`, and the flip is left out (method option hflip=False)
  unless the config's method_options set hflip themselves.
Keys the config sets are never changed. Each settled key comes with a note saying what was chosen and why.
"""

from __future__ import annotations

import dataclasses
import statistics

from ssl_ops.train.config import TrainConfig

SIZE_CAP = {"cpu": 32, "cuda": 224}  # px: the largest image_size chosen automatically, per device type
MIN_SIZE = 16  # px: the smallest chosen automatically
WIDTH = {"cpu": 16, "cuda": 64}  # ResNet width chosen automatically, per device type


def device_type(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; "cuda:1" -> "cuda"."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def fitted_size(short_sides, kind: str, multiple: int = 8) -> int:
    """The image size for images whose short sides are these (px), on a device of this type."""
    sides = [int(s) for s in short_sides if s]
    if not sides:
        raise ValueError("no image sizes to fit train.image_size to: set train.image_size in the config")
    median = statistics.median_low(sides)
    size = min(median, SIZE_CAP[kind])
    size = max(MIN_SIZE, size - size % multiple)
    return size


def fit(cfg: TrainConfig, short_sides=None, device: str | None = None,
        orientation_sensitive: bool = False) -> tuple[TrainConfig, list[str]]:
    """-> (cfg with every auto key settled, notes). short_sides: the training images' short sides (px), needed
    when image_size is auto; device: the training's device ("auto", "cpu", "cuda", ...; default cfg.device)."""
    kind = device_type(device or cfg.device)
    changes, notes = {}, []
    vit = cfg.backbone.startswith("vit")
    if cfg.image_size is None:
        sides = [int(s) for s in (short_sides or []) if s]
        size = fitted_size(sides, kind, cfg.patch_size if vit else 8)
        changes["image_size"] = size
        median = statistics.median_low(sides)
        why = (f"capped at {SIZE_CAP[kind]} px on {kind}" if median > SIZE_CAP[kind]
               else f"at least {MIN_SIZE} px" if median < MIN_SIZE else
               f"rounded down to a multiple of {cfg.patch_size if vit else 8}")
        notes.append(f"image_size {size} px: the median short side of {len(sides):,} images is {median} px ({why}; "
                     f"set train.image_size to choose)")
    if cfg.width is None:
        changes["width"] = WIDTH[kind]
        if not vit:
            notes.append(f"width {WIDTH[kind]}: the ResNet width for {kind} (set train.width to choose)")
    if orientation_sensitive and "hflip" not in cfg.method_options:
        from ssl_ops.methods import method_options

        if "hflip" in method_options(cfg.method):
            changes["method_options"] = {**cfg.method_options, "hflip": False}
            notes.append("no horizontal flips: the contract says the images are orientation-sensitive "
                         "(images.orientation_sensitive)")
    out = dataclasses.replace(cfg, **changes)
    out.validate()
    return out, notes
