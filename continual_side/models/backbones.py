"""CIFAR ResNets (He et al. 2016, the CIFAR variant) laid out like akamaster/pytorch_resnet_cifar10.

The module names match akamaster's checkpoints, so its published ResNet-20/44 weights load with
strict=True; option-A shortcuts have no parameters. Inputs are ImageNet-normalised 32x32 images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from continual_side.hub import resolve_weights
from continual_side.models.checkpoint import load_weights_file


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels, with no weights."""

    def __init__(self, pad_channels: int):
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = ZeroPadShortcut(planes // 4) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: three stages of n blocks (16/32/64 channels), pool, linear."""

    feature_dim = 64

    def __init__(self, blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        self.depth = 6 * blocks_per_stage + 2
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.linear = nn.Linear(self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_planes, planes, stride), *(BasicBlock(planes, planes, 1) for _ in range(blocks - 1))
        )

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first conv-BN-ReLU, (B, 16, H, W): the input of the first residual block."""
        return F.relu(self.bn1(self.conv1(x)))

    def residual_blocks(self) -> list[BasicBlock]:
        """Every residual block in forward order (3n of them)."""
        return [*self.layer1, *self.layer2, *self.layer3]

    def tail(self, out: torch.Tensor) -> torch.Tensor:
        """The feature from the last residual block's output: global average pooling, (B, 64).

        Methods that run the residual blocks themselves (SpotTune, Res-Tuning, CST) finish with this,
        so they work on any base that has ``stem``, ``layer1..3`` and ``tail`` (the mid-level encoder's
        tail keeps a spatial map).
        """
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature the heads read: ``tail`` of the last stage, (B, 64)."""
        return self.tail(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """CIFAR-10 logits, (B, num_classes)."""
        return self.linear(self.features(x))


def _build(blocks_per_stage: int, hub_name: str, weights: str | Path | bool | None) -> CifarResNet:
    model = CifarResNet(blocks_per_stage)
    if weights is None or weights is False:
        return model
    path = resolve_weights(hub_name) if weights is True else resolve_weights(hub_name, weights)
    expected = f"a ResNet-{model.depth} CIFAR-10 checkpoint such as the hub's {hub_name}"
    load_weights_file(model, path, expected)
    return model


def resnet20(weights: str | Path | bool | None = None) -> CifarResNet:
    """ResNet-20 for CIFAR.

    :param weights: None/False for random init, True for the hub's resnet20-cifar10, or a file path.
    :raises WeightsError: when the weights cannot be found or do not fit.
    """
    return _build(3, "resnet20-cifar10", weights)


def resnet44(weights: str | Path | bool | None = None) -> CifarResNet:
    """ResNet-44 for CIFAR, the base network of side-tuning's iCIFAR experiments.

    :param weights: None/False for random init, True for the hub's resnet44-cifar10, or a file path.
    :raises WeightsError: when the weights cannot be found or do not fit.
    """
    return _build(7, "resnet44-cifar10", weights)
