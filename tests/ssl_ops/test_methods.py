"""Methods: the registry, their options, the EMA schedule, and every method's loss falling on real images."""

import json
import math

import pytest
import torch

from ssl_ops.data import shard_urls
from ssl_ops.methods import METHODS, build_method, method_options
from ssl_ops.methods.base import ema_momentum, ema_update
from ssl_ops.models import build_backbone
from ssl_ops.train import ConfigError, ShardSource, TrainConfig, train

ALL = ["simclr", "byol", "mocov3", "dino", "mae", "vicreg", "barlowtwins"]


def test_the_registry_holds_every_method_the_config_names():
    assert sorted(METHODS) == sorted(ALL)


def test_unknown_options_and_wrong_backbones_are_refused_with_the_fix():
    net = build_backbone("resnet18", 32, width=8)
    with pytest.raises(ValueError, match=r"no option\(s\) \['temp'\].*temperature \(default 0.2\)"):
        build_method("simclr", net, 32, {"temp": 0.5})
    with pytest.raises(ValueError, match="mae needs a ViT backbone"):
        build_method("mae", net, 32)
    with pytest.raises(ValueError, match="unknown method 'swav'"):
        build_method("swav", net, 32)
    assert method_options("byol")["momentum"] == 0.99


def test_ema_momentum_rises_from_base_to_one_and_the_teacher_follows():
    assert ema_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert ema_momentum(0.99, 50, 100) == pytest.approx(0.995)
    assert ema_momentum(0.99, 100, 100) == pytest.approx(1.0)
    s, t = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = t.weight.detach().clone()
    ema_update(t, s, 0.9)
    assert torch.allclose(t.weight, 0.9 * before + 0.1 * s.weight)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ALL)
def test_each_method_forward_gives_a_scalar_loss_and_first_view_features(name, bf16):
    """Under bf16 autocast (the GPU default; CPU autocast runs the same casts) the loss is still computed in fp32."""
    backbone = build_backbone("vit_tiny" if name == "mae" else "resnet18", 32, patch_size=8, width=8)
    m = build_method(name, backbone, 32)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = m(m.views(images))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss) and out.loss.dtype == torch.float32
    assert out.features.shape == (8, backbone.out_dim) and not out.features.requires_grad
    out.loss.backward()
    grads = [p.grad for p in m.backbone.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("name", ["simclr", "byol", "mocov3", "vicreg", "barlowtwins"])
def test_two_view_methods_crop_at_crop_size_and_the_config_refuses_a_tiny_one(name):
    """method_options.crop_size: the views are that size (the encoder pools globally, so it takes any size);
    the images and the probes stay at image_size."""
    m = build_method(name, build_backbone("resnet10", 32, width=8), 32, {"crop_size": 24})
    views = m.views(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    assert [tuple(v.shape) for v in views] == [(4, 3, 24, 24)] * 2
    assert torch.isfinite(m(views).loss)
    with pytest.raises(ConfigError, match="crop_size must be >= 8"):
        TrainConfig.from_dict({"method": name, "method_options": {"crop_size": 4}})


@pytest.mark.parametrize("name", ALL)
def test_every_method_loss_falls_on_real_cifar_images(name, cifar_shards, tmp_path):
    """A few dozen CPU steps on 1,000 real CIFAR-10 images: the mean loss of the last 8 steps is below that of
    the first 8. Momentum methods get a faster EMA so the target moves within so few steps. DINO's loss sits near
    log(out_dim) while its centre and teacher settle, so it must also end below that (better than a uniform
    guess), with a small head and BN in it (DINO's use_bn_in_head) so the teacher's targets differ per image."""
    opts = {"byol": {"momentum": 0.9}, "mocov3": {"momentum": 0.9},
            "dino": {"momentum": 0.99, "local_crops": 2, "out_dim": 256, "use_bn_in_head": True}}
    cfg = TrainConfig.from_dict(dict(
        method=name, backbone="vit_tiny" if name == "mae" else "resnet18", width=16, image_size=32, patch_size=8,
        batch_size=64, steps=40, warmup_steps=5, lr=5e-3 if name == "dino" else 2e-3, workers=1, checkpoint_every=0, health_every=20,
        method_options=opts.get(name, {})))
    res = train(cfg, ShardSource(shard_urls([cifar_shards]), 32, 64, workers=1), tmp_path / name)
    losses = [json.loads(x)["loss"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and res.steps == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first, f"{name}: loss {first:.4f} -> {last:.4f}"
    if name == "dino":
        assert last < math.log(256) - 0.1
