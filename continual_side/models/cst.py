"""Calibration Side-Tuning (CST) for classification and dense tasks on a ResNet-style backbone (the CIFAR
ResNet, the mid-level encoder or Taskonomy's ResNet-50).

Feng Chen, "CST: Calibration Side-Tuning for Parameter and Memory Efficient Transfer Learning",
arXiv:2402.12736 (2024).

What the paper's abstract says, and this module keeps: a light side network beside a frozen ResNet,
fed by the backbone's intermediate outputs, whose feature is fused with the backbone's through a
"maximal transition calibration" (MTC) gate; few added parameters; training stays smooth.

What could not be read offline (the paper's method section; no code is public), so everything below is
our design and not the paper's:

* :class:`TransitionGate` is not the paper's MTC equation, which we could not recover. It is a gate
  shaped after the name: per channel, the calibrated map moves from the backbone's value h towards the
  element-wise maximum of h and the side's s, ``c = h + tanh(alpha) * (max(h, s) - h)``, with alpha
  starting at 0 so training starts exactly at the base (and smoothly, ReZero-style).
* The side network (:class:`CalibrationSideNetwork`) is LST-like: half the backbone's widths (8/16/32
  channels on the CIFAR ResNet); at each residual stage (``layer1``, ``layer2``, ... as many as the
  backbone has: three on the CIFAR ResNet and the mid-level encoder, four on the ResNet-50) a 1x1
  projection of the stage's output joins the side state (carried over by a 3x3 conv with the stage's
  stride: 2 on the CIFAR ResNet's later stages, 1 on the ResNet-50's last two), followed by
  conv3x3-GroupNorm-ReLU as in the side-tuning FCN4; a 1x1 conv lifts the last state to the backbone's
  last stage width (64 channels on the CIFAR ResNet).
* Fusion happens once, on the last stage's map, because a classifier reads only that map; the paper
  (a detector) is said by third-party summaries to calibrate every stage for the detection heads.
  Calibrated maps never re-enter the backbone, so the backbone runs without a graph, gets no gradient,
  and its pass could be shared by several tasks.
* The head reads the backbone's own ``tail`` of the calibrated map, frozen: the CIFAR ResNet's global
  pooling, or the mid-level encoder's compression (3x3 conv, GroupNorm, ReLU) of the 64-channel map to
  its 8-channel feature map (the ResNet-50's, of its 2048 channels), which a dense decoder then reads. The
  compression was trained on the backbone's last stage output, not on the calibrated map; we keep it
  frozen rather than train a copy per task or let the head read the wide map, so that the gate at alpha = 0 gives exactly the frozen base's feature
  (training starts at the base, as on the CIFAR ResNet), every method's head reads the same 8-channel
  map, and CST trains only its side, gate and head. Gradients pass through the frozen tail to the gate
  and side; its weights get none.
* Detection (the paper's setting: detector, FPN, detection heads, datasets) is out of scope: this
  module is the counterpart for the suite's continual-learning streams (classes and iTaskonomy's dense tasks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import count

import torch
from torch import nn

from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.restuning import block_shape
from continual_side.models.side import _conv_gn_relu
from continual_side.models.sidetuned import FrozenBase

SIDE_WIDTH_RATIO = 2


def residual_stages(network: nn.Module) -> list[nn.Sequential]:
    """The backbone's residual stages ``layer1``, ``layer2``, ... in forward order, as many as it has."""
    stages = []
    for index in count(1):
        if not hasattr(network, f"layer{index}"):
            return stages
        stages.append(getattr(network, f"layer{index}"))


def stage_stride(stage: nn.Sequential) -> int:
    """How much coarser a stage's output is than its input (the product of its blocks' strides)."""
    return math.prod(block_shape(block).stride for block in stage)


