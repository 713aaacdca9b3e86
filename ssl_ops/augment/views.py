"""The views each method's paper trains on, built from kornia augmentations on uint8 batches.

    views = TwoViews(32, recipe="byol")       # uint8 [B, 3, 32, 32] on the device -> 2 normalised float views
    v1, v2 = views(images)

- "simclr" (Chen et al. 2020, appendix A): random resized crop, flip, colour jitter (0.4, 0.4, 0.4, 0.1)
  with p=0.8, grayscale p=0.2, Gaussian blur p=0.5; both views alike.
- "byol" (Grill et al. 2020, table 6): the same crop, flip and jitter (0.4, 0.4, 0.2, 0.1), grayscale p=0.2,
  and asymmetric views: blur p=1.0 / 0.1, solarize p=0 / 0.2. MoCo v3, VICReg and Barlow Twins use it too.
- MultiCrop (Caron et al. 2021): 2 global crops at scale (0.4, 1) with the BYOL pair's blur and solarize,
  plus N local crops at scale (0.05, 0.4) and a smaller size.
- CropFlip: MAE's light augmentation, a random resized crop at scale (0.2, 1) and a flip.

Options of the two-view recipes: `hflip=False` leaves out the horizontal flip and `rotate=D` adds a random
rotation in [-D, D] degrees (p=0.8, corners filled black), for images whose meaning changes in a mirror but
not under a small tilt (handwriting, digits, text).
Blur is left out below 64 px, as the papers do for CIFAR (the kernel would be most of the image).
Every view is normalised with ImageNet's mean and std; the same `normalise` prepares images for probes.
"""

from __future__ import annotations

import torch
from kornia import augmentation as K
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RECIPES = ("simclr", "byol")


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float, scaled to [0, 1] and normalised with MEAN and STD."""
    x = images.float().div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _view(size: int, scale: tuple[float, float], jitter: tuple[float, float, float, float], blur_p: float,
          solarize_p: float, hflip: bool = True, rotate: float = 0.0) -> nn.Sequential:
    ops: list[nn.Module] = [K.RandomResizedCrop((size, size), scale=scale)]
    if hflip:
        ops.append(K.RandomHorizontalFlip())
    if rotate > 0:
        ops.append(K.RandomRotation(rotate, p=0.8))
    ops += [K.ColorJitter(*jitter, p=0.8), K.RandomGrayscale(p=0.2)]
    if blur_p > 0 and size >= 64:
        k = 2 * round(size * 0.05) + 1  # about a tenth of the side, odd, as SimCLR's 23 px at 224
        ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=blur_p))
    if solarize_p > 0:
        ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize_p))  # threshold 0.5, as PIL's 128
    ops.append(K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD)))
    return nn.Sequential(*ops)


class TwoViews(nn.Module):
    """Two augmented views of each image, per the recipe ("simclr" or "byol"). hflip=False leaves out the
    horizontal flip, for images whose meaning changes in a mirror (digits, text); rotate=D (degrees) tilts
    each view by a random angle in [-D, D]."""

    def __init__(self, size: int, recipe: str = "simclr", scale: tuple[float, float] = (0.08, 1.0),
                 hflip: bool = True, rotate: float = 0.0):
        super().__init__()
        if recipe not in RECIPES:
            raise ValueError(f"unknown view recipe {recipe!r}; choose one of {RECIPES}")
        if not isinstance(rotate, (int, float)) or isinstance(rotate, bool) or not 0 <= rotate <= 180:
            raise ValueError(f"rotate is a largest angle in degrees, from 0 (none) to 180, got {rotate!r}")
        if recipe == "simclr":
            a = b = dict(jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.5, solarize_p=0.0)
        else:
            a = dict(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0, solarize_p=0.0)
            b = dict(jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2)
        self.first = _view(size, scale, hflip=hflip, rotate=rotate, **a)
        self.second = _view(size, scale, hflip=hflip, rotate=rotate, **b)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.float().div_(255)
        return [self.first(x), self.second(x)]


class MultiCrop(nn.Module):
    """DINO's multi-crop: [global 1, global 2, local 1, ..., local N]."""

    def __init__(self, size: int, local_size: int, n_local: int, global_scale: tuple[float, float] = (0.4, 1.0),
                 local_scale: tuple[float, float] = (0.05, 0.4)):
        super().__init__()
        jitter = (0.4, 0.4, 0.2, 0.1)
        self.globals = nn.ModuleList([_view(size, global_scale, jitter, 1.0, 0.0),
                                      _view(size, global_scale, jitter, 0.1, 0.2)])
        self.local = _view(local_size, local_scale, jitter, 0.5, 0.0)
        self.n_local = n_local

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.float().div_(255)
        return [g(x) for g in self.globals] + [self.local(x) for _ in range(self.n_local)]


class CropFlip(nn.Module):
    """MAE's augmentation: uint8 [B, 3, H, W] -> [one normalised float view]."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.2, 1.0)):
        super().__init__()
        self.seq = nn.Sequential(K.RandomResizedCrop((size, size), scale=scale), K.RandomHorizontalFlip(),
                                 K.Normalize(mean=torch.tensor(MEAN), std=torch.tensor(STD)))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.seq(images.float().div_(255))]
