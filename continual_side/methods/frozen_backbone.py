"""The per-task container of the methods whose task networks all read one frozen ResNet-style backbone.

SpotTune, Res-Tuning (and its Bypass) and CST build one network per task over a shared frozen backbone
(:mod:`continual_side.models.spottune`, ``restuning``, ``cst``). Each such network wraps the backbone in
its own :class:`FrozenBase`; :class:`FrozenBackboneModel` swaps that wrapper for one shared by every
task, so the backbone's tensors are named ``base.network.*`` once (and are counted, frozen and checked
once), and only the task's own parts are named ``tasks.<t>.*``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from continual_side.methods.common import TaskModules
from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput
from continual_side.models.sidetuned import FrozenBase


class FrozenBackboneModel(TaskModules):
    """A frozen backbone shared by all tasks and one network per task built over it.

    :param backbone: the pre-trained network; frozen in place (parameters and BatchNorm statistics).
    :param make_task: ``make_task(backbone, output)`` builds one task's network whose head predicts
        ``output`` (a class count or a DenseOutput); it must keep the backbone in an attribute ``base``
        (a :class:`FrozenBase`), which is replaced by the shared one.
    """

    def __init__(self, backbone: CifarResNet, make_task: Callable[[CifarResNet, TaskOutput], nn.Module]) -> None:
        super().__init__(FrozenBase(backbone))
        self.make_task = make_task

    def new_task_module(self, output: TaskOutput) -> nn.Module:
        module = self.make_task(self.base.network, output)
        module.base = self.base
        return module

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.task(task_label)(x)


def task_parts(prefixes: Sequence[str]) -> Callable[[str, str], bool]:
    """The ``trainable`` predicate of a method that trains only ``tasks.<t>.<prefix>`` for these prefixes.

    :param prefixes: the task network's ``trainable_prefixes``.
    """
    return lambda name, task: name.startswith(tuple(f"tasks.{task}.{prefix}" for prefix in prefixes))
