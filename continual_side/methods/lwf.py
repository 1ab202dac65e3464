"""Learning without Forgetting on top of fine-tuning (Li & Hoiem, "Learning without Forgetting",
ECCV 2016 / TPAMI 2018, arXiv:1606.09282).

Fine-tuning (:mod:`continual_side.methods.finetune`) plus Avalanche's ``LwFPlugin``: while a task
trains, the outputs of every earlier task's head are distilled (KL divergence at
``config.lwf_temperature``, weight ``config.lwf_alpha``) towards those of the model as it was after
the previous task. With our multi-head model the plugin does the right thing: the teacher and the
student are run on all known heads (one base pass each, see ``SharedBaseModel.forward_all_tasks``)
and only heads of earlier tasks are distilled, on the classes each of them was trained on.

One change: Avalanche deep-copies the teacher while the model is in training mode and never switches
it, so its BatchNorm layers normalise with the statistics of the *new* task's mini-batch, i.e. it
distils a function the old model never computed. Li & Hoiem record the responses of the original
network; with BatchNorm that is the network in eval mode (as FACIL's LwF does), so
:class:`LwFPlugin` below puts the teacher in eval mode and freezes it.

Trained per task: the shared base and the current task's head. Earlier heads stay frozen (the paper
also fine-tunes them after a warm-up; here every method keeps earlier tasks' own modules fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

from avalanche.core import BasePlugin
from avalanche.training.plugins import LwFPlugin as AvalancheLwFPlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.methods import finetune
from continual_side.methods.common import MethodConfig

TRAINED_PER_TASK = "the shared base (distilled towards earlier heads' outputs) and the current task's linear head"


class LwFPlugin(AvalancheLwFPlugin):
    """Avalanche's LwF with the teacher (the model after the previous task) in eval mode and frozen."""

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        self.lwf.prev_model.eval().requires_grad_(False)


def build(
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SupervisedTemplate:
    """Fine-tuning with LwF distillation on the earlier tasks' heads."""
    lwf = LwFPlugin(alpha=config.lwf_alpha, temperature=config.lwf_temperature)
    return finetune.build(config, plugins=plugins, evaluator=evaluator, method_plugins=[lwf])
