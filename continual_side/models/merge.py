"""Merge operators: how side-tuning combines the base feature b and the side feature s.

Both features are pooled vectors (B, dim) (the CIFAR bases) or maps (B, dim, H, W) (the mid-level
base): every operator acts per feature channel, so on a map the learned ones (FiLM, MLP) apply their
linear layers over the channels at every pixel (1x1 convolutions) and the others broadcast.
The names follow the side-tuning reference's operators; side-tuning's default is "alpha".
"""

from __future__ import annotations

import torch
from torch import nn

from continual_side.errors import ConfigError


def over_channels(layer: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """``layer`` (acting on the last dimension) applied to the channels of (B, C) or (B, C, H, W) features.

    On a map this is a 1x1 convolution with the layer's weights; on a vector it is the layer itself.
    """
    if features.dim() == 2:
        return layer(features)
    return layer(features.movedim(1, -1)).movedim(-1, 1)


class BaseOnly(nn.Module):
    """out = b (the fixed-features baseline)."""

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return base_feat


class SideOnly(nn.Module):
    """out = s (the side network alone)."""

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return side_feat


class Sum(nn.Module):
    """out = b + s."""

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return base_feat + side_feat


class Product(nn.Module):
    """out = b * s (element-wise)."""

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return base_feat * side_feat


class AlphaBlend(nn.Module):
    """out = alpha * b + (1 - alpha) * s, alpha = sigmoid(theta), theta learned and starting at 0."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(()))

    @property
    def alpha(self) -> torch.Tensor:
        """The current weight on the base feature (0.5 at initialisation)."""
        return torch.sigmoid(self.theta)

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha
        return alpha * base_feat + (1 - alpha) * side_feat


class FiLM(nn.Module):
    """out = gamma * b + beta with gamma = W_g s + c_g, beta = W_b s + c_b (feature-wise modulation).

    Starts as the identity on b: W_g = W_b = 0, c_g = 1, c_b = 0.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Linear(dim, dim)
        self.beta = nn.Linear(dim, dim)
        for layer, bias in ((self.gamma, 1.0), (self.beta, 0.0)):
            nn.init.zeros_(layer.weight)
            nn.init.constant_(layer.bias, bias)

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return over_channels(self.gamma, side_feat) * base_feat + over_channels(self.beta, side_feat)


class MLP(nn.Module):
    """out = W2 relu(W1 b + c1) + c2 + s: a learned transform of b, added to s.

    The reference's iCIFAR "MLP" merge, without the BatchNorm1d it puts between the two layers
    (which would make the merge depend on batch statistics).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.base_net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, base_feat: torch.Tensor, side_feat: torch.Tensor) -> torch.Tensor:
        return over_channels(self.base_net, base_feat) + side_feat


_MERGES = {
    "base_only": lambda dim: BaseOnly(),
    "side_only": lambda dim: SideOnly(),
    "sum": lambda dim: Sum(),
    "product": lambda dim: Product(),
    "alpha": lambda dim: AlphaBlend(),
    "film": FiLM,
    "mlp": MLP,
}
MERGE_NAMES = tuple(_MERGES)


def make_merge(name: str, dim: int = 64) -> nn.Module:
    """A merge operator; its forward(base_feat, side_feat) returns a feature shaped like both.

    :param name: one of MERGE_NAMES.
    :param dim: width (channels) of both features.
    :raises ConfigError: for an unknown name.
    """
    if name not in _MERGES:
        raise ConfigError(f"unknown merge {name!r}: choose one of {', '.join(MERGE_NAMES)}")
    return _MERGES[name](dim)