class TransitionGate(nn.Module):
    """c = h + tanh(alpha) * (max(h, s) - h), alpha per channel and 0 at first (our design, see module doc).

    :param channels: channels of both maps.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))

    def forward(self, backbone_map: torch.Tensor, side_map: torch.Tensor) -> torch.Tensor:
        """The calibrated map, shaped like both inputs, (B, C, H, W)."""
        gate = torch.tanh(self.alpha).view(1, -1, 1, 1)
        return backbone_map + gate * (torch.maximum(backbone_map, side_map) - backbone_map)


class CalibrationSideNetwork(nn.Module):
    """A light side network reading every residual stage's output; returns a map like the last one.

    :param stage_channels: channels of the backbone's stage outputs, e.g. (16, 32, 64).
    :param stage_strides: each stage's stride (its output's resolution relative to the previous stage's),
        e.g. (1, 2, 2); the first one is not used.
    :param width_ratio: side widths are the stage channels divided by this.
    """

    def __init__(self, stage_channels: Sequence[int], stage_strides: Sequence[int],
                 width_ratio: int = SIDE_WIDTH_RATIO):
        super().__init__()
        widths = [max(2, channels // width_ratio) for channels in stage_channels]
        self.stage_inputs = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(stage_channels, widths))
        self.carries = nn.ModuleList(
            nn.Conv2d(previous, width, 3, stride=stride, padding=1, bias=False)
            for previous, width, stride in zip(widths, widths[1:], stage_strides[1:])
        )
        self.blocks = nn.ModuleList(_conv_gn_relu(w, w, stride=1, padding=1) for w in widths)
        self.output = nn.Conv2d(widths[-1], stage_channels[-1], 1)

    def forward(self, stage_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The side map, shaped like the last stage output.

        :param stage_outputs: the backbone's stage outputs, each at the previous one's resolution divided
            by its stage's stride.
        """
        state = self.blocks[0](self.stage_inputs[0](stage_outputs[0]))
        for stage_input, carry, block, stage_out in zip(
            self.stage_inputs[1:], self.carries, self.blocks[1:], stage_outputs[1:]
        ):
            state = block(stage_input(stage_out) + carry(state))
        return self.output(state)


class CalibrationSideTuning(nn.Module):
    """output = head(tail(gate(h_S, side(h_1, ..., h_S)))) on a frozen ResNet-style backbone with S stages.

    Trainable (:attr:`trainable_prefixes`): ``side``, ``gate`` and ``head``. The base is shared,
    frozen, always in eval mode, and runs without a graph.

    :param base: the pre-trained network; frozen in place and shared, never copied.
    :param output: what the task's head predicts (a class count or a DenseOutput).
    :param width_ratio: side widths are the stage channels divided by this.
    """

    trainable_prefixes = ("side.", "gate.", "head.")

    def __init__(self, base: CifarResNet, output: TaskOutput, width_ratio: int = SIDE_WIDTH_RATIO):
        super().__init__()
        self.base = FrozenBase(base)
        stages = residual_stages(base)
        stage_channels = [block_shape(stage[-1]).out_channels for stage in stages]
        self.side = CalibrationSideNetwork(stage_channels, [stage_stride(stage) for stage in stages], width_ratio)
        self.gate = TransitionGate(stage_channels[-1])
        self.head = make_head(base.feature_dim, output, stride=feature_stride(base))

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stage outputs (one per :func:`residual_stages`), computed without a graph."""
        network = self.base.network
        first, *later = residual_stages(network)
        with torch.no_grad():
            outputs = [first(network.stem(x))]
            for stage in later:
                outputs.append(stage(outputs[-1]))
        return outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's tail of the calibrated map (the base's feature shape)."""
        return self.calibrated_features(self.stage_outputs(x))

    def calibrated_features(self, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        """The backbone's tail of the calibrated map, from its :meth:`stage_outputs` (which other tasks can share)."""
        calibrated = self.gate(stages[-1], self.side(stages))
        return self.base.network.tail(calibrated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The task's output: logits (B, classes), or a dense prediction."""
        return self.head(self.features(x))
