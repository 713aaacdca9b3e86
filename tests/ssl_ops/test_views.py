"""Augmentation views: the shapes each method needs, per-sample randomness, normalisation, any input size."""

import pytest
import torch

from ssl_ops.augment import MEAN, STD, CropFlip, MultiCrop, TwoViews, normalise


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("recipe", ["simclr", "byol"])
def test_two_views_are_normalised_float_batches_of_the_configured_size(images, recipe):
    v1, v2 = TwoViews(32, recipe)(images)
    assert v1.shape == v2.shape == (16, 3, 32, 32) and v1.dtype == torch.float32
    assert not torch.equal(v1, v2)
    assert v1.min() >= (0 - max(MEAN)) / min(STD) - 1e-4 and v1.max() <= (1 - min(MEAN)) / min(STD) + 1e-4


def test_every_sample_gets_its_own_random_crop(images):
    same = images[:1].expand(8, -1, -1, -1).contiguous()
    v1, _ = TwoViews(32, "simclr")(same)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in v1}
    assert len(distinct) == 8


def test_byol_views_are_asymmetric_second_view_solarizes_sometimes():
    torch.manual_seed(0)
    dark = torch.full((400, 3, 32, 32), 10, dtype=torch.uint8)  # solarize (threshold 0.5) does not touch 10/255
    bright = torch.full((400, 3, 32, 32), 250, dtype=torch.uint8)  # ... but turns 250/255 dark
    views = TwoViews(32, "byol")
    first, second = views(bright)
    bright_norm = normalise(bright)[0, :, 0, 0].mean()
    # colour jitter moves values a little; solarization flips them far below the mean
    assert (first.mean(dim=(1, 2, 3)) < bright_norm - 2).sum() == 0
    assert 40 < (second.mean(dim=(1, 2, 3)) < bright_norm - 2).sum() < 140  # p = 0.2 of 400 (x 0.8 jitter)
    assert views(dark)[1].mean() < 0  # dark stays dark


def test_multicrop_gives_two_global_and_n_local_views(images):
    views = MultiCrop(32, 16, n_local=3)(images)
    assert [tuple(v.shape) for v in views] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)] * 3


def test_mae_crop_flip_and_blur_only_for_larger_images(images):
    (v,) = CropFlip(24)(images)
    assert v.shape == (16, 3, 24, 24)
    small, large = TwoViews(32, "simclr"), TwoViews(96, "simclr")
    assert not any("Blur" in type(m).__name__ for m in small.first)
    assert any("Blur" in type(m).__name__ for m in large.first)


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown view recipe 'moco'"):
        TwoViews(32, "moco")


def _tilted_share(views: TwoViews, n: int = 200) -> float:
    """Share of views of a vertical edge (left half bright) whose top and bottom rows differ: tilted ones."""
    edge = torch.zeros((n, 3, 32, 32), dtype=torch.uint8)
    edge[..., :16] = 255
    v1, _ = views(edge)
    return (v1[:, :, 0, :] - v1[:, :, -1, :]).abs().amax(dim=(1, 2)).gt(0.5).float().mean().item()


def test_rotate_tilts_most_views_and_is_off_by_default():
    torch.manual_seed(0)
    assert _tilted_share(TwoViews(32, "simclr", scale=(1.0, 1.0), hflip=False)) == 0
    assert 0.6 < _tilted_share(TwoViews(32, "simclr", scale=(1.0, 1.0), hflip=False, rotate=30)) < 0.95  # p = 0.8


@pytest.mark.parametrize("bad", [-5, 200, "15", True])
def test_rotate_outside_0_to_180_degrees_is_refused(bad):
    with pytest.raises(ValueError, match="rotate is a largest angle in degrees"):
        TwoViews(32, "byol", rotate=bad)
