"""Res-Tuning and Res-Tuning-Bypass on a ResNet-style backbone (CIFAR ResNet, mid-level encoder or
Taskonomy's ResNet-50): Res-Adapter tuners unbound from the backbone.

Jiang, Mao, Huang, Ma, Lv, Shen, Zhao, Zhou, "Res-Tuning: A Flexible and Efficient Tuning Paradigm via
Unbinding Tuner from Backbone", NeurIPS 2023, arXiv:2310.19859; reference implementation in
modelscope/ms-swift (``swift/tuners/restuning.py``, ``restuning_components.py``).

Two networks, both on a frozen, shared, eval-mode backbone:

* :class:`ResTuning` puts a Res-Adapter branch parallel to every residual block,
  ``x_l = block_l(x_{l-1}) + tuner_l(x_{l-1})``. Gradients reach earlier tuners *through* the frozen
  blocks, so training memory is that of fine-tuning or more.
* :class:`ResTuningBypass` runs the backbone without a graph and feeds its detached outputs h_l to a
  chain of tuners beside it (the bypass)::

      b_0 = h_0 (stem output),   b_l = h_l + lateral_l(h_l) + vertical_l(b_{l-1}),   out = head(tail(b_L))

  No gradient reaches the backbone, and one backbone pass serves every task's bypass
  (:meth:`ResTuningBypass.forward_tasks`).

Choices where the paper or the reference code does not fit a CIFAR ResNet (ours, not the paper's):

* A tuner branch is ``up(ReLU(down(x)))`` with 1x1 convolutions: the reference's linear Res-Adapter
  applied per pixel, with ReLU instead of its GELU and a bottleneck of out_channels / 8
  (``reduction``; the reference's width 32 on ViT-B's 768 channels would leave one channel here).
  Both choices are for memory: a ResNet basic block saves only about four feature maps for backward,
  and the bypass saves at least two (h_l and b_l) plus its bottlenecks; ReLU's saved output doubles as
  the up-projection's input, where GELU saves two tensors. Saved-for-backward bytes relative to
  fine-tuning ResNet-44 (batch 32, 32 px, measured with saved_tensors_hooks): GELU and out/4 0.72,
  ReLU and out/4 0.60, ReLU and out/8 0.54; Res-Tuning inside the backbone stays above 1.
* The up-projection (weights and bias) starts at zero in every Res-Tuning tuner and in the Bypass's last
  block (the reference's ``zero_init_last``), so both networks start exactly at the base. The Bypass's
  earlier up-projections are Xavier-uniform, as in the reference: were they zero too, block l's tuners
  would get no gradient until the vertical tuners after it had moved (L - l steps, 21 on ResNet-44) and
  then a vanishing one. Down-projections are Xavier-uniform with zero bias, as in the reference up to
  its N(0, 1e-6) bias.
* The bypass sums its two branches like the reference (the paper's lambda / (1 - lambda) weighting,
  known only from a third-party transcription, is not used). The lateral branch keeps the
  reference's identity term and the vertical one has none, so the bypass starts at the backbone's last
  feature map instead of a sum of all block outputs. Where a block halves the resolution and doubles
  the channels, the vertical tuner's down-projection has stride 2.
* Both networks end with the backbone's own ``tail``, frozen: the CIFAR ResNet's global pooling, or the
  mid-level encoder's compression of the last block's 64 channels to its 8-channel feature map (3x3 conv,
  GroupNorm, ReLU), which the head (a dense decoder there) reads. For Res-Tuning the tail simply follows
  the tuned blocks, as the stem precedes them. For the Bypass it compresses the last bypass state, a map
  the frozen conv was not trained on. We keep it frozen and shared rather than train a per-task copy or
  give the head the 64-channel state: the bypass starts exactly at the backbone's last block output, so
  the task starts exactly at the frozen base's feature (as fixed features and side-tuning do, and as the
  Bypass does on the CIFAR ResNet); the head reads the same 8-channel map as every other method's; and
  the Bypass still trains only its tuners, which can learn whatever the fixed compression needs. Training
  the tail would fine-tune a part of the backbone, which Res-Tuning does not do. No gradient reaches the
  tail's weights (they are frozen); gradients pass through it to the tuners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.sidetuned import FrozenBase

TUNER_REDUCTION = 8


class BlockShape(NamedTuple):
    """What a residual block does to a map's shape: input and output channels, and its stride."""

    in_channels: int
    out_channels: int
    stride: int


def block_shape(block: nn.Module) -> BlockShape:
    """A residual block's shape, read from its convolutions so that every base's layout serves: the CIFAR
    basic block (stride on conv1, zero-padding shortcut), torchvision's bottleneck (stride on conv2,
    projection shortcut) and visualpriors' (the stage's *last* bottleneck strided, its shortcut a max-pool).

    The input channels are the first convolution's, the output channels the last one's (the main path's
    last, or a projection shortcut's, which are the same), the stride the largest of any convolution's.

    :param block: a residual block (a BasicBlock or a Bottleneck).
    """
    convs = [module for module in block.modules() if isinstance(module, nn.Conv2d)]
    return BlockShape(convs[0].in_channels, convs[-1].out_channels, max(conv.stride[0] for conv in convs))


