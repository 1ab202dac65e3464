"""Networks for side-tuning: CIFAR ResNet bases, side networks, merge operators, heads."""

from continual_side.models.backbones import CifarResNet, resnet20, resnet44
from continual_side.models.heads import make_head
from continual_side.models.merge import MERGE_NAMES, make_merge
from continual_side.models.side import FCN4, SIDE_INITS, make_side
from continual_side.models.sidetuned import FrozenBase, SideTunedNetwork

__all__ = [
    "CifarResNet", "resnet20", "resnet44", "make_head", "MERGE_NAMES", "make_merge",
    "FCN4", "SIDE_INITS", "make_side", "FrozenBase", "SideTunedNetwork",
]
