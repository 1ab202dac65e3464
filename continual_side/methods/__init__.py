"""Continual-learning methods as Avalanche strategies, one file each, registered by name.

To add a method, write ``continual_side/methods/<name>.py`` that calls
:func:`~continual_side.methods.registry.register_method` (its model, its options dataclass, what it
trains) and add its import below; nothing else in the suite names a method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

# the registry lines: importing a method's module registers it
from continual_side.methods import finetune, features, independent, ewc, lwf, pnn, sidetune  # noqa: F401
from continual_side.methods import cst, hst, restuning, spottune  # noqa: F401
from continual_side.methods.common import PerTaskStrategy, TrainConfig, per_task_strategy
from continual_side.methods.registry import METHODS, MethodSpec, get_method, register_method


def build_strategy(
    name: str,
    options: Any = None,
    train: TrainConfig | None = None,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SupervisedTemplate:
    """Build the named method's Avalanche strategy.

    :param name: a registered method (``METHODS``).
    :param options: that method's options dataclass; None for its defaults.
    :param train: shared training settings; None for the defaults.
    :param plugins: extra Avalanche plugins (progress bars, loggers), run after the method's own.
    :param evaluator: Avalanche evaluation plugin; None for a silent one that records nothing.
    """
    spec = get_method(name)
    options = spec.check_options(options)
    train = (train or TrainConfig()).check()
    return per_task_strategy(spec.model(options, train), train, plugins=plugins, evaluator=evaluator,
                             method_plugins=list(spec.plugins(options)),
                             strategy_cls=spec.strategy or PerTaskStrategy)


__all__ = ["METHODS", "MethodSpec", "TrainConfig", "build_strategy", "get_method", "register_method"]
