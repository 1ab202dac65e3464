"""Pieces every method shares: the training settings, the per-task module container and the strategy.

A method itself is one file that registers its model and options (:mod:`continual_side.methods.registry`);
:func:`per_task_strategy` turns any registered method into the Avalanche strategy it trains with.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from avalanche.benchmarks.scenarios import CLExperience
from avalanche.core import BasePlugin
from avalanche.models import MultiTaskModule
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from continual_side.errors import ConfigError
from continual_side.models.backbones import CifarResNet, resnet20, resnet44
from continual_side.models.feature_cache import CACHE_MODES, CacheMode, FeatureCache
from continual_side.models.sidetuned import FrozenBase
from continual_side.models.dense_losses import PackedTaskLoss
from continual_side.models.heads import DenseOutput, TaskOutput, feature_stride, make_head
from continual_side.models.midlevel import midlevel, taskonomy_encoder
from continual_side.models.side import FeatureExtractor

BASES = {"resnet44": resnet44, "resnet20": resnet20, "midlevel": midlevel, "taskonomy": taskonomy_encoder}
DEFAULT_BASE = "resnet44"
"""The base of a network built without a stream (a stream names its own, ``StreamSpec.base``)."""


@dataclass
class TrainConfig:
    """Training settings every method shares; defaults are the side-tuning paper's iCIFAR settings.

    A method's own options (EWC's lambda, side-tuning's merge, ...) live in that method's options
    dataclass, not here.

    :param base: pre-trained base network, one of :data:`BASES`; None: the stream's default (resnet44,
        the CIFAR ResNet pre-trained on CIFAR-10, for the CIFAR streams; midlevel for itaskonomy), which
        a run resolves before it records its settings.
    :param base_weights: path to the base's weights; default resolves them through the weights hub.
    :param lr: Adam learning rate.
    :param epochs: training epochs per task.
    :param batch_size: training mini-batch size.
    :param eval_batch_size: evaluation mini-batch size.
    :param device: ``cpu`` or ``cuda``.
    :param feature_cache: reuse a frozen base's features (fixed for un-augmented inputs) across epochs,
        methods and seeds: ``memory`` (this process), ``disk`` (also ``cache_dir``, so later runs
        start warm) or ``off``. Results are the same either way.
    :param cache_dir: folder of the disk feature cache; None: $CONTINUAL_SIDE_FEATURE_CACHE, else
        ~/.cache/continual_side/features.
    :param num_workers: DataLoader worker processes (0 loads in the main process).
    :param pin_memory: pin host batches for faster copies to the GPU; None: on when device is cuda.
    """

    base: str | None = None
    base_weights: str | None = None
    lr: float = 1e-3
    epochs: int = 4
    batch_size: int = 128
    eval_batch_size: int = 256
    device: str = "cpu"
    feature_cache: CacheMode = "memory"
    cache_dir: str | None = None
    num_workers: int = 0
    pin_memory: bool | None = None

    def check(self) -> TrainConfig:
        """Refuse values no run can use, with the fix, before anything is built or written."""
        if self.base is not None and self.base not in BASES:
            raise ConfigError(f"unknown base {self.base!r}; choose one of {', '.join(BASES)}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a positive integer (--{name.replace('_', '-')})")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr!r} must be a positive number (--lr)")
        if self.feature_cache not in CACHE_MODES:
            raise ConfigError(f"feature_cache={self.feature_cache!r}; choose one of {', '.join(CACHE_MODES)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers}; use 0 (main process) or a positive count")
        check_device(self.device)
        return self

    def loader_options(self) -> dict:
        """DataLoader keyword arguments for Avalanche's ``strategy.train`` and ``strategy.eval``."""
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.num_workers > 0}


def pretrained_base(config: TrainConfig) -> CifarResNet:
    """The configured base network (:data:`DEFAULT_BASE` when none is set) with its pre-trained weights."""
    config.check()
    return BASES[config.base or DEFAULT_BASE](weights=config.base_weights or True)


