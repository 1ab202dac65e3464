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

Dense tasks (iTaskonomy). Li & Hoiem's old-task loss is each old task's own loss with the recorded
responses of the old network as targets: for classes, the cross entropy against the temperature-softened
recorded probabilities (equivalently the KL divergence at temperature T, as Avalanche computes it).
:class:`TaskDistillation` applies the same rule per earlier task according to what its head predicts:

* a class count: Avalanche's KL at T on the classes the head was trained on, unchanged;
* a classification-like dense task: the KL at T between the recorded and the current class
  distributions, per image for class_object and per pixel for segment_semantic (over all the head's
  channels, averaged over pixels and images: each pixel is one prediction of that task);
* a pixel regression task (curvature, depth, normals, ...): the task's own regression loss, L2 for
  curvature and L1 for the others (:data:`~continual_side.models.dense_losses.TASK_LOSSES`), between the
  current prediction and the recorded one, over every pixel (the recorded prediction is defined
  everywhere; the dataset's validity masks belong to the current task's targets, not to the old task's).
  A temperature has no meaning here and is not applied.

Trained per task: the shared base and the current task's head. Earlier heads stay frozen (the paper
also fine-tunes them after a warm-up; here every method keeps earlier tasks' own modules fixed).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from avalanche.models import avalanche_forward
from avalanche.training import LearningWithoutForgetting
from avalanche.training.plugins import LwFPlugin as AvalancheLwFPlugin

from continual_side.methods.common import task_output
from continual_side.methods.finetune import finetuned_base_model
from continual_side.methods.registry import register_method, shared_base_and_task
from continual_side.models.dense_losses import TASK_LOSSES
from continual_side.models.heads import DenseOutput, TaskOutput


@dataclass
class LwFOptions:
    """LwF's own options.

    :param alpha: weight of the distillation loss; 0 trains exactly as fine-tuning.
    :param temperature: softmax temperature of the distillation.
    """

    alpha: float = 1.0
    temperature: float = 2.0


class TaskDistillation(LearningWithoutForgetting):
    """Avalanche's LwF regulariser, distilling each earlier task by what its head predicts (module docstring).

    :attr:`task_outputs` holds the output of every task trained so far, the tasks distilled.

    :param alpha: weight of the distillation loss.
    :param temperature: softmax temperature of the class distillations.
    """

    def __init__(self, alpha: float, temperature: float) -> None:
        super().__init__(alpha, temperature)
        self.task_outputs: dict[int, TaskOutput] = {}

    def post_adapt(self, agent, exp) -> None:
        """Record the teacher and the classes (Avalanche), and the trained tasks' outputs."""
        super().post_adapt(agent, exp)
        self.task_outputs.update((int(task), task_output(exp)) for task in exp.task_labels)

    def _lwf_penalty(self, out, x, curr_model):
        """The summed distillation losses of every earlier task's head (the model is multi-headed)."""
        if self.prev_model is None:
            return 0
        with torch.no_grad():
            y_prev = avalanche_forward(self.prev_model, x, None)
        y_curr = avalanche_forward(curr_model, x, None)
        dist_loss = 0
        for task, previous in y_prev.items():
            if task in self.task_outputs:
                dist_loss += self.distillation(task, y_curr[task], previous)
        return dist_loss

    def distillation(self, task: int, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """One earlier task's distillation loss.

        :param task: the task's label.
        :param current: its head's output now.
        :param previous: its head's output in the teacher (the model after the previous experience).
        """
        output = self.task_outputs[task]
        if not isinstance(output, DenseOutput):
            return self._distillation_loss(current, previous, self.prev_classes_by_task[task])
        spec = TASK_LOSSES[output.domain]
        if not spec.classification:
            return spec.loss(current, previous, None)
        log_p = F.log_softmax(current / self.temperature, dim=1)
        q = F.softmax(previous / self.temperature, dim=1)
        return F.kl_div(log_p, q, reduction="none").sum(1).mean()  # KL per image or pixel, averaged


class LwFPlugin(AvalancheLwFPlugin):
    """Avalanche's LwF with the teacher (the model after the previous task) in eval mode and frozen, and
    distillation by task output (:class:`TaskDistillation`).

    :param alpha: weight of the distillation loss.
    :param temperature: softmax temperature of the class distillations.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__(alpha=alpha, temperature=temperature)
        self.lwf = TaskDistillation(alpha, temperature)

    def before_backward(self, strategy, **kwargs):
        if self.lwf.alpha != 0:
            super().before_backward(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        super().after_training_exp(strategy, **kwargs)
        self.lwf.prev_model.eval().requires_grad_(False)

    def checkpoint_state(self) -> dict:
        """Tasks, classes and task outputs distilled so far; the teacher is the checkpointed model itself."""
        return {"expcount": self.lwf.expcount,
                "prev_classes_by_task": {int(t): sorted(c) for t, c in self.lwf.prev_classes_by_task.items()},
                "task_outputs": {t: asdict(o) if isinstance(o, DenseOutput) else o
                                 for t, o in self.lwf.task_outputs.items()}}

    def restore_state(self, state: dict, strategy) -> None:
        """Rebuild the teacher from the restored model: evaluation since the checkpoint only added
        untrained heads, which distillation never reads."""
        self.lwf.expcount = state["expcount"]
        self.lwf.prev_classes_by_task.clear()
        self.lwf.prev_classes_by_task.update({t: set(c) for t, c in state["prev_classes_by_task"].items()})
        self.lwf.task_outputs = {t: DenseOutput(**o) if isinstance(o, dict) else o
                                 for t, o in state["task_outputs"].items()}
        if self.lwf.expcount:
            self.lwf.prev_model = copy.deepcopy(strategy.model).eval().requires_grad_(False)


register_method(
    "lwf",
    options=LwFOptions,
    model=finetuned_base_model,
    trained="the shared base (distilled towards earlier heads' outputs) and the current task's head",
    trainable=shared_base_and_task,
    plugins=lambda options: [LwFPlugin(alpha=options.alpha, temperature=options.temperature)],
)
