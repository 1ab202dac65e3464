"""Pieces every method shares: its configuration, the per-task module container and the strategy base.

A method is one file in this package with a ``build(config, *, plugins, evaluator)`` function that
returns an Avalanche strategy, plus one line in ``METHODS`` (``continual_side/methods/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from avalanche.benchmarks.scenarios import CLExperience
from avalanche.models import MultiTaskModule
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from continual_side.errors import ConfigError
from continual_side.models.backbones import CifarResNet, resnet20, resnet44

BASES = {"resnet44": resnet44, "resnet20": resnet20}


@dataclass
class MethodConfig:
    """Hyper-parameters shared by all methods; defaults are the side-tuning paper's iCIFAR settings.

    :param base: pre-trained base network (CIFAR ResNet pre-trained on CIFAR-10).
    :param base_weights: path to the base's weights; default resolves them through the weights hub.
    :param merge: side-tuning merge operator (base_only, side_only, sum, product, alpha, film, mlp).
    :param side_init: side-network initialisation: distilled (FCN4 distilled from ResNet-44),
        base_copy (a trainable copy of the base) or random.
    :param lr: Adam learning rate.
    :param epochs: training epochs per task.
    :param batch_size: training mini-batch size.
    :param eval_batch_size: evaluation mini-batch size.
    :param device: ``cpu`` or ``cuda``.
    :param ewc_lambda: EWC penalty weight (see ``methods/ewc.py`` for how it was chosen).
    :param lwf_alpha: LwF distillation weight.
    :param lwf_temperature: LwF softmax temperature.
    """

    base: Literal["resnet44", "resnet20"] = "resnet44"
    base_weights: str | None = None
    merge: str = "alpha"
    side_init: Literal["distilled", "base_copy", "random"] = "distilled"
    lr: float = 1e-3
    epochs: int = 4
    batch_size: int = 128
    eval_batch_size: int = 256
    device: str = "cpu"
    ewc_lambda: float = 100.0
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0


def pretrained_base(config: MethodConfig) -> CifarResNet:
    """The configured base network with its pre-trained weights."""
    if config.base not in BASES:
        raise ConfigError(f"unknown base {config.base!r}; choose one of {sorted(BASES)}")
    return BASES[config.base](weights=config.base_weights or True)


def check_device(device: str) -> torch.device:
    """Refuse a device that does not exist here, with a fix, instead of failing mid-run."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use cpu or cuda")
    return dev


def num_classes(experience: CLExperience) -> int:
    """Width of a task's head: targets are 0..C-1 within each task."""
    return int(max(experience.classes_in_this_experience)) + 1


class TaskModules(MultiTaskModule):
    """One module per task, created when the task is first seen.

    When training starts on a task, the modules of every other task are frozen
    (``requires_grad=False``), so a task's modules only ever change while that task trains.
    Subclasses implement :meth:`new_task_module` and :meth:`forward_single_task`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tasks = nn.ModuleDict()

    def new_task_module(self, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def adaptation(self, experience: CLExperience) -> None:
        super().adaptation(experience)
        device = next(self.parameters()).device
        for task in experience.task_labels:
            if str(task) not in self.tasks:
                self.tasks[str(task)] = self.new_task_module(num_classes(experience)).to(device)
        if self.training:
            current = {str(t) for t in experience.task_labels}
            for name, module in self.tasks.items():
                module.requires_grad_(name in current)

    def task(self, task_label: int) -> nn.Module:
        return self.tasks[str(task_label)]


class PerTaskStrategy(SupervisedTemplate):
    """SupervisedTemplate that starts every experience with a fresh optimizer state.

    Avalanche keeps Adam's moments across experiences by default; here each task's modules are
    new, so their optimizer state must be too (and parameters no longer in the model are dropped).
    """

    def make_optimizer(self, **kwargs):
        kwargs.update(reset_optimizer_state=True, remove_params=True)
        return super().make_optimizer(**kwargs)