class ResAdapter(nn.Module):
    """A Res-Adapter's branch, up(ReLU(down(x))) with 1x1 convs; zero at initialisation.

    :param in_channels: channels of the input map.
    :param out_channels: channels of the output map.
    :param stride: stride of the down-projection (2 where the block it follows halves the resolution).
    :param reduction: the bottleneck is out_channels // reduction wide.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, reduction: int = TUNER_REDUCTION):
        super().__init__()
        width = max(1, out_channels // reduction)
        self.down = nn.Conv2d(in_channels, width, 1, stride=stride)
        self.up = nn.Conv2d(width, out_channels, 1)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    @classmethod
    def beside(cls, block: nn.Module, reduction: int = TUNER_REDUCTION) -> ResAdapter:
        """A tuner mapping the block's input shape to its output shape (see :func:`block_shape`)."""
        return cls(*block_shape(block), reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.down(x)))


class ResTuning(nn.Module):
    """Res-Adapters parallel to every residual block of a frozen ResNet, and a head.

    Trainable (:attr:`trainable_prefixes`): ``tuners`` and ``head``.

    :param base: the pre-trained network; frozen in place and shared, never copied.
    :param output: what the task's head predicts (a class count or a DenseOutput).
    :param reduction: tuner bottleneck = out_channels // reduction.
    """

    trainable_prefixes = ("tuners.", "head.")

    def __init__(self, base: CifarResNet, output: TaskOutput, reduction: int = TUNER_REDUCTION):
        super().__init__()
        self.base = FrozenBase(base)
        self.tuners = nn.ModuleList(ResAdapter.beside(block, reduction) for block in base.residual_blocks())
        self.head = make_head(base.feature_dim, output, stride=feature_stride(base))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's tail of the tuned blocks' output (the base's feature shape)."""
        network = self.base.network
        out = network.stem(x)
        for block, tuner in zip(network.residual_blocks(), self.tuners):
            out = block(out) + tuner(out)
        return network.tail(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The task's output: logits (B, classes), or a dense prediction."""
        return self.head(self.features(x))


class BypassTuner(nn.Module):
    """One task's bypass: a lateral and a vertical Res-Adapter per block, and a head; zero output at first
    (the last block's tuners start at zero).

    :param base: the backbone the bypass will read (only its block shapes and feature width are used).
    :param output: what the task's head predicts (a class count or a DenseOutput).
    :param reduction: tuner bottleneck = out_channels // reduction.
    """

    def __init__(self, base: CifarResNet, output: TaskOutput, reduction: int = TUNER_REDUCTION):
        super().__init__()
        blocks = base.residual_blocks()
        out_channels = [block_shape(block).out_channels for block in blocks]
        self.lateral = nn.ModuleList(ResAdapter(channels, channels, 1, reduction) for channels in out_channels)
        self.vertical = nn.ModuleList(ResAdapter.beside(block, reduction) for block in blocks)
        for tuner in [*self.lateral[:-1], *self.vertical[:-1]]:  # only the last block starts at zero
            nn.init.xavier_uniform_(tuner.up.weight)
        self.head = make_head(base.feature_dim, output, stride=feature_stride(base))

    def last_state(self, block_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The last bypass state b_L, a map shaped like the last block's output.

        :param block_outputs: the backbone's detached stem output, then every block's output.
        """
        state = block_outputs[0]
        for lateral, vertical, block_out in zip(self.lateral, self.vertical, block_outputs[1:]):
            state = block_out + lateral(block_out) + vertical(state)
        return state

    def forward(
        self, block_outputs: Sequence[torch.Tensor], tail: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The task's output from the backbone's detached outputs: ``head(tail(b_L))``.

        :param block_outputs: as for :meth:`last_state`.
        :param tail: the backbone's frozen ``tail`` (see the module docstring).
        """
        return self.head(tail(self.last_state(block_outputs)))


class ResTuningBypass(nn.Module):
    """Res-Tuning-Bypass: a frozen backbone run without a graph, and one task's :class:`BypassTuner`.

    Trainable (:attr:`trainable_prefixes`): ``tuner`` (its ``lateral``, ``vertical`` and ``head``).
    Other tasks' tuners share this backbone pass through :meth:`forward_tasks`.

    :param base: the pre-trained network; frozen in place and shared, never copied.
    :param output: what the task's head predicts (a class count or a DenseOutput).
    :param reduction: tuner bottleneck = out_channels // reduction.
    """

    trainable_prefixes = ("tuner.",)

    def __init__(self, base: CifarResNet, output: TaskOutput, reduction: int = TUNER_REDUCTION):
        super().__init__()
        self.base = FrozenBase(base)
        self.tuner = BypassTuner(base, output, reduction)

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stem output and every block's output, computed without a graph."""
        network = self.base.network
        with torch.no_grad():
            outputs = [network.stem(x)]
            for block in network.residual_blocks():
                outputs.append(block(outputs[-1]))
        return outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's tail of this task's last bypass state (the base's feature shape)."""
        return self.base.network.tail(self.tuner.last_state(self.block_outputs(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """This task's output: logits (B, classes), or a dense prediction."""
        return self.tuner(self.block_outputs(x), self.base.network.tail)

    def forward_tasks(self, x: torch.Tensor, tuners: Sequence[BypassTuner]) -> list[torch.Tensor]:
        """Every task's output from one backbone pass.

        :param x: (B, 3, H, W) images.
        :param tuners: the tasks' bypasses, all built for this backbone.
        :returns: one output per tuner, e.g. (B, classes of task k).
        """
        outputs = self.block_outputs(x)
        return [tuner(outputs, self.base.network.tail) for tuner in tuners]
