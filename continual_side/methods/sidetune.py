"""Side-tuning (Zhang et al., "Side-Tuning: A Baseline for Network Adaptation via Additive Side
Networks", ECCV 2020, arXiv:1912.13503).

The pre-trained base is frozen (parameters and BatchNorm statistics); every task gets its own side
network, merge operator and head: ``logits_t = head_t(merge_t(base(x), side_t(x)))``.
Trained per task: ``tasks.<t>.side``, ``tasks.<t>.merge`` and ``tasks.<t>.head`` of the current task
only. Nothing is shared between tasks, so the stream cannot forget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from continual_side.methods.common import PerTaskStrategy, TaskModules, pretrained_base
from continual_side.methods.registry import register_method
from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.merge import make_merge
from continual_side.models.side import make_side
from continual_side.models.sidetuned import FrozenBase, SideTunedNetwork


@dataclass
class SideTuneOptions:
    """Side-tuning's own options.

    :param merge: merge operator (base_only, side_only, sum, product, alpha, film, mlp); alpha is the paper's.
    :param side_init: side-network initialisation: distilled (FCN4 distilled from ResNet-44, the paper's),
        base_copy (a trainable copy of the base) or random.
    """

    merge: str = "alpha"
    side_init: Literal["distilled", "base_copy", "random"] = "distilled"


class SideTuneModel(TaskModules):
    """Frozen base shared by all tasks; one :class:`SideTunedNetwork` per task.

    :param base: the pre-trained base network; it is wrapped in :class:`FrozenBase` and never trains.
    :param merge: merge operator name (see ``continual_side.models.merge.MERGE_NAMES``).
    :param side_init: ``distilled``, ``base_copy`` or ``random``.
    """

    def __init__(self, base: CifarResNet, merge: str = "alpha", side_init: str = "distilled") -> None:
        super().__init__(FrozenBase(base))
        self.merge_name = merge
        self.side_init = side_init
        make_merge(merge, base.feature_dim)  # fail on a bad name now, not at the first task

    def new_task_module(self, output: TaskOutput) -> SideTunedNetwork:
        dim = self.base.network.feature_dim
        return SideTunedNetwork(
            self.base,
            make_side(self.side_init, self.base.network),
            make_merge(self.merge_name, dim),
            make_head(dim, output, stride=feature_stride(self.base)),
        )

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.task(task_label)(x)


class SideTuning(PerTaskStrategy):
    """Avalanche strategy for side-tuning; use it like any ``SupervisedTemplate``.

    :param model: a :class:`SideTuneModel`.
    :param optimizer: defaults to Adam(lr=1e-3) as in the paper. Avalanche re-collects the model's
        parameters into it before each experience; frozen ones get no gradient and never move.
    """

    def __init__(self, *, model: SideTuneModel, optimizer: torch.optim.Optimizer | None = None, **kwargs) -> None:
        if not isinstance(model, SideTuneModel):
            raise TypeError(f"SideTuning needs a SideTuneModel, got {type(model).__name__}")
        optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=1e-3)
        super().__init__(model=model, optimizer=optimizer, **kwargs)



register_method(
    "sidetune",
    options=SideTuneOptions,
    model=lambda options, train: SideTuneModel(pretrained_base(train), merge=options.merge, side_init=options.side_init),
    trained="the current task's side network, merge operator and head",
    trainable=lambda name, task: name.startswith(tuple(f"tasks.{task}.{part}." for part in ("side", "merge", "head"))),
    strategy=SideTuning,
)
