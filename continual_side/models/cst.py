"""Calibration Side-Tuning (CST) for classification and dense tasks on a ResNet-style backbone (the CIFAR
ResNet or the mid-level encoder).

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
  channels on the CIFAR ResNet); at each residual stage a 1x1 projection of the stage's output joins
  the side state (carried down by a stride-2 3x3 conv), followed by conv3x3-GroupNorm-ReLU as in the
  side-tuning FCN4; a 1x1 conv lifts the last state to the backbone's 64 channels.
* Fusion happens once, on the last stage's map, because a classifier reads only that map; the paper
  (a detector) is said by third-party summaries to calibrate every stage for the detection heads.
  Calibrated maps never re-enter the backbone, so the backbone runs without a graph, gets no gradient,
  and its pass could be shared by several tasks.
* The head reads the backbone's own ``tail`` of the calibrated map, frozen: the CIFAR ResNet's global
  pooling, or the mid-level encoder's compression (3x3 conv, GroupNorm, ReLU) of the 64-channel map to
  its 8-channel feature map, which a dense decoder then reads. The compression was trained on the
  backbone's h_3, not on the calibrated map; we keep it frozen rather than train a copy per task or let
  the head read the 64 channels, so that the gate at alpha = 0 gives exactly the frozen base's feature
  (training starts at the base, as on the CIFAR ResNet), every method's head reads the same 8-channel
  map, and CST trains only its side, gate and head. Gradients pass through the frozen tail to the gate
  and side; its weights get none.
* Detection (the paper's setting: detector, FPN, detection heads, datasets) is out of scope: this
  module is the counterpart for the suite's continual-learning streams (classes and iTaskonomy's dense tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.side import _conv_gn_relu
from continual_side.models.sidetuned import FrozenBase

SIDE_WIDTH_RATIO = 2


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
    :param width_ratio: side widths are the stage channels divided by this.
    """

    def __init__(self, stage_channels: Sequence[int], width_ratio: int = SIDE_WIDTH_RATIO):
        super().__init__()
        widths = [max(2, channels // width_ratio) for channels in stage_channels]
        self.stage_inputs = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(stage_channels, widths))
        self.carries = nn.ModuleList(
            nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False)
            for previous, width in zip(widths, widths[1:])
        )
        self.blocks = nn.ModuleList(_conv_gn_relu(w, w, stride=1, padding=1) for w in widths)
        self.output = nn.Conv2d(widths[-1], stage_channels[-1], 1)

    def forward(self, stage_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The side map, shaped like the last stage output.

        :param stage_outputs: the backbone's stage outputs, each at half the previous resolution.
        """
        state = self.blocks[0](self.stage_inputs[0](stage_outputs[0]))
        for stage_input, carry, block, stage_out in zip(
            self.stage_inputs[1:], self.carries, self.blocks[1:], stage_outputs[1:]
        ):
            state = block(stage_input(stage_out) + carry(state))
        return self.output(state)


class CalibrationSideTuning(nn.Module):
    """output = head(tail(gate(h_3, side(h_1, h_2, h_3)))) on a frozen ResNet-style backbone.

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
        stage_channels = [stage[-1].conv2.out_channels for stage in (base.layer1, base.layer2, base.layer3)]
        self.side = CalibrationSideNetwork(stage_channels, width_ratio)
        self.gate = TransitionGate(stage_channels[-1])
        self.head = make_head(base.feature_dim, output, stride=feature_stride(base))

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's three stage outputs, computed without a graph."""
        network = self.base.network
        with torch.no_grad():
            outputs = [network.layer1(network.stem(x))]
            for stage in (network.layer2, network.layer3):
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
