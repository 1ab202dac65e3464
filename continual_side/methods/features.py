"""Fixed features: the pre-trained base is frozen and only a linear head per task is trained.

The side-tuning paper's "features" baseline (Zhang et al., ECCV 2020, arXiv:1912.13503; the classic
fixed-feature transfer of Razavian et al., "CNN Features off-the-shelf", CVPRW 2014). The base is
wrapped in :class:`FrozenBase` (no gradients, always in eval mode, so its BatchNorm statistics never
move), and a feature cache added to FrozenBase applies here unchanged. Trained per task:
``tasks.<t>`` (the current task's head) only, so the stream cannot forget.
"""

from __future__ import annotations

from collections.abc import Sequence

from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.methods.common import MethodConfig, SharedBaseModel, per_task_strategy, pretrained_base
from continual_side.models.sidetuned import FrozenBase

TRAINED_PER_TASK = "the current task's linear head"


def build(
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SupervisedTemplate:
    """Linear heads on the frozen pre-trained base."""
    model = SharedBaseModel(FrozenBase(pretrained_base(config)))
    return per_task_strategy(model, config, plugins=plugins, evaluator=evaluator)
