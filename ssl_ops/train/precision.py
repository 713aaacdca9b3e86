"""Whether training autocasts to bf16: train.precision "bf16" always, "fp32" never, "auto" where bf16 is native.

    use_bf16("auto", torch.device("cpu"))   # True on a CPU with AVX512-BF16 or AMX, else False

Under "auto", GPUs use bf16, and so do CPUs whose instructions do bf16 arithmetic natively: there it trains about
1.3x faster at the same accuracy (bench/time_to_accuracy.py --steps 450 --precision fp32|bf16 on CIFAR-10:
735 against 974 images/s, kNN 44.0% against 44.1%). On a CPU without them bf16 is emulated and slower, so
"auto" keeps fp32 there.
"""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "bf16":
        return True
    if precision == "fp32":
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
