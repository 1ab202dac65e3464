"""Side-tuning (Zhang et al., "Side-Tuning: A Baseline for Network Adaptation via Additive Side
Networks", ECCV 2020, arXiv:1912.13503).

The pre-trained base is frozen (parameters and BatchNorm statistics); every task gets its own side
network, merge operator and head: ``logits_t = head_t(merge_t(base(x), side_t(x)))``.
Trained per task: ``tasks.<t>.side``, ``tasks.<t>.merge`` and ``tasks.<t>.head`` of the current task
only. Nothing is shared between tasks, so the stream cannot forget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin

from continual_side.methods.common import (
    MethodConfig,
    PerTaskStrategy,
    TaskModules,
    per_task_strategy,
    pretrained_base,
)
from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import make_head
from continual_side.models.merge import make_merge
from continual_side.models.side import make_side
from continual_side.models.sidetuned import FrozenBase, SideTunedNetwork

TRAINED_PER_TASK = "the current task's side network, merge operator and head"


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

    def new_task_module(self, n_classes: int) -> SideTunedNetwork:
        dim = self.base.network.feature_dim
        return SideTunedNetwork(
            self.base,
            make_side(self.side_init, self.base.network),
            make_merge(self.merge_name, dim),
            make_head(dim, n_classes),
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


def build(
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SideTuning:
    """Side-tuning with the configured base, merge operator and side initialisation."""
    model = SideTuneModel(pretrained_base(config), merge=config.merge, side_init=config.side_init)
    return per_task_strategy(model, config, plugins=plugins, evaluator=evaluator, strategy_cls=SideTuning)
