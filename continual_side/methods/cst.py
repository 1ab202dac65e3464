"""Calibration Side-Tuning (Feng Chen, "CST: Calibration Side-Tuning for Parameter and Memory Efficient
Transfer Learning", arXiv:2402.12736, 2024), for classification on the CIFAR ResNet.

Each task gets a light side network fed by the frozen backbone's three residual-stage outputs, fused
with the last stage's map by :class:`~continual_side.models.cst.TransitionGate`, and a head
(:class:`~continual_side.models.cst.CalibrationSideTuning`). The paper's maximal transition calibration
(MTC) equation could not be read offline: the gate is our design named after it, not the paper's
equation (see the model's docstring). The paper is about detection; detection heads are out of scope.
Trained per task: ``tasks.<t>.side``, ``tasks.<t>.gate`` and ``tasks.<t>.head`` of the current task only.
The backbone runs without a graph and gets no gradient; nothing is shared between tasks, so nothing is
forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

from continual_side.methods.common import pretrained_base
from continual_side.methods.frozen_backbone import FrozenBackboneModel, task_parts
from continual_side.methods.registry import register_method
from continual_side.models.cst import SIDE_WIDTH_RATIO, CalibrationSideTuning


@dataclass
class CSTOptions:
    """CST's own options.

    :param width_ratio: the side network's widths are the backbone's stage widths divided by this
        (2: 8/16/32 channels beside ResNet-44's 16/32/64).
    """

    width_ratio: int = SIDE_WIDTH_RATIO


register_method(
    "cst",
    options=CSTOptions,
    model=lambda options, train: FrozenBackboneModel(
        pretrained_base(train), lambda backbone, n: CalibrationSideTuning(backbone, n, options.width_ratio)),
    trained="the current task's side network, transition gate and head",
    trainable=task_parts(CalibrationSideTuning.trainable_prefixes),
)
