"""The default recipe fitted to the data and the machine: the "auto" keys of a TrainConfig settled before training.

    cfg, notes = fit(TrainConfig(), short_sides=[32, 32, 28, ...], device="cpu", orientation_sensitive=False)
    cfg.image_size, cfg.width, cfg.backbone, cfg.batch_size   # 32, 16, "resnet10", 128
    notes                       # ["image_size 32 px: the median short side of 2,000 images (32 px) ..."]

- image_size (None = auto): the median short side of the accepted images, rounded down to a multiple of 8 (of
  the patch size for ViTs), at least 16 px and at most the device's cap: 32 px on a CPU, where more steps
  at a small size beat fewer at a large one within a budget, and 224 px on a GPU. Images larger than it
  are resized and centre-cropped to it, as always.
- width (None = auto): ResNet first-stage channels by device: 16 on a CPU (a quarter of the channels: many
  more steps within a CPU budget; bench/time_to_accuracy.py measures the choice), 64 (the paper's) on a GPU.
- backbone (None = auto): ResNet-10 (one basic block per stage) on a CPU, where more steps of a shallower net
  beat fewer of a deeper one within a budget, ResNet-18 on a GPU; a ViT (vit_tiny) for MAE.
- batch_size (None = auto): 128 on a CPU (faster per image there than 256), 256 on a GPU.
- lr (None = auto): AdamW's peak 4e-3 on a CPU, where a budget allows few epochs (bench/time_to_accuracy.py:
  CIFAR-10 in 15 minutes, kNN 60.9% and 60.5% at 4e-3 against 59.7% and 60.2% at 2e-3), 2e-3 on a GPU; 2e-3
  for the other optimizers (LARS needs its own, set by hand).
- views: on a CPU the two-view methods crop 0.2-1 of the image area instead of their papers' 0.08-1, and
  resize the crops to 3/4 of image_size (24 px for 32 px images; the encoder pools globally, so it still
  takes image_size in the probes and after training): a CPU's budget allows few epochs, and smaller,
  less extreme crops give more of them and learn faster (bench/time_to_accuracy.py: on CIFAR-10 in 4
  minutes, kNN 47.4% at 32 px crops against 50.1% at 24 px). Only when the config gives no method_options.
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
BACKBONE = {"cpu": "resnet10", "cuda": "resnet18"}  # chosen automatically, per device type (MAE: vit_tiny)
BATCH = {"cpu": 128, "cuda": 256}  # global batch chosen automatically, per device type
LR = {"cpu": 4e-3, "cuda": 2e-3}  # AdamW's peak lr chosen automatically, per device type
OTHER_LR = 2e-3  # ... for the other optimizers (LARS refuses it: its lr must be set, about 0.3 x batch / 256)
CPU_CROP_SCALE = (0.2, 1.0)  # the two-view methods' crop scale on a CPU, when the config gives no method options
CPU_CROP_SHARE = 0.75  # ... and their crops' side as a share of image_size (rounded down to a multiple of 8)


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
    if cfg.backbone is None:
        changes["backbone"] = "vit_tiny" if cfg.method == "mae" else BACKBONE[kind]
        notes.append(f"backbone {changes['backbone']}: " + ("MAE needs a ViT" if cfg.method == "mae" else
                     f"the backbone for {kind}" + (" (one block per stage: more steps within a CPU budget)"
                                                   if kind == "cpu" else "")) + " (set train.backbone to choose)")
    vit = (changes.get("backbone") or cfg.backbone).startswith("vit")
    if cfg.batch_size is None:
        changes["batch_size"] = BATCH[kind]
        notes.append(f"batch_size {BATCH[kind]}: the batch for {kind} (set train.batch_size to choose)")
    if cfg.lr is None:
        changes["lr"] = LR[kind] if cfg.optimizer == "adamw" else OTHER_LR
        if cfg.optimizer == "adamw":
            notes.append(f"lr {changes['lr']:g}: AdamW's peak lr for {kind} (set train.lr to choose)")
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
    from ssl_ops.methods import method_options

    options = dict(cfg.method_options)
    if orientation_sensitive and "hflip" not in options and "hflip" in method_options(cfg.method):
        options["hflip"] = False
        notes.append("no horizontal flips: the contract says the images are orientation-sensitive "
                     "(images.orientation_sensitive)")
    if kind == "cpu" and not cfg.method_options and "crop_scale" in method_options(cfg.method):
        size = changes.get("image_size") or cfg.image_size
        crop = max(8, int(size * CPU_CROP_SHARE) // 8 * 8)
        options["crop_scale"] = list(CPU_CROP_SCALE)
        if crop < size and not (vit and crop % cfg.patch_size):
            options["crop_size"] = crop
        else:
            crop = size
        notes.append(f"views: crops of {CPU_CROP_SCALE[0]:g}-{CPU_CROP_SCALE[1]:g} of the image area, "
                     + (f"resized to {crop} px (the encoder sees {size} px images in the probes and after "
                        f"training): " if crop < size else "")
                     + "a CPU's budget allows few epochs, and these give more of them and less extreme crops "
                       "(set train.method_options to choose)")
    if options != cfg.method_options:
        changes["method_options"] = options
    out = dataclasses.replace(cfg, **changes)
    out.validate()
    return out, notes
