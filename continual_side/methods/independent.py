"""Independent networks: every task trains its own copy of the pre-trained network and head.

The side-tuning paper's "independent" baseline (Zhang et al., ECCV 2020, arXiv:1912.13503): no
transfer between tasks and no forgetting, at the price of one full network per task. The pre-trained
network is kept frozen in ``pretrained`` (never run) as the starting point of every task's copy.
Trained per task: ``tasks.<t>.base`` (the current task's copy of the network) and ``tasks.<t>.head``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from continual_side.methods.common import TaskModules, pretrained_base, trainable_features
from continual_side.methods.registry import NoOptions, register_method
from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.sidetuned import FrozenBase


class IndependentModel(TaskModules):
    """One fresh copy of the pre-trained network plus a head per task.

    :param pretrained: the pre-trained network each task's copy starts from; kept frozen.
    """

    def __init__(self, pretrained: CifarResNet) -> None:
        super().__init__()
        self.pretrained = FrozenBase(pretrained)

    def new_task_module(self, output: TaskOutput) -> nn.Sequential:
        base = trainable_features(self.pretrained.network)
        head = make_head(base.feature_dim, output, stride=feature_stride(base))
        return nn.Sequential(OrderedDict(base=base, head=head))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.task(task_label)(x)


register_method(
    "independent",
    options=NoOptions,
    model=lambda options, train: IndependentModel(pretrained_base(train)),
    trained="the current task's own copy of the pre-trained network and its head",
    trainable=lambda name, task: name.startswith((f"tasks.{task}.base.", f"tasks.{task}.head.")),
)
