"""Calibration Side-Tuning (Feng Chen, "CST: Calibration Side-Tuning for Parameter and Memory Efficient
Transfer Learning", arXiv:2402.12736, 2024), for classification and dense tasks on the CIFAR ResNet, the
mid-level encoder or Taskonomy's ResNet-50.

Each task gets a light side network fed by every residual-stage output of the frozen backbone, fused
with the last stage's map by :class:`~continual_side.models.cst.TransitionGate`, and a head
(:class:`~continual_side.models.cst.CalibrationSideTuning`). The paper's maximal transition calibration
(MTC) equation could not be read offline: the gate is our design named after it, not the paper's
equation (see the model's docstring). The paper is about detection; detection heads are out of scope.
Trained per task: ``tasks.<t>.side``, ``tasks.<t>.gate`` and ``tasks.<t>.head`` of the current task only.
The backbone runs without a graph and gets no gradient; nothing is shared between tasks, so nothing is
forgotten. :meth:`CSTModel.forward_all_tasks` serves every task from one backbone pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continual_side.methods.common import pretrained_base
from continual_side.methods.frozen_backbone import FrozenBackboneModel, task_parts
from continual_side.methods.registry import register_method
from continual_side.models.backbones import CifarResNet
from continual_side.models.cst import SIDE_WIDTH_RATIO, CalibrationSideTuning


@dataclass
class CSTOptions:
    """CST's own options.

    :param width_ratio: the side network's widths are the backbone's stage widths divided by this
        (2: 8/16/32 channels beside ResNet-44's 16/32/64).
    """

    width_ratio: int = SIDE_WIDTH_RATIO


class CSTModel(FrozenBackboneModel):
    """One :class:`CalibrationSideTuning` per task over a shared frozen backbone.

    :param backbone: the pre-trained network; frozen in place.
    :param width_ratio: side widths are the backbone's stage widths divided by this.
    """

    def __init__(self, backbone: CifarResNet, width_ratio: int = SIDE_WIDTH_RATIO) -> None:
        super().__init__(backbone, lambda network, output: CalibrationSideTuning(network, output, width_ratio))

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every trained task's logits from one pass of the backbone.

        :param x: (B, 3, H, W) images.
        :returns: task label -> that task's output, e.g. (B, classes of that task).
        """
        tasks = list(self.known_train_tasks_labels)
        stages = self.task(tasks[0]).stage_outputs(x)
        return {task: self.task(task).head(self.task(task).calibrated_features(stages)) for task in tasks}


register_method(
    "cst",
    options=CSTOptions,
    model=lambda options, train: CSTModel(pretrained_base(train), options.width_ratio),
    trained="the current task's side network, transition gate and head",
    trainable=task_parts(CalibrationSideTuning.trainable_prefixes),
)
