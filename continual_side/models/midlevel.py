"""The mid-level base: a Taskonomy-style encoder whose feature is a small spatial map, and its FCN5 side.

Taskonomy's encoders (Zamir et al. 2018; the side-tuning paper's iTaskonomy and navigation base) are
ResNets whose last stage is compressed by a 3x3 convolution to 8 channels, GroupNorm and ReLU: an
8 x 16 x 16 map for a 256 px image. :class:`MidLevelEncoder` keeps that output and the ResNet shape at
a size two CPU cores can train: a stride-2 stem and three stages of two CIFAR residual blocks
(16/32/64 channels, strides 1/2/2), so 128 px images give 8 x 16 x 16 (stride 8; the map scales with
the input). It has the interface of :class:`~continual_side.models.backbones.CifarResNet` (``stem``,
``layer1..3``, ``residual_blocks``, ``tail``, ``features``, ``feature_dim``), so every method that
runs a CIFAR ResNet's blocks runs it too.

:class:`FCN5` is the side-tuning paper's five-layer side network for this base: image in, a map of
the base's shape out, as the paper initialises its sides by distilling the base.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from continual_side.hub import resolve_weights
from continual_side.models.backbones import BasicBlock, CifarResNet
from continual_side.models.checkpoint import load_weights_file

FEATURE_CHANNELS = 8
FEATURE_STRIDE = 8


def _conv_gn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(2 if out_channels % 2 == 0 else 1, out_channels),
        nn.ReLU(),
    )


class MidLevelEncoder(nn.Module):
    """Taskonomy-style encoder: image (B, 3, H, W) -> feature map (B, 8, H/8, W/8).

    ``residual_blocks`` gives the six residual blocks in forward order, ``tail`` the compression of the
    last block's output (conv 3x3 to 8 channels, GroupNorm, ReLU, as Taskonomy's encoders end).

    :param blocks_per_stage: residual blocks in each of the three stages.
    """

    feature_dim = FEATURE_CHANNELS
    feature_stride = FEATURE_STRIDE

    def __init__(self, blocks_per_stage: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = CifarResNet._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = CifarResNet._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = CifarResNet._stage(32, 64, blocks_per_stage, stride=2)
        self.compress = nn.Conv2d(64, FEATURE_CHANNELS, 3, stride=1, padding=1, bias=False)
        self.compress_norm = nn.GroupNorm(FEATURE_CHANNELS, FEATURE_CHANNELS)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first conv-BN-ReLU (stride 2), (B, 16, H/2, W/2)."""
        return torch.relu(self.bn1(self.conv1(x)))

    def residual_blocks(self) -> list[BasicBlock]:
        """Every residual block in forward order."""
        return [*self.layer1, *self.layer2, *self.layer3]

    def tail(self, out: torch.Tensor) -> torch.Tensor:
        """The last block's output compressed to the feature map, (B, 8, H/8, W/8)."""
        return torch.relu(self.compress_norm(self.compress(out)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map the task decoders read, (B, 8, H/8, W/8)."""
        return self.tail(self.layer3(self.layer2(self.layer1(self.stem(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class FCN5(nn.Module):
    """Side-tuning's five-layer fully convolutional side network for the mid-level base.

    Three stride-2 conv-GroupNorm-ReLU layers, one stride-1, and a last conv-GroupNorm-ReLU to 8
    channels: image (B, 3, H, W) -> (B, 8, H/8, W/8), the shape of :class:`MidLevelEncoder`'s feature.
    """

    feature_dim = FEATURE_CHANNELS
    feature_stride = FEATURE_STRIDE

    def __init__(self):
        super().__init__()
        self.conv1 = _conv_gn_relu(3, 16, stride=2)
        self.conv2 = _conv_gn_relu(16, 16, stride=2)
        self.conv3 = _conv_gn_relu(16, 32, stride=2)
        self.conv4 = _conv_gn_relu(32, 32, stride=1)
        self.conv5 = nn.Sequential(
            nn.Conv2d(32, FEATURE_CHANNELS, 3, stride=1, padding=1, bias=False),
            nn.GroupNorm(FEATURE_CHANNELS, FEATURE_CHANNELS),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))


def midlevel(weights: str | Path | bool | None = None) -> MidLevelEncoder:
    """The mid-level encoder.

    :param weights: None/False for random init, True for the hub's midlevel-curvature (pre-trained on the
        mini-Taskonomy's curvature), or a file path.
    :raises WeightsError: when the weights cannot be found or do not fit.
    """
    model = MidLevelEncoder()
    if weights is None or weights is False:
        return model
    hub_name = "midlevel-curvature"
    path = resolve_weights(hub_name) if weights is True else resolve_weights(hub_name, weights)
    load_weights_file(model, path, f"a MidLevelEncoder state_dict such as the hub's {hub_name}")
    return model
