"""Res-Tuning and Res-Tuning-Bypass (Jiang et al., "Res-Tuning: A Flexible and Efficient Tuning Paradigm
via Unbinding Tuner from Backbone", NeurIPS 2023, arXiv:2310.19859), on the CIFAR ResNet, the mid-level encoder
or Taskonomy's ResNet-50.

Two methods over a frozen backbone shared by all tasks, each task with its own Res-Adapter tuners and
head (:mod:`continual_side.models.restuning`; its docstring gives our choices where the paper and the
reference code do not fit a CIFAR ResNet):

* ``restuning``: a tuner parallel to every residual block, inside the backbone's forward pass, so
  gradients flow back through the frozen blocks (training memory at least fine-tuning's).
* ``restuning_bypass``: the tuners form a bypass fed with the backbone's detached block outputs, so
  no gradient reaches the backbone (training memory about half of fine-tuning's).

Trained per task: ``tasks.<t>.tuners`` and ``tasks.<t>.head`` (Res-Tuning) or ``tasks.<t>.tuner``
(the Bypass: lateral and vertical tuners and head); nothing shared, so nothing is forgotten.

One backbone pass for K tasks: Avalanche's task-aware evaluation gives each test image to its own task
only, so the run loop has no pass to share; :meth:`BypassModel.forward_all_tasks` gives every trained
task's logits for the same images from one backbone pass (multi-task inference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continual_side.methods.common import pretrained_base
from continual_side.methods.frozen_backbone import FrozenBackboneModel, task_parts
from continual_side.methods.registry import register_method
from continual_side.models.backbones import CifarResNet
from continual_side.models.restuning import TUNER_REDUCTION, ResTuning, ResTuningBypass


@dataclass
class ResTuningOptions:
    """Res-Tuning's own options (the same for its Bypass).

    :param reduction: each tuner's bottleneck is its output channels divided by this.
    """

    reduction: int = TUNER_REDUCTION


class BypassModel(FrozenBackboneModel):
    """Res-Tuning-Bypass over a shared frozen backbone, one :class:`ResTuningBypass` per task.

    :param backbone: the pre-trained network; frozen in place.
    :param reduction: tuner bottleneck = out_channels // reduction.
    """

    def __init__(self, backbone: CifarResNet, reduction: int = TUNER_REDUCTION) -> None:
        super().__init__(backbone, lambda network, output: ResTuningBypass(network, output, reduction))

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every trained task's logits from one pass of the backbone.

        :param x: (B, 3, H, W) images.
        :returns: task label -> that task's output, e.g. (B, classes of that task).
        """
        tasks = list(self.known_train_tasks_labels)
        tuners = [self.task(task).tuner for task in tasks]
        return dict(zip(tasks, self.task(tasks[0]).forward_tasks(x, tuners)))


register_method(
    "restuning",
    options=ResTuningOptions,
    model=lambda options, train: FrozenBackboneModel(
        pretrained_base(train), lambda backbone, output: ResTuning(backbone, output, options.reduction)),
    trained="the current task's Res-Adapters parallel to every residual block and its head",
    trainable=task_parts(ResTuning.trainable_prefixes),
)

register_method(
    "restuning_bypass",
    options=ResTuningOptions,
    model=lambda options, train: BypassModel(pretrained_base(train), options.reduction),
    trained="the current task's bypass (lateral and vertical Res-Adapters fed with detached backbone outputs) "
            "and its head",
    trainable=task_parts(ResTuningBypass.trainable_prefixes),
)
