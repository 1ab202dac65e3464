"""Learning without Forgetting on top of fine-tuning (Li & Hoiem, "Learning without Forgetting",
ECCV 2016 / TPAMI 2018, arXiv:1606.09282).

Fine-tuning (:mod:`continual_side.methods.finetune`) plus Avalanche's ``LwFPlugin``: while a task
trains, the outputs of every earlier task's head are distilled (KL divergence at
``LwFOptions.temperature``, weight ``LwFOptions.alpha``) towards those of the model as it was after
the previous task. With our multi-head model the plugin does the right thing: the teacher and the
student are run on all known heads (one base pass each, see ``SharedBaseModel.forward_all_tasks``)
and only heads of earlier tasks are distilled, on the classes each of them was trained on.

One change: Avalanche deep-copies the teacher while the model is in training mode and never switches
it, so its BatchNorm layers normalise with the statistics of the *new* task's mini-batch, i.e. it
distils a function the old model never computed. Li & Hoiem record the responses of the original
network; with BatchNorm that is the network in eval mode (as FACIL's LwF does), so
:class:`LwFPlugin` below puts the teacher in eval mode and freezes it. With ``alpha`` 0 it adds nothing
(Avalanche would still run the student a second time, which moves BatchNorm statistics), so alpha 0
trains exactly as fine-tuning. With alpha > 0 that second student pass remains (Avalanche's design:
the current model is run again on all heads), so BatchNorm statistics take two updates per step.

Trained per task: the shared base and the current task's head. Earlier heads stay frozen (the paper
also fine-tunes them after a warm-up; here every method keeps earlier tasks' own modules fixed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from avalanche.training.plugins import LwFPlugin as AvalancheLwFPlugin

from continual_side.methods.finetune import finetuned_base_model
from continual_side.methods.registry import register_method, shared_base_and_task


@dataclass
class LwFOptions:
    """LwF's own options.

    :param alpha: weight of the distillation loss; 0 trains exactly as fine-tuning.
    :param temperature: softmax temperature of the distillation.
    """

    alpha: float = 1.0
    temperature: float = 2.0


class LwFPlugin(AvalancheLwFPlugin):
    """Avalanche's LwF with the teacher (the model after the previous task) in eval mode and frozen."""

    def before_backward(self, strategy, **kwargs):
        if self.lwf.alpha != 0:
            super().before_backward(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        self.lwf.prev_model.eval().requires_grad_(False)

    def checkpoint_state(self) -> dict:
        """Tasks and classes distilled so far; the teacher is the checkpointed model itself."""
        return {"expcount": self.lwf.expcount,
                "prev_classes_by_task": {int(t): sorted(c) for t, c in self.lwf.prev_classes_by_task.items()}}

    def restore_state(self, state: dict, strategy) -> None:
        """Rebuild the teacher from the restored model: evaluation since the checkpoint only added
        untrained heads, which distillation never reads."""
        self.lwf.expcount = state["expcount"]
        self.lwf.prev_classes_by_task.clear()
        self.lwf.prev_classes_by_task.update({t: set(c) for t, c in state["prev_classes_by_task"].items()})
        if self.lwf.expcount:
            self.lwf.prev_model = copy.deepcopy(strategy.model).eval().requires_grad_(False)


register_method(
    "lwf",
    options=LwFOptions,
    model=finetuned_base_model,
    trained="the shared base (distilled towards earlier heads' outputs) and the current task's linear head",
    trainable=shared_base_and_task,
    plugins=lambda options: [LwFPlugin(alpha=options.alpha, temperature=options.temperature)],
)