def trainable_features(network: CifarResNet) -> FeatureExtractor:
    """A trainable copy of ``network``'s feature extractor; its CIFAR-10 classifier is dropped so that
    no unused parameters sit in the model (or the optimizer)."""
    network = copy.deepcopy(network)
    if hasattr(network, "linear"):
        network.linear = nn.Identity()
    return FeatureExtractor(network.requires_grad_(True))


def check_device(device: str) -> torch.device:
    """Refuse a device that does not exist here, with a fix, instead of failing mid-run."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use cpu or cuda")
    return dev


def task_output(experience: CLExperience) -> TaskOutput:
    """What a task's head predicts: the stream's ``experience.task_output`` (a dense task's
    :class:`~continual_side.models.heads.DenseOutput`) if it sets one, else the number of classes
    (targets are 0..C-1 within each task)."""
    output = getattr(experience, "task_output", None)
    if output is not None:
        return output
    return int(max(experience.classes_in_this_experience)) + 1


class TaskModules(MultiTaskModule):
    """A base shared by all tasks plus one module per task, created when the task is first seen.

    When training starts on a task, the modules of every other task are frozen
    (``requires_grad=False``), so a task's modules only ever change while that task trains.
    Parameters inside a :class:`FrozenBase` stay frozen whichever task module holds them.
    Subclasses implement :meth:`new_task_module` and :meth:`forward_single_task`.

    :param base: the shared network (``None`` when tasks share nothing); registered first, so its
        parameters are named ``base.*``.
    """

    def __init__(self, base: nn.Module | None = None) -> None:
        super().__init__()
        self.base = base
        self.tasks = nn.ModuleDict()

    def new_task_module(self, output: TaskOutput) -> nn.Module:
        """The modules of a new task whose head predicts ``output`` (a class count or a DenseOutput)."""
        raise NotImplementedError

    def adaptation(self, experience: CLExperience) -> None:
        super().adaptation(experience)
        device = next(self.parameters()).device
        for task in experience.task_labels:
            if str(task) not in self.tasks:
                # in the model's mode: a module added during evaluation must not update BatchNorm statistics
                module = self.new_task_module(task_output(experience)).train(self.training)
                self.tasks[str(task)] = module.to(device)
        if self.training:
            current = {str(t) for t in experience.task_labels}
            frozen = {id(p) for m in self.modules() if isinstance(m, FrozenBase) for p in m.parameters()}
            for name, module in self.tasks.items():
                for param in module.parameters():
                    param.requires_grad_(name in current and id(param) not in frozen)

    def task(self, task_label: int) -> nn.Module:
        return self.tasks[str(task_label)]

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int | None) -> torch.Tensor:
        """Avalanche's multi-head forward, with a batch of one task going straight to that task's
        modules: Avalanche pads every batch into (B, classes), which a dense task's output is not."""
        if isinstance(task_labels, torch.Tensor) and len(task_labels) and bool((task_labels == task_labels[0]).all()):
            return self.forward_single_task(x, int(task_labels[0]))
        return super().forward(x, task_labels)


class PerTaskStrategy(SupervisedTemplate):
    """SupervisedTemplate that starts every experience with a fresh optimizer state.

    Avalanche keeps Adam's moments across experiences by default; here each task's modules are
    new, so their optimizer state must be too (and parameters no longer in the model are dropped).
    Evaluation loops run under ``torch.inference_mode`` (only the loop: modules that model adaptation
    creates during evaluation must stay trainable).
    """

    def make_optimizer(self, **kwargs):
        kwargs.update(reset_optimizer_state=True, remove_params=True)
        return super().make_optimizer(**kwargs)

    def eval_epoch(self, **kwargs):
        with torch.inference_mode():
            super().eval_epoch(**kwargs)


