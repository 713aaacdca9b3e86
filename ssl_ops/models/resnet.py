"""ResNet-10, ResNet-18 and ResNet-50 in plain torch (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

    net = resnet18(small_images=True)   # x: [N, 3, 32, 32] -> [N, 512]

small_images: the CIFAR stem (a 3x3 stride-1 convolution, no max-pool) that SSL papers use for 32-96 px
images; otherwise the ImageNet stem (7x7 stride-2 convolution and a 3x3 max-pool). width: the channels of
the first stage (64 in the paper; the stages have width, 2x, 4x, 8x): narrower nets train much faster on CPU.
The classifier is left out: the output is the pooled feature vector, `out_dim` wide. Works with channels_last memory format.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = _downsample(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], small_images: bool, width: int = 64):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width}")
        if small_images:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i, (w, n) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each residual branch (Goyal et al., 2017)
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] normalised images -> [N, out_dim] globally average-pooled features."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def resnet10(small_images: bool = True, width: int = 64) -> ResNet:
    """One basic block per stage (half of ResNet-18's depth): about half its compute, for short CPU budgets."""
    return ResNet(BasicBlock, (1, 1, 1, 1), small_images, width)


def resnet18(small_images: bool = True, width: int = 64) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), small_images, width)


def resnet50(small_images: bool = True, width: int = 64) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), small_images, width)
