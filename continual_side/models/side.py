"""Side networks: the small trainable network whose feature side-tuning merges with the frozen base's."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from continual_side.errors import ConfigError
from continual_side.hub import resolve_weights
from continual_side.models.backbones import CifarResNet
from continual_side.models.checkpoint import load_weights_file

SIDE_INITS = ("distilled", "base_copy", "random")


def _conv_gn_relu(in_channels: int, out_channels: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding, bias=False),
        nn.GroupNorm(2, out_channels),
        nn.ReLU(),
    )


class FCN4(nn.Module):
    """Side-tuning's four-layer fully convolutional side network for CIFAR, pooled to 64-d.

    Module names match the side-tuning weights (conv1..conv3 conv+GroupNorm+ReLU, conv5 conv+ReLU),
    so the copy distilled from ResNet-44 loads with strict=True. 32x32 inputs give 5x5 maps at conv5.
    """

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.conv1 = _conv_gn_relu(3, 16, stride=1, padding=1)
        self.conv2 = _conv_gn_relu(16, 16, stride=2, padding=0)
        self.conv3 = _conv_gn_relu(16, 32, stride=2, padding=0)
        self.conv5 = nn.Sequential(nn.Conv2d(32, self.feature_dim, 3, stride=1, padding=0, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled feature, (B, 64)."""
        out = self.conv5(self.conv3(self.conv2(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class FeatureExtractor(nn.Module):
    """A network's `features` as its forward, so a copy of the base can serve as a side network."""

    def __init__(self, network: CifarResNet):
        super().__init__()
        self.network = network
        self.feature_dim = network.feature_dim
        self.feature_stride = getattr(network, "feature_stride", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)


def make_side(init: str, base: CifarResNet) -> nn.Module:
    """A trainable side network mapping images to (B, 64) features.

    :param init: "distilled" (FCN4 with the hub's fcn4-cifar weights, distilled from ResNet-44),
        "base_copy" (a trainable deep copy of the base network's feature extractor) or
        "random" (FCN4, randomly initialised).
    :param base: the base network; only "base_copy" uses it (it is copied, never shared).
    :raises ConfigError: for an unknown init.
    :raises WeightsError: when the distilled weights cannot be found or do not fit.
    """
    if init == "distilled":
        side = FCN4()
        load_weights_file(side, resolve_weights("fcn4-cifar"), "the side-tuning FCN4 state_dict (hub: fcn4-cifar)")
        return side
    if init == "base_copy":
        network = copy.deepcopy(base)
        network.linear = nn.Identity()  # the classifier is not part of the feature extractor
        side = FeatureExtractor(network.requires_grad_(True))
        return side
    if init == "random":
        return FCN4()
    raise ConfigError(f"unknown side init {init!r}: choose one of {', '.join(SIDE_INITS)}")
