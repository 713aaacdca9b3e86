"""The default recipe fitted to the data and the device, and the budget's step count."""

import pytest

from ssl_ops.train import ConfigError, TrainConfig
from ssl_ops.train.budget import SAFETY, steps_for_budget
from ssl_ops.train.recipe import SIZE_CAP, WIDTH, fit, fitted_size


def test_the_image_size_follows_the_median_short_side_rounded_and_capped_by_device():
    assert fitted_size([32] * 9 + [500], "cpu") == 32  # the median, not the mean
    assert fitted_size([227, 300, 640], "cuda") == 224  # rounded down to a multiple of 8 (and the GPU's cap)
    assert fitted_size([640, 480, 1024], "cuda") == SIZE_CAP["cuda"]
    assert fitted_size([64, 64, 96], "cpu") == SIZE_CAP["cpu"]
    assert fitted_size([8, 8, 9], "cpu") == 16  # never below 16 px
    assert fitted_size([100, 100], "cuda", multiple=16) == 96  # a ViT's patch size
    with pytest.raises(ValueError, match="set train.image_size"):
        fitted_size([], "cpu")


def test_fit_settles_only_the_auto_keys_and_says_why():
    cfg, notes = fit(TrainConfig(), short_sides=[64] * 10 + [30] * 3, device="cpu")
    assert cfg.image_size == 32 and cfg.width == WIDTH["cpu"]
    assert any("median short side of 13 images is 64 px (capped at 32 px on cpu" in n for n in notes), notes
    assert cfg.method_options == {}  # flips: the method's own
    mine, notes = fit(TrainConfig.from_dict({"image_size": 24, "width": 32}), short_sides=None, device="cuda")
    assert (mine.image_size, mine.width, notes) == (24, 32, [])
    gpu, _ = fit(TrainConfig(), short_sides=[500] * 3, device="cuda")
    assert (gpu.image_size, gpu.width) == (224, 64)


def test_an_orientation_sensitive_contract_turns_the_flips_off_unless_the_config_says():
    cfg, notes = fit(TrainConfig(), short_sides=[32], device="cpu", orientation_sensitive=True)
    assert cfg.method_options == {"hflip": False} and any("orientation-sensitive" in n for n in notes)
    mine, _ = fit(TrainConfig.from_dict({"method_options": {"hflip": True}}), [32], "cpu", orientation_sensitive=True)
    assert mine.method_options == {"hflip": True}
    dino, _ = fit(TrainConfig.from_dict({"method": "dino", "backbone": "vit_tiny", "patch_size": 4}), [32], "cpu",
                  orientation_sensitive=True)
    assert "hflip" not in dino.method_options  # DINO's views have no such option


def test_the_default_trains_for_a_budget_and_a_length_given_replaces_it():
    d = TrainConfig()
    assert d.budget_minutes == 10.0 and d.steps is None and d.total_steps(1000) is None
    assert TrainConfig.from_dict({"steps": 5}).budget_minutes is None
    assert TrainConfig.from_dict({"epochs": 2}).total_steps(256) == 2
    with pytest.raises(ConfigError, match="exactly one of"):
        TrainConfig.from_dict({"steps": 5, "budget_minutes": 3})


def test_steps_for_budget_fills_the_time_left_less_the_reserve():
    # 600 s budget, 60 s gone, 10 steps done at 0.5 s each: (600 - 60) * SAFETY / 0.5 more
    assert steps_for_budget(600, 60, 10, 0.5) == 10 + int(540 * SAFETY / 0.5)
    assert steps_for_budget(600, 60, 10, 0.5, reserve_s=100) == 10 + int(440 * SAFETY / 0.5)
    assert steps_for_budget(10, 60, 10, 0.5) == 11  # over budget already: one more step ends the schedule
    with pytest.raises(ValueError):
        steps_for_budget(10, 0, 0, 0)
