"""The method registry: a method is one file that registers its model, its options and what it trains.

PEFT's shape (``register_peft_method(name, config_cls, model_cls)``): every method owns one options
dataclass with nothing of any other method in it, so a run records exactly the options it used and
the bench compares exactly those. The runner, the CLI, the bench and the tests read everything else
from here, so adding a method is its file plus one import line in ``continual_side/methods/__init__.py``
(or a :func:`register_method` call from your own module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from avalanche.core import BasePlugin
from torch import nn

from continual_side.errors import ConfigError
from continual_side.options import check_registration, checked_options


@dataclass
class NoOptions:
    """The method has no options of its own."""


@dataclass(frozen=True)
class MethodSpec:
    """Everything the suite knows about one method.

    :param name: registry name (lower case; also the run-folder name).
    :param options: the method's own options dataclass (every field with a default).
    :param model: ``model(options, train)`` builds the method's network (a ``TaskModules``) from its
        options and the shared :class:`~continual_side.methods.common.TrainConfig`.
    :param trained: what training a task changes, in words (the comparison table prints it).
    :param trainable: ``trainable(name, task)``: may the parameter or buffer ``name`` of the model
        change while task ``task`` (its key, e.g. ``"1"``) trains? Everything else must stay
        bit-identical (the parameter test reads this).
    :param plugins: ``plugins(options)``: the method's own Avalanche plugins (a regulariser, ...).
    :param strategy: the ``PerTaskStrategy`` subclass to train with; None for ``PerTaskStrategy``.
    :param dense: whether the method runs dense tasks (a stream registered with ``dense=True``, iTaskonomy),
        not only classes; ``--methods all`` leaves the others out of a dense stream's runs.
    """

    name: str
    options: type
    model: Callable[[Any, Any], nn.Module]
    trained: str
    trainable: Callable[[str, str], bool]
    plugins: Callable[[Any], Sequence[BasePlugin]] = lambda options: ()
    strategy: type | None = None
    dense: bool = True

    def runs_on(self, dense_stream: bool) -> bool:
        """Whether the method runs on a stream of dense tasks (``dense_stream``) or of classes."""
        return self.dense or not dense_stream

    def check_options(self, options: Any | None) -> Any:
        """``options`` if it is this method's options type, its defaults for None, else a ConfigError."""
        return checked_options("method", self.name, self.options, options)


METHODS: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    options: type = NoOptions,
    model: Callable[[Any, Any], nn.Module],
    trained: str,
    trainable: Callable[[str, str], bool],
    plugins: Callable[[Any], Sequence[BasePlugin]] = lambda options: (),
    strategy: type | None = None,
    dense: bool = True,
) -> MethodSpec:
    """Add a method to the registry (see :class:`MethodSpec` for the arguments) and return its spec.

    :raises ValueError: see :func:`continual_side.options.check_registration`.
    """
    check_registration("method", name, METHODS, options)
    spec = MethodSpec(name=name, options=options, model=model, trained=trained, trainable=trainable,
                      plugins=plugins, strategy=strategy, dense=dense)
    METHODS[name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``, or a ConfigError listing the registered ones."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def check_method_runs_on(name: str, stream: str, dense: bool) -> None:
    """Refuse, before anything is built or trained, a method the stream's tasks do not suit.

    :param name: a registered method.
    :param stream: the stream's name.
    :param dense: whether the stream's tasks are dense (its ``StreamSpec.dense``).
    :raises ConfigError: a method registered with ``dense=False`` on a dense stream.
    """
    if not get_method(name).runs_on(dense):
        raise ConfigError(f"{name} cannot run the dense stream {stream!r}: it predicts classes only (registered with "
                          f"dense=False); leave {name} out of --methods, or pass --methods all, which leaves it out")


def shared_base_and_task(name: str, task: str) -> bool:
    """Methods that train the shared base and the current task's modules (fine-tuning and its regularisers)."""
    return name.startswith(("base.", f"tasks.{task}."))


def task_modules_only(name: str, task: str) -> bool:
    """Methods that train only the current task's own modules (nothing shared, so nothing forgotten)."""
    return name.startswith(f"tasks.{task}.")
