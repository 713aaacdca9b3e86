"""Batched augmentation on the training device (kornia): each sample gets its own random parameters."""

from ssl_ops.augment.views import MEAN, STD, CropFlip, MultiCrop, TwoViews, normalise

__all__ = ["MEAN", "STD", "CropFlip", "MultiCrop", "TwoViews", "normalise"]
