"""Backbones: the published architectures' parameter counts, shapes, MAE's patch pieces, channels_last."""

import pytest
import torch

from ssl_ops.models import build_backbone
from ssl_ops.models.vit import sincos_2d, vit_tiny


def params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,size,expected", [
    # torchvision resnet18: 11,689,512 - fc (512*1000 + 1000) - 7x7 stem (64*3*49) + 3x3 stem (64*3*9)
    ("resnet18", 32, 11_689_512 - 513_000 - 9_408 + 1_728),
    # ResNet-10: our resnet18 less the second basic block of each stage (two 3x3 convs and two BNs each):
    # (64*64*9*2 + 2*128) + (128*128*9*2 + 2*256) + (256*256*9*2 + 2*512) + (512*512*9*2 + 2*1024) = 6,270,720
    ("resnet10", 32, 11_689_512 - 513_000 - 9_408 + 1_728 - 6_270_720),
    # torchvision resnet50: 25,557,032 - fc (2048*1000 + 1000); 7x7 stem at 224 px
    ("resnet50", 224, 25_557_032 - 2_049_000),
    # timm vit_tiny_patch16_224: 5,717,416 - head (192*1000 + 1000) - learned pos embed (197*192; ours is fixed)
    ("vit_tiny", 224, 5_717_416 - 193_000 - 37_824),
    # timm vit_small_patch16_224: 22,050,664 - head (384*1000 + 1000) - pos embed (197*384)
    ("vit_small", 224, 22_050_664 - 385_000 - 75_648),
])
def test_parameter_counts_match_the_reference_architectures(name, size, expected):
    assert params(build_backbone(name, size)) == expected


@pytest.mark.parametrize("name,size,patch,dim", [("resnet10", 32, 16, 512), ("resnet18", 32, 16, 512),
                                                  ("resnet50", 64, 16, 2048),
                                                  ("vit_tiny", 32, 4, 192), ("vit_small", 48, 8, 384)])
def test_shapes_gradients_and_channels_last(name, size, patch, dim):
    m = build_backbone(name, size, patch)
    x = torch.randn(3, 3, size, size)
    y = m(x)
    assert y.shape == (3, dim) and m.out_dim == dim
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    m.eval()
    with torch.no_grad():
        a = m(x)
        b = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-4)


def test_vit_encodes_a_subset_of_patches_and_patchifies_row_major():
    v = vit_tiny(image_size=16, patch_size=4)
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    patches = v.patchify(x)
    assert patches.shape == (2, 16, 48)
    assert torch.equal(patches[0, 5].reshape(4, 4, 3)[..., 0], x[0, 0, 4:8, 4:8])  # patch 5 = row 1, column 1
    keep = torch.tensor([[0, 3, 7], [1, 2, 15]])
    assert v.forward_tokens(torch.randn(2, 3, 16, 16), keep=keep).shape == (2, 4, 192)


def test_sincos_embedding_and_errors():
    e = sincos_2d(4, 8)
    assert e.shape == (16, 8) and torch.allclose(e[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(4, 6)
    with pytest.raises(ValueError, match="not a multiple"):
        build_backbone("vit_tiny", 30, 4)
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'"):
        build_backbone("resnet34", 32)
