"""Task heads on top of the (merged) feature: a linear classifier, or a decoder for a dense task."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DenseOutput:
    """What a dense task (an iTaskonomy domain) predicts, in place of a class count.

    :param domain: the task's domain, e.g. ``curvature`` (its loss is ``dense_losses.TASK_LOSSES[domain]``).
    :param channels: prediction channels (classes for segment_semantic and class_object).
    :param pixelwise: an image at the input resolution (N, channels, H, W); False: a vector per image
        (N, channels), e.g. class_object's class scores.
    """

    domain: str
    channels: int
    pixelwise: bool = True


TaskOutput = int | DenseOutput
POOLED_GRID = 4
"""A task's output: its number of classes (classification) or a :class:`DenseOutput`."""


class DenseDecoder(nn.Module):
    """A light decoder from a feature map to a prediction at ``stride`` times its resolution.

    A conv-GroupNorm-ReLU at the feature's resolution, a bilinear x2 upsampling, a second
    conv-GroupNorm-ReLU, a 1x1 convolution to the task's channels, and the prediction upsampled
    bilinearly to the input's resolution (as DeepLab upsamples its logits). Layers at full resolution
    would cost more than the whole side network (measured: 0.38 s against FCN5's 0.07 s per 64
    views, forward and backward), so with a cached frozen base they would make side-tuning's epoch half
    of fine-tuning's; this one keeps it near a fifth (the speed target). The paper's decoders are larger.

    :param in_channels: channels of the feature map.
    :param out_channels: prediction channels.
    :param stride: input resolution / feature resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if stride < 1:
            raise ValueError(f"stride {stride} must be at least 1")
        self.stride = stride
        self.coarse = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.GroupNorm(1, 16), nn.ReLU())
        self.fine = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.GroupNorm(1, 16), nn.ReLU())
        self.out = nn.Conv2d(16, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        size = (features.shape[-2] * self.stride, features.shape[-1] * self.stride)
        out = self.coarse(features)
        if self.stride > 1:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=False)
        prediction = self.out(self.fine(out))
        if prediction.shape[-2:] != size:
            prediction = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)
        return prediction


class PooledClassifier(nn.Module):
    """A linear classifier on a feature map average-pooled to ``POOLED_GRID`` x ``POOLED_GRID`` and
    flattened: a per-image prediction (class_object) from a map feature.

    Not a global average: the mid-level encoder's map ends in a per-channel GroupNorm, so each
    channel's global mean is nearly the same for every image; where things are in the view is what
    tells them apart.
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim * POOLED_GRID * POOLED_GRID, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(F.adaptive_avg_pool2d(features, POOLED_GRID).flatten(1))


def make_head(in_dim: int, output: TaskOutput, *, stride: int = 1) -> nn.Module:
    """The head for one task.

    :param in_dim: width (channels) of the feature the head reads.
    :param output: a class count: a linear classifier, as side-tuning uses for each iCIFAR task; a
        pixel-wise :class:`DenseOutput`: a :class:`DenseDecoder`; a per-image one: a
        :class:`PooledClassifier`.
    :param stride: input resolution / feature resolution, for a decoder (the base's ``feature_stride``).
    """
    if isinstance(output, DenseOutput):
        if output.pixelwise:
            return DenseDecoder(in_dim, output.channels, stride)
        return PooledClassifier(in_dim, output.channels)
    return nn.Linear(in_dim, output)


def feature_stride(network: nn.Module) -> int:
    """How much coarser than the input a network's feature is (1 for a pooled vector)."""
    return getattr(network, "feature_stride", 1)
