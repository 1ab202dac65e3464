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

:class:`TaskonomyEncoder` is the real Taskonomy encoder (ResNet-50, 256 px -> 8 x 16 x 16) in the layout
of the ``visualpriors`` package (Sax et al., github.com/alexsax/visual-prior), so its published
``<task>_encoder-<sha256>.pth`` checkpoints load strictly from a path the user gives (nothing is
downloaded here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from continual_side.errors import ConfigError, WeightsError
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


TASKONOMY_STAGES = ((64, 3, 2), (128, 4, 2), (256, 6, 1), (512, 3, 1))
"""visualpriors' ResNet-50 stages: (bottleneck width, blocks, stride of the stage's last block)."""


def _taskonomy_stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One stage as visualpriors builds it (not torchvision's layout): the first block changes the width
    with a stride-1 1x1 conv shortcut, the *last* block carries the stride, its shortcut a 1x1 max-pool."""
    width = planes * Bottleneck.expansion
    widen = nn.Sequential(nn.Conv2d(in_planes, width, 1, bias=False), nn.BatchNorm2d(width)) if in_planes != width else None
    subsample = nn.Sequential(nn.MaxPool2d(kernel_size=1, stride=stride)) if stride != 1 else None
    return nn.Sequential(
        Bottleneck(in_planes, planes, downsample=widen),
        *(Bottleneck(width, planes) for _ in range(blocks - 2)),
        Bottleneck(width, planes, stride, subsample),
    )


class TaskonomyEncoder(nn.Module):
    """Taskonomy's ResNet-50 encoder: image (B, 3, 256, 256) -> feature map (B, 8, 16, 16).

    Module names and shapes are those of ``visualpriors.taskonomy_network.TaskonomyEncoder``, so its
    checkpoints' ``state_dict`` loads with strict=True: a 7x7 stride-2 conv, BN, ReLU, a 3x3 stride-2
    max-pool (ceil mode), four bottleneck stages (strides 2, 2, 1, 1), then ``compress1`` (3x3 conv to 8
    channels), ``compress_bn`` (BatchNorm), ReLU and a GroupNorm(8, 8) without parameters (visualpriors'
    ``normalize_outputs``, on by default there).

    The published encoders were trained on images scaled to [-1, 1]; every stream of this suite feeds
    ImageNet-normalised images, so by default :meth:`stem` maps those back to [-1, 1] first.

    :param input_scaling: what the inputs are: "imagenet" (mean/std normalised, the suite's streams) or
        "minus_one_to_one" (``x / 127.5 - 1``, visualpriors' convention, e.g.
        ``TaskonomyViews(input_scaling="minus_one_to_one")``).
    :raises ConfigError: an unknown input_scaling.
    """

    feature_dim = FEATURE_CHANNELS
    feature_stride = 16

    def __init__(self, input_scaling: Literal["imagenet", "minus_one_to_one"] = "imagenet"):
        super().__init__()
        if input_scaling not in ("imagenet", "minus_one_to_one"):
            raise ConfigError(f"input_scaling={input_scaling!r}; use 'imagenet' or 'minus_one_to_one'")
        # imported here: the streams package imports the models, so a module-level import would be circular
        from continual_side.streams.transforms import IMAGENET_MEAN, IMAGENET_STD

        self.input_scaling = input_scaling
        # x_imagenet * 2 std + (2 mean - 1) is the same image scaled to [-1, 1]; not saved in the state_dict
        self.register_buffer("input_scale", 2 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", 2 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) - 1, persistent=False)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        in_planes = 64
        for index, (planes, blocks, stride) in enumerate(TASKONOMY_STAGES, start=1):
            setattr(self, f"layer{index}", _taskonomy_stage(in_planes, planes, blocks, stride))
            in_planes = planes * Bottleneck.expansion
        self.compress1 = nn.Conv2d(in_planes, FEATURE_CHANNELS, kernel_size=3, stride=1, padding=1, bias=False)
        self.compress_bn = nn.BatchNorm2d(FEATURE_CHANNELS)
        self.relu1 = nn.ReLU(inplace=True)
        self.groupnorm = nn.GroupNorm(FEATURE_CHANNELS, FEATURE_CHANNELS, affine=False)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Input scaling, conv-BN-ReLU and max-pool, (B, 64, H/4, W/4)."""
        if self.input_scaling == "imagenet":
            x = x * self.input_scale + self.input_shift
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def residual_blocks(self) -> list[Bottleneck]:
        """Every bottleneck block in forward order (16: layer1 to layer4)."""
        return [*self.layer1, *self.layer2, *self.layer3, *self.layer4]

    def tail(self, out: torch.Tensor) -> torch.Tensor:
        """layer4's output compressed to the normalised feature map, (B, 8, H/16, W/16)."""
        return self.groupnorm(self.relu1(self.compress_bn(self.compress1(out))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map the task decoders read, (B, 8, H/16, W/16)."""
        return self.tail(self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def taskonomy_encoder(weights: str | Path | bool | None = None) -> TaskonomyEncoder:
    """Taskonomy's ResNet-50 encoder, the side-tuning paper's iTaskonomy base, from a file the user has.

    :param weights: None/False for random init, or the path of a visualpriors encoder checkpoint
        (``{"state_dict": ...}``, e.g. ``curvature_encoder-3767cf5d....pth``) or of a plain state_dict.
        True (a run's default, "the pre-trained weights") is refused: none ship with this project and
        nothing is downloaded.
    :raises WeightsError: no path, a missing file, or one that does not fit.
    """
    model = TaskonomyEncoder()
    if weights is None or weights is False:
        return model
    expected = "a visualpriors TaskonomyEncoder checkpoint such as curvature_encoder-3767cf5d....pth"
    if weights is True:
        raise WeightsError(
            "the taskonomy base has no packaged weights and is never downloaded: pass the path of "
            f"{expected} (github.com/alexsax/visual-prior, assets/pytorch/) with --base-weights PATH"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: give the path of {expected}")
    load_weights_file(model, path, expected)
    return model
