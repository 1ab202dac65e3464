"""Fine-tuning: the pre-trained base is trained on every task in turn and shared by all of them.

The side-tuning paper's "fine-tuning" baseline (Zhang et al., ECCV 2020, arXiv:1912.13503). Each task
has its own linear head; the base's weights and BatchNorm statistics follow the latest task, so the
earlier tasks' heads see drifting features: this is the method that forgets (catastrophic forgetting,
McCloskey & Cohen 1989). Trained per task: the shared base (``base``) and the current task's head
``tasks.<t>``; earlier heads are frozen. EWC and LwF are this model plus a regulariser.
"""

from __future__ import annotations

from collections.abc import Sequence

from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.methods.common import (
    MethodConfig,
    SharedBaseModel,
    per_task_strategy,
    pretrained_base,
    trainable_features,
)

TRAINED_PER_TASK = "the shared base and the current task's linear head"


def build(
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
    method_plugins: Sequence[BasePlugin] = (),
) -> SupervisedTemplate:
    """Fine-tuning of the pre-trained base with one head per task.

    :param method_plugins: a regulariser on top of fine-tuning (used by ``ewc`` and ``lwf``).
    """
    model = SharedBaseModel(trainable_features(pretrained_base(config)))
    return per_task_strategy(model, config, plugins=plugins, evaluator=evaluator, method_plugins=method_plugins)
