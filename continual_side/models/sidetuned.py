"""Side-tuning for one task: logits = head(merge(base(x), side(x))) with the base frozen."""

from __future__ import annotations

import torch
from torch import nn

from continual_side.models.feature_cache import FeatureCache


class FrozenBase(nn.Module):
    """A network whose `features` never change: no gradients, and always in eval mode.

    Staying in eval mode matters as much as requires_grad=False: a BatchNorm in train mode would
    update its running statistics on every forward pass. Together they make the features a fixed
    function of (weights, input), which is what lets a :class:`FeatureCache` serve them.

    :param network: has ``features(x)`` and ``feature_dim``.
    :param cache: serves features computed before; None runs the network on every call.
    """

    def __init__(self, network: nn.Module, cache: FeatureCache | None = None):
        super().__init__()
        self.network = network.requires_grad_(False).eval()
        self.feature_dim = network.feature_dim
        self.feature_stride = getattr(network, "feature_stride", 1)
        self.cache = cache

    def train(self, mode: bool = True) -> FrozenBase:
        """Record the mode as usual but keep the wrapped network in eval mode."""
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's features, (B, feature_dim), computed without building a graph."""
        if self.cache is not None:
            return self.cache.features(self.network, x)
        with torch.no_grad():
            return self.network.features(x)


class SideTunedNetwork(nn.Module):
    """logits = head(merge(base(x), side(x))); only side, merge and head train."""

    def __init__(self, base: FrozenBase, side: nn.Module, merge: nn.Module, head: nn.Module):
        super().__init__()
        self.base = base
        self.side = side
        self.merge = merge
        self.head = head

    def base_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen base's feature of x: the one place the base runs, so a cache can replace it."""
        return self.base(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.merge(self.base_features(x), self.side(x)))
