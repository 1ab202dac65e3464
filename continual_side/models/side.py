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
from continual_side.models.midlevel import FCN5, MidLevelEncoder, TaskonomyEncoder

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


def make_side(init: str, base: nn.Module | None) -> nn.Module:
    """A trainable side network with the base's feature: (B, 64) for a CIFAR ResNet, the 8-channel
    map for the mid-level encoder.

    :param init: "distilled" (the paper's side distilled from the base: FCN4 with the hub's fcn4-cifar
        weights, distilled from ResNet-44, or for a :class:`MidLevelEncoder` FCN5 with the hub's
        fcn5-midlevel weights, distilled from midlevel-curvature), "base_copy" (a trainable deep copy
        of the base network's feature extractor) or "random" (FCN4, or FCN5 for the mid-level base,
        randomly initialised).
    :param base: the base network; it picks FCN4 or FCN5 and "base_copy" copies it (never shares it).
        None (a caller without a base) gets FCN4.
    :raises ConfigError: for an unknown init, or an FCN side for Taskonomy's ResNet-50 (none has its
        16x stride here).
    :raises WeightsError: when the distilled weights cannot be found or do not fit.
    """
    if init not in SIDE_INITS:
        raise ConfigError(f"unknown side init {init!r}: choose one of {', '.join(SIDE_INITS)}")
    if init == "base_copy":
        network = copy.deepcopy(base)
        network.linear = nn.Identity()  # the classifier is not part of the feature extractor
        side = FeatureExtractor(network.requires_grad_(True))
        return side
    if isinstance(base, TaskonomyEncoder):
        raise ConfigError(f"side init {init!r} has no side network for the taskonomy base (FCN5 here has stride 8, "
                          "the ResNet-50's feature stride 16): use --sidetune.side-init base_copy")
    if isinstance(base, MidLevelEncoder):
        side = FCN5()
        if init == "distilled":
            load_weights_file(side, resolve_weights("fcn5-midlevel"),
                              "the FCN5 state_dict distilled from midlevel-curvature (hub: fcn5-midlevel)")
        return side
    side = FCN4()
    if init == "distilled":
        load_weights_file(side, resolve_weights("fcn4-cifar"), "the side-tuning FCN4 state_dict (hub: fcn4-cifar)")
    return side
