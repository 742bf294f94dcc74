"""CIFAR-style residual networks: ResNet-20 and ResNet-32 of He et al., "Deep Residual Learning for Image
Recognition" (CVPR 2016), §4.2 — the models of AdaHessian's CIFAR-10 experiments (Yao et al., AAAI 2021).

The network is a 3×3 convolution with 16 filters, then three stages of ``n`` basic blocks (two 3×3 convolutions
each, batch norm after every convolution) on feature maps of 16, 32 and 64 channels; the first block of the second
and third stage halves the resolution with stride 2. Global average pooling and one fully connected layer end it:
``6n + 2`` weighted layers, so ``n = 3`` is ResNet-20 (0.27M parameters) and ``n = 5`` ResNet-32 (0.46M), the counts
of the paper's Table 6 for ten classes and three input channels.

Shortcuts are option A of the paper, as in its CIFAR experiments: identity everywhere; where a block changes shape
the input is subsampled by 2 and zero-padded along channels, so shortcuts add no parameters (option B would add a
1×1 projection there).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CifarResNet", "resnet20", "resnet32"]


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the (option-A) shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra_channels = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            # F.pad's last pair of numbers addresses dim -3 (channels): split the zero channels evenly on both sides.
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: any input side ≥ 4 works (8×8 digits end the last stage at 2×2)."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        # He et al. initialise as in their PReLU paper (Kaiming normal); torchvision's ResNets use the fan-out variant.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-20 (n = 3): 0.27M parameters for ten classes."""
    return CifarResNet(3, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-32 (n = 5): 0.46M parameters for ten classes."""
    return CifarResNet(5, num_classes, in_channels)
