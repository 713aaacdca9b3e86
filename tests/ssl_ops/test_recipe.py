"""The default recipe fitted to the data and the device, and the budget's step count."""

import pytest

from ssl_ops.train import ConfigError, TrainConfig
from ssl_ops.train.budget import SAFETY, steps_for_budget
from ssl_ops.train.recipe import BACKBONE, BATCH, CPU_CROP_SCALE, LR, OTHER_LR, SIZE_CAP, WIDTH, fit, fitted_size


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
    assert cfg.fitted and not TrainConfig().fitted
    assert (cfg.image_size, cfg.width, cfg.backbone, cfg.batch_size) == (32, WIDTH["cpu"], BACKBONE["cpu"], BATCH["cpu"])
    assert any("median short side of 13 images is 64 px (capped at 32 px on cpu" in n for n in notes), notes
    assert any(n.startswith("backbone resnet10: the backbone for cpu") for n in notes), notes
    # flips: the method's own; crops: the CPU's scale, when the config gives no method options
    assert cfg.method_options == {"crop_scale": list(CPU_CROP_SCALE), "crop_size": 24}  # 3/4 of 32 px
    assert any("resized to 24 px" in n for n in notes), notes
    small, _ = fit(TrainConfig(), short_sides=[16] * 3, device="cpu")
    assert small.method_options["crop_size"] == 8  # 3/4 of 16 px, a multiple of 8
    assert cfg.lr == LR["cpu"] == 4e-3 and any(n.startswith("lr 0.004: AdamW's peak lr for cpu") for n in notes)
    mine, notes = fit(TrainConfig.from_dict({"image_size": 24, "width": 32, "backbone": "resnet50", "lr": 1e-3,
                                             "batch_size": 64, "method_options": {"temperature": 0.1}}),
                      short_sides=None, device="cpu")
    assert (mine.image_size, mine.width, mine.backbone, mine.batch_size, mine.lr, notes) == (
        24, 32, "resnet50", 64, 1e-3, [])
    assert mine.method_options == {"temperature": 0.1}  # options given: none added
    gpu, _ = fit(TrainConfig(), short_sides=[500] * 3, device="cuda")
    assert (gpu.image_size, gpu.width, gpu.backbone, gpu.batch_size, gpu.lr) == (224, 64, "resnet18", 256, 2e-3)
    # the CPU's lr is AdamW's; SGD keeps 2e-3, and LARS, which needs its own, is refused with what to set
    assert fit(TrainConfig.from_dict({"optimizer": "sgd"}), [32], device="cpu")[0].lr == OTHER_LR
    with pytest.raises(ConfigError, match="far too small for LARS"):
        fit(TrainConfig.from_dict({"optimizer": "lars"}), [32], device="cpu")
    assert gpu.method_options == {}  # the paper's crops on a GPU
    mae, notes = fit(TrainConfig.from_dict({"method": "mae"}), short_sides=[64] * 3, device="cpu")
    assert mae.backbone == "vit_tiny" and mae.image_size % mae.patch_size == 0 and "MAE needs a ViT" in notes[0]


def test_an_orientation_sensitive_contract_turns_the_flips_off_unless_the_config_says():
    cfg, notes = fit(TrainConfig(), short_sides=[32], device="cuda", orientation_sensitive=True)
    assert cfg.method_options == {"hflip": False} and any("orientation-sensitive" in n for n in notes)
    cpu, _ = fit(TrainConfig(), short_sides=[32], device="cpu", orientation_sensitive=True)
    assert cpu.method_options == {"hflip": False, "crop_scale": list(CPU_CROP_SCALE), "crop_size": 24}
    mine, _ = fit(TrainConfig.from_dict({"method_options": {"hflip": True}}), [32], "cpu", orientation_sensitive=True)
    assert mine.method_options == {"hflip": True}
    dino, _ = fit(TrainConfig.from_dict({"method": "dino", "backbone": "vit_tiny", "patch_size": 4}), [32], "cpu",
                  orientation_sensitive=True)
    assert "hflip" not in dino.method_options  # DINO's views have no such option


def test_the_default_trains_for_a_budget_and_a_length_given_replaces_it():
    d = TrainConfig()
    assert d.budget_minutes == 10.0 and d.steps is None and d.total_steps(1000) is None
    assert TrainConfig.from_dict({"steps": 5}).budget_minutes is None
    assert TrainConfig.from_dict({"epochs": 2, "batch_size": 256}).total_steps(256) == 2
    with pytest.raises(ConfigError, match="train.epochs needs train.batch_size"):
        TrainConfig.from_dict({"epochs": 2}).total_steps(256)  # auto until fitted
    with pytest.raises(ConfigError, match="exactly one of"):
        TrainConfig.from_dict({"steps": 5, "budget_minutes": 3})


def test_steps_for_budget_fills_the_time_left_less_the_reserve():
    # 600 s budget, 60 s gone, 10 steps done at 0.5 s each: (600 - 60) * SAFETY / 0.5 more
    assert steps_for_budget(600, 60, 10, 0.5) == 10 + int(540 * SAFETY / 0.5)
    assert steps_for_budget(600, 60, 10, 0.5, reserve_s=100) == 10 + int(440 * SAFETY / 0.5)
    assert steps_for_budget(10, 60, 10, 0.5) == 11  # over budget already: one more step ends the schedule
    with pytest.raises(ValueError):
        steps_for_budget(10, 0, 0, 0)
