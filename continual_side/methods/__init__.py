"""Continual-learning methods as Avalanche strategies, one file each, registered by name.

To add a method: write ``continual_side/methods/<name>.py`` with ``build(config, *, plugins,
evaluator)`` returning an Avalanche strategy and a ``TRAINED_PER_TASK`` description, then add one
line to ``METHODS`` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from avalanche.core import BasePlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.errors import ConfigError
from continual_side.methods import ewc, features, finetune, independent, lwf, pnn, sidetune
from continual_side.methods.common import MethodConfig

METHODS: dict[str, ModuleType] = {
    "finetune": finetune,
    "features": features,
    "independent": independent,
    "ewc": ewc,
    "lwf": lwf,
    "pnn": pnn,
    "sidetune": sidetune,
}


def method_names() -> list[str]:
    return list(METHODS)


def build_strategy(
    name: str,
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SupervisedTemplate:
    """Build the named method's Avalanche strategy.

    :param name: a key of ``METHODS``.
    :param config: shared hyper-parameters.
    :param plugins: extra Avalanche plugins (progress bars, loggers).
    :param evaluator: Avalanche evaluation plugin; None for a silent one that records nothing.
    """
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name].build(config, plugins=plugins, evaluator=evaluator)


__all__ = ["METHODS", "MethodConfig", "build_strategy", "method_names"]
