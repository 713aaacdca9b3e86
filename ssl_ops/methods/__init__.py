"""Self-supervised methods behind a registry: each a backbone + head(s) + loss + its paper's views.

    method = build_method("byol", build_backbone("resnet18", 32), image_size=32, options={"momentum": 0.99})
"""

from __future__ import annotations

import inspect

from torch import nn

from ssl_ops.methods.barlow_twins import BarlowTwins
from ssl_ops.methods.base import Method, StepOutput
from ssl_ops.methods.byol import BYOL
from ssl_ops.methods.dino import DINO
from ssl_ops.methods.mae import MAE
from ssl_ops.methods.mocov3 import MoCoV3
from ssl_ops.methods.options import check_options
from ssl_ops.methods.simclr import SimCLR
from ssl_ops.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {m.name: m for m in (SimCLR, BYOL, MoCoV3, DINO, MAE, VICReg, BarlowTwins)}


def method_options(name: str) -> dict[str, object]:
    """The options a method takes, with their defaults."""
    sig = inspect.signature(METHODS[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "backbone", "image_size")}


def build_method(name: str, backbone: nn.Module, image_size: int, options: dict | None = None) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    options = dict(options or {})
    allowed = method_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"method {name!r} has no option(s) {unknown}; its options are "
                         + ", ".join(f"{k} (default {v!r})" for k, v in allowed.items()))
    check_options(options)
    return METHODS[name](backbone, image_size, **options)


__all__ = ["METHODS", "Method", "StepOutput", "build_method", "method_options"]