def task_criterion(output: TaskOutput) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a task trains and is evaluated with: cross entropy for classes, the domain's loss for
    a dense task (its targets packed by :func:`~continual_side.models.dense_losses.pack_target`)."""
    if isinstance(output, DenseOutput):
        return PackedTaskLoss(output.domain)
    return nn.CrossEntropyLoss()


class TaskCriterion(BasePlugin):
    """Gives the strategy the current experience's loss before it trains or evaluates on it, so one
    strategy serves a stream whose tasks have different losses (iTaskonomy).

    An evaluation leaves the loss as it found it: one run during training (Avalanche's ``eval_every``)
    would otherwise leave the last evaluated task's loss to the rest of the training task's steps and to
    what reads the loss after them (EWC's Fisher).
    """

    def __init__(self) -> None:
        super().__init__()
        self.criterion_before_eval: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def before_training_exp(self, strategy, **kwargs):
        strategy._criterion = task_criterion(task_output(strategy.experience))

    def before_eval(self, strategy, **kwargs):
        self.criterion_before_eval = strategy._criterion

    def before_eval_exp(self, strategy, **kwargs):
        strategy._criterion = task_criterion(task_output(strategy.experience))

    def after_eval(self, strategy, **kwargs):
        strategy._criterion = self.criterion_before_eval


class FeatureCacheSaver(BasePlugin):
    """Writes a disk feature cache after each training experience and each evaluation."""

    def __init__(self, cache: FeatureCache) -> None:
        super().__init__()
        self.cache = cache

    def after_training_exp(self, strategy, **kwargs):
        self.cache.save()

    def after_eval(self, strategy, **kwargs):
        self.cache.save()


def attach_feature_cache(model: nn.Module, config: TrainConfig) -> FeatureCache | None:
    """Give every :class:`FrozenBase` in ``model`` the configured feature cache (one shared object).

    Every method built through :func:`per_task_strategy` gets it this way, without code of its own.

    :return: the cache, or None when ``config.feature_cache`` is off or the model has no FrozenBase.
    """
    bases = [m for m in model.modules() if isinstance(m, FrozenBase)]
    if config.feature_cache == "off" or not bases:
        return None
    cache = FeatureCache(config.feature_cache, config.cache_dir)
    for base in bases:
        base.cache = cache
    return cache


class SharedBaseModel(TaskModules):
    """One feature network shared by all tasks and one linear head per task: ``head_t(base(x))``.

    :param base: maps images to ``(B, base.feature_dim)`` features; a :class:`FrozenBase` (fixed
        features) or a trainable :class:`FeatureExtractor` (fine-tuning).
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__(base)

    def new_task_module(self, output: TaskOutput) -> nn.Module:
        return make_head(self.base.feature_dim, output, stride=feature_stride(self.base))

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.task(task_label)(self.base(x))

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every trained task's logits from one pass of the base (LwF distils on all of them)."""
        features = self.base(x)
        return {task: self.task(task)(features) for task in self.known_train_tasks_labels}


def per_task_strategy(
    model: nn.Module,
    config: TrainConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
    method_plugins: Sequence[BasePlugin] = (),
    strategy_cls: type[SupervisedTemplate] = PerTaskStrategy,
) -> SupervisedTemplate:
    """The strategy every method trains with: Adam over the model, the configured batch size and epochs.

    :param model: the method's network.
    :param config: shared hyper-parameters (lr, epochs, batch sizes, device).
    :param plugins: the caller's plugins (progress, loggers).
    :param evaluator: Avalanche evaluation plugin; None records nothing.
    :param method_plugins: the method's own plugins (EWC, LwF), run before the caller's.
    :param strategy_cls: a :class:`PerTaskStrategy` subclass that takes the same keyword arguments.
    """
    config.check()
    cache = attach_feature_cache(model, config)
    if cache is not None and cache.mode == "disk":
        method_plugins = [*method_plugins, FeatureCacheSaver(cache)]
    return strategy_cls(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=config.eval_batch_size,
        device=config.device,
        plugins=[TaskCriterion(), *method_plugins, *plugins],
        evaluator=evaluator,
    )
