"""The training config: one typed dataclass, built from a plain mapping (the YAML `train:` section). Its
defaults are the pipeline's defaults: a config file without a `train:` section trains with exactly these.

    cfg = TrainConfig.from_dict({"method": "simclr", "backbone": "resnet18", "image_size": 32,
                                 "batch_size": 256, "steps": 500})
    cfg = TrainConfig()            # image_size and width "auto", a 10-minute budget: see ssl_ops.train.recipe

Three keys default to "fit the data and the machine" (None) and are settled before training by
ssl_ops.train.recipe.fit (image_size from the images' sizes, width from the device); how long it trains is a
wall-clock budget by default (`budget_minutes`: steps/s is measured in the first steps and the step count set so
that the schedule ends on time, ssl_ops.train.budget), or a step count (`steps`) or passes (`epochs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ssl_ops.models import BACKBONES

METHOD_NAMES = ("simclr", "byol", "mocov3", "dino", "mae", "vicreg", "barlowtwins")
OPTIMIZERS = ("adamw", "lars", "sgd")
PRECISIONS = ("auto", "bf16", "fp32")
KEEP = ("last", "best")
LENGTH_KEYS = ("steps", "epochs")  # with budget_minutes: exactly one of the three says how long to train


class ConfigError(ValueError):
    """A training config that cannot run; the message names the key and what to write instead."""


@dataclass(frozen=True)
class TrainConfig:
    method: str = "simclr"  # one of METHOD_NAMES
    backbone: str | None = None  # one of ssl_ops.models.BACKBONES; None: by device and method (recipe.fit)
    image_size: int | None = None  # px; images are resized/centre-cropped to this. None: from the data (recipe.fit)
    batch_size: int | None = None  # global batch, split evenly over the ranks under DDP; None: by device (recipe.fit)
    steps: int | None = None  # optimiser steps; set one of steps, epochs and budget_minutes
    epochs: float | None = None  # passes over the training samples (steps = ceil(epochs * samples / batch))
    budget_minutes: float | None = 10.0  # wall-clock minutes for the whole run (the default when neither steps nor
    #                                      epochs is set): the step count is measured to end the schedule on time
    width: int | None = None  # ResNet first-stage channels (64 = the paper's); None: by device (recipe.fit)
    patch_size: int = 4  # ViT patch side; ignored by ResNets
    optimizer: str = "adamw"  # adamw, lars (SimCLR/BYOL's large-batch optimiser) or sgd (momentum 0.9)
    lr: float | None = None  # peak learning rate, reached after the warmup, then cosine-decayed; None: by device
    #                          and optimizer (recipe.fit: AdamW 4e-3 on a CPU, 2e-3 otherwise)
    min_lr: float = 0.0  # the cosine's end
    warmup_steps: int = 10  # linear warmup from 0
    weight_decay: float = 1e-4  # not applied to biases and norm parameters
    clip_grad: float = 3.0  # max global gradient norm (0 = no clipping)
    precision: str = "auto"  # auto: bf16 autocast on GPU and on CPUs with native bf16 (train/precision.py), else fp32
    compile: bool = False  # torch.compile the model
    channels_last: bool = True  # NHWC memory format for ResNets
    seed: int = 0
    workers: int = 2  # DataLoader processes per rank
    device: str = "auto"  # auto: cuda when available (cuda:LOCAL_RANK under torchrun), else cpu
    checkpoint_every: int = 100  # steps between checkpoints (and data-stream segments); 0 = only at the end
    log_every: int = 1  # steps between metrics callbacks
    health_every: int = 50  # steps between health metrics (embedding std, effective rank)
    collapse_std: float = 0.0  # abort when std(normalised embeddings) * sqrt(D) falls below this (0 = never)
    augment: bool = True  # False: the views are the images themselves (for checking DDP against one process)
    probe_every: int | None = None  # steps between kNN probes of the encoder on held-out probe-train rows of the
    #                                 eval set (when the trainer is given them); None: 10 over the run; 0: never
    keep: str = "last"  # which encoder is kept: "last" (the last step's) or "best" (the best by that probe)
    method_options: dict = field(default_factory=dict)  # the method's own options (see method_options())

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        d = dict(d or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"train: unknown key(s) {unknown}; allowed: {sorted(names)}")
        lengths = [k for k in LENGTH_KEYS if d.get(k) is not None]
        if lengths and "budget_minutes" not in d:
            d["budget_minutes"] = None  # steps or epochs given: they replace the default budget
        for k, v in list(d.items()):
            d[k] = _coerce(k, v, names[k].type)
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.method not in METHOD_NAMES:
            raise ConfigError(f"train.method {self.method!r} is unknown; choose one of {', '.join(METHOD_NAMES)}")
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ConfigError(f"train.backbone {self.backbone!r} is unknown; choose one of {', '.join(BACKBONES)}")
        if self.method == "mae" and not self.vit:
            raise ConfigError("train.method mae needs a ViT backbone: set train.backbone to vit_tiny or vit_small")
        given = [k for k in LENGTH_KEYS + ("budget_minutes",) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"set exactly one of train.steps, train.epochs and train.budget_minutes (how long to "
                              f"train); got {given or 'none'}")
        if self.budget_minutes is not None and not 0 < self.budget_minutes <= 60 * 24 * 30:
            raise ConfigError(f"train.budget_minutes must be above 0 (and at most 30 days), got {self.budget_minutes}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"train.steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"train.image_size must be at least 8 px, got {self.image_size}")
        if self.image_size is not None and self.image_size > 4096:
            raise ConfigError(f"train.image_size must be at most 4096 px, got {self.image_size}")
        for k in ("lr", "width", "patch_size"):
            if getattr(self, k) is not None and getattr(self, k) <= 0:
                raise ConfigError(f"train.{k} must be positive, got {getattr(self, k)}")
        if self.keep not in KEEP:
            raise ConfigError(f"train.keep {self.keep!r} is unknown; choose one of {', '.join(KEEP)}")
        if self.probe_every is not None and self.probe_every < 0:
            raise ConfigError(f"train.probe_every must not be negative (0 = never), got {self.probe_every}")
        if self.image_size is not None and self.vit and self.image_size % self.patch_size:
            raise ConfigError(f"train.image_size {self.image_size} is not a multiple of train.patch_size "
                              f"{self.patch_size}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"train.batch_size must be at least 2 (the losses compare samples), got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer {self.optimizer!r} is unknown; choose one of {OPTIMIZERS}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision {self.precision!r} is unknown; choose one of {PRECISIONS}")
        for k in ("min_lr", "warmup_steps", "weight_decay", "clip_grad", "workers", "checkpoint_every",
                  "health_every", "collapse_std"):
            if getattr(self, k) < 0:
                raise ConfigError(f"train.{k} must not be negative, got {getattr(self, k)}")
        if self.seed < 0:
            raise ConfigError(f"train.seed must not be negative, got {self.seed}")
        if self.lr is not None and self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr {self.min_lr} is above train.lr {self.lr}: the cosine ends at min_lr")
        if self.log_every < 1:
            raise ConfigError(f"train.log_every must be at least 1, got {self.log_every}")
        if self.collapse_std and not self.health_every:
            raise ConfigError("train.collapse_std needs train.health_every > 0: collapse is checked with the health "
                              "metrics")
        if self.optimizer == "lars" and self.lr is not None and self.lr < 0.01:
            raise ConfigError(f"train.lr {self.lr} is far too small for LARS, whose steps are lr x 0.001 of each "
                              f"weight's norm: use about 0.3 x batch_size / 256 (SimCLR, BYOL), or adamw")
        from ssl_ops.methods import build_method, method_options
        from ssl_ops.methods.options import check_options
        from ssl_ops.models import build_backbone

        allowed = method_options(self.method)
        bad = sorted(set(self.method_options) - set(allowed))
        if bad:
            raise ConfigError(f"train.method_options {bad} are not options of {self.method}; its options are "
                              + ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()))
        try:
            check_options(self.method_options)
        except ValueError as e:
            raise ConfigError(f"train.{e}") from None
        size = self.image_size or (self.patch_size * 4 if self.vit else 32)  # auto: any size
        try:  # build it without memory (meta tensors): option values and combinations are checked now
            import torch

            with torch.device("meta"):
                backbone = build_backbone(self.backbone or ("vit_tiny" if self.vit else "resnet18"), size,
                                          patch_size=self.patch_size, width=self.width or 64)
                build_method(self.method, backbone, size, self.method_options)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"train: {self.method} / {self.backbone} cannot be built: {e}") from None

    @property
    def vit(self) -> bool:
        """A ViT backbone: one named, or the auto choice for MAE (which needs one)."""
        return self.backbone.startswith("vit") if self.backbone else self.method == "mae"

    @property
    def fitted(self) -> bool:
        """Every "auto" key settled (recipe.fit): what the training loop needs."""
        return all(getattr(self, k) is not None for k in ("image_size", "width", "backbone", "batch_size", "lr"))

    def total_steps(self, num_samples: int | None = None) -> int | None:
        """The step count; None under a budget (measured while training: ssl_ops.train.budget)."""
        if self.steps is not None:
            return self.steps
        if self.budget_minutes is not None:
            return None
        if not num_samples:
            raise ConfigError("train.epochs needs the number of training samples; none were given")
        if self.batch_size is None:
            raise ConfigError("train.epochs needs train.batch_size: set it, or settle it first (recipe.fit)")
        return max(1, math.ceil(self.epochs * num_samples / self.batch_size))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(key: str, value, type_name: str):
    """YAML gives ints for floats ("lr: 1") and strings for numbers written oddly ("lr: 1e-3" is a string in
    YAML 1.1); convert where the meaning is clear, otherwise say what the key takes."""
    t = str(type_name)
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"train.{key} cannot be empty")
    try:
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t.startswith("float"):
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
            return float(value)
        if t == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if t in ("str", "str | None"):
            if not isinstance(value, str):
                raise ValueError
            return value
        if t == "dict":
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"train.{key}: {value!r} is not a valid {t}") from None
    return value
