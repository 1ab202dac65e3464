"""Grids of runs: streams x methods x seeds x chosen option values, and where each run's folder is.

A grid axis names one field of one stream's or one method's options dataclass, ``<name>.<field>``
(``ewc.lambda_``, ``sidetune.merge``, ``split_cifar10.n_tasks``), with the values to try. An axis
of a method applies to that method's runs only (so ``ewc.lambda_=1e3,1e4 sidetune.merge=alpha,film``
is 2 EWC settings and 2 side-tuning settings, not 4 of each), an axis of a stream to every run of
that stream.

Run folders. A run whose options are the command's own (its flags or TOML tables, defaults where
not given) is an ordinary run folder, ``<out>/<stream>/<method>/seed-<n>/``, the folder ``bench``
has always used. A run with other grid values gets its own results root named after those values,
``<out>/<setting>/<stream>/<method>/seed-<n>/`` with ``<setting>`` = ``name.field=value`` pairs joined
by ``+`` (``runs/sidetune.merge=film/split_cifar10/sidetune/seed-0/``; ``settings=<hash>`` when a value
does not fit in a folder name). A setting folder always holds a ``=``, which no stream or method name
does, so the two never collide, and :func:`continual_side.report.aggregate` finds both.

A run is of a *kind* (:class:`RunKind`), which its job carries: a function that trains it from its
config, the config's record (what config.json stores, to compare settings), its folder and how it
continues. Stream runs are :data:`STREAM_RUN`; navigation runs are a kind of the ``agents`` package
(``agents.bench.NAV_RUN``), which this package never imports.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from continual_side.checkpoint import CHECKPOINT_FILE
from continual_side.errors import ConfigError
from continual_side.methods import METHODS, get_method
from continual_side.report import folder_label
from continual_side.results import is_complete, load_run, run_folder
from continual_side import runner
from continual_side.runner import RunConfig
from continual_side.streams import STREAMS, get_stream

SETTING_JOIN = "+"
LOG_SUFFIX = ".log"


@dataclass(frozen=True)
class RunKind:
    """How a sweep trains one kind of run. Every function is module level, so a job, which carries its kind,
    pickles by reference to a spawned process or a Ray worker, with no registry to fill there first.

    :param train: ``train(config)`` trains the run and writes its folder.
    :param record: ``record(config)``: the settings config.json stores, compared before a run is reused.
    :param recorded: ``recorded(folder)``: the settings a trained run folder holds, comparable to ``record``.
    :param folder: ``folder(config)``: the run folder.
    :param label: ``label(config)``: what the run is in messages (``split_cifar10/ewc``), before its setting
        and seed.
    :param complete: ``complete(config)``: whether the run needs nothing more. A trained run (summary.json)
        may still lack a step of its kind, e.g. a navigation bench run's evaluation.
    :param resumable: ``resumable(folder)``: whether the incomplete run in the folder continues from where it
        stopped (a checkpoint) instead of starting again.
    :param resumed: ``resumed(config)``: the config that continues the incomplete run.
    :param restarted: ``restarted(config)``: the config that replaces whatever is in the folder.
    """

    train: Callable[[Any], object]
    record: Callable[[Any], dict[str, Any]]
    recorded: Callable[[Path], dict[str, Any]]
    folder: Callable[[Any], Path]
    label: Callable[[Any], str]
    complete: Callable[[Any], bool]
    resumable: Callable[[Path], bool]
    resumed: Callable[[Any], Any]
    restarted: Callable[[Any], Any]


def _train_stream_run(config: RunConfig) -> None:
    runner.run(config)  # the outcome's model stays in the worker: the run folder is the result


def _stream_run_settings(folder: Path) -> dict[str, Any]:
    return load_run(folder).config


def _stream_run_folder(config: RunConfig) -> Path:
    return run_folder(config.out, config.stream, config.method, config.seed)


def _stream_run_label(config: RunConfig) -> str:
    return f"{config.stream}/{config.method}"


def _stream_run_complete(config: RunConfig) -> bool:
    return is_complete(_stream_run_folder(config))


def _stream_run_resumable(folder: Path) -> bool:
    return (folder / CHECKPOINT_FILE).is_file()


def _resumed(config: RunConfig) -> RunConfig:
    return replace(config, resume=True)


def _restarted(config: RunConfig) -> RunConfig:
    return replace(config, overwrite=True)


# a run of one method over one task stream (continual_side.runner.run)
STREAM_RUN = RunKind(train=_train_stream_run, record=RunConfig.record, recorded=_stream_run_settings,
                     folder=_stream_run_folder, label=_stream_run_label, complete=_stream_run_complete,
                     resumable=_stream_run_resumable, resumed=_resumed, restarted=_restarted)


@dataclass(frozen=True)
class RunJob:
    """One run of a grid.

    :param kind: how it trains (:data:`STREAM_RUN`, or a kind of another package).
    :param config: that kind's config.
    :param setting: the grid values that differ from the command's own options (empty for none).
    """

    kind: RunKind
    config: Any
    setting: tuple[tuple[str, Any], ...] = ()

    @property
    def folder(self) -> Path:
        return self.kind.folder(self.config)

    @property
    def log(self) -> Path:
        """The run's stdout and stderr, every attempt appended: ``seed-<n>.log`` beside the run folder,
        since the runner starts a fresh run in an empty folder."""
        return self.folder.with_name(self.folder.name + LOG_SUFFIX)

    @property
    def name(self) -> str:
        setting = f" [{setting_folder(self.setting)}]" if self.setting else ""
        return f"{self.kind.label(self.config)}{setting}/{self.folder.name}"


def parse_axes(items: Iterable[str]) -> dict[str, list[str]]:
    """Grid axes from the command line: ``name.field=v1,v2`` each.

    :param items: e.g. ``["ewc.lambda_=1e3,1e4", "sidetune.merge=alpha,film"]``.
    :raises ConfigError: an item without ``=`` or without values.
    """
    axes: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"grid axis {item!r} must be NAME.FIELD=VALUE[,VALUE...], e.g. ewc.lambda_=1e3,1e4")
        axes[key.strip()] = [value.strip() for value in values.split(",")]
    return axes


def _owner(key: str, streams: Sequence[str], methods: Sequence[str]) -> tuple[str, type, str]:
    """(owner name, its options class, field) of the axis ``key``, which may spell ``_`` as ``-``."""
    name, sep, field_name = key.replace("-", "_").partition(".")
    if not sep or not field_name:
        raise ConfigError(f"grid axis {key!r} must name a stream's or method's option as NAME.FIELD, "
                          "e.g. ewc.lambda_ or split_cifar10.n_tasks")
    if name in methods and name in streams:
        raise ConfigError(f"grid axis {key!r}: {name!r} is both a method and a stream of this sweep")
    if name in methods:
        options = get_method(name).options
    elif name in streams:
        options = get_stream(name).options
    else:
        known = "a registered method or stream" if name not in METHODS and name not in STREAMS else "in this sweep"
        raise ConfigError(f"grid axis {key!r}: {name!r} is not {known}; the sweep runs methods "
                          f"{', '.join(methods)} over streams {', '.join(streams)}")
    fields = [field.name for field in dataclasses.fields(options)]
    if field_name not in fields:
        raise ConfigError(f"grid axis {key!r}: {name} has no option {field_name!r}; its options are "
                          f"{', '.join(fields) or 'none'}")
    return name, options, field_name


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` (command-line text or a TOML value) as the option's type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    text = str(value)
    if origin is Literal:
        for choice in args:
            if value == choice or text == str(choice):
                return choice
        raise ConfigError(f"grid value {value!r} for {key}: choose from {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if value is None or text.lower() == "none":
            if type(None) in args:
                return None
        problems = []
        for arg in (arg for arg in args if arg is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as error:
                problems.append(str(error))
        raise ConfigError(problems[0] if problems else f"grid value {value!r} for {key} is not allowed")
    if hint is bool:
        if isinstance(value, bool) or text.lower() in ("true", "false"):
            return value if isinstance(value, bool) else text.lower() == "true"
    elif hint is int:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not isinstance(value, bool) and number.is_integer():
            return int(number)
    elif hint is float:
        try:
            return float(value if not isinstance(value, bool) else "bool")
        except (TypeError, ValueError):
            pass
    elif hint is str:
        return text
    else:
        raise ConfigError(f"grid axis {key}: options of type {hint} cannot be swept; set it with its flag instead")
    raise ConfigError(f"grid value {value!r} for {key} is not a valid {hint.__name__}")


def typed_axes(axes: Mapping[str, Sequence[Any]], streams: Sequence[str],
               methods: Sequence[str]) -> dict[tuple[str, str], list[Any]]:
    """Check every axis against the options it names and convert its values to the option's type.

    :param axes: ``name.field`` -> values (text from the command line or TOML values).
    :param streams: the sweep's streams.
    :param methods: the sweep's methods.
    :return: ``(owner, field)`` -> typed values, duplicates dropped.
    """
    typed: dict[tuple[str, str], list[Any]] = {}
    for key, values in axes.items():
        owner, options, field_name = _owner(key, streams, methods)
        if isinstance(values, (str, bytes)) or not values:
            raise ConfigError(f"grid axis {key!r} needs a list of values, e.g. [1e3, 1e4]")
        hint = typing.get_type_hints(options)[field_name]
        qualified = f"{owner}.{field_name}"
        if (owner, field_name) in typed:
            raise ConfigError(f"grid axis {qualified} is given twice; list all its values in one axis")
        typed[(owner, field_name)] = list(dict.fromkeys(_coerce(value, hint, qualified) for value in values))
    return typed


def _variants(owner: str, base: Any, axes: Mapping[tuple[str, str], list[Any]]) -> list[tuple[Any, tuple]]:
    """Every combination of ``owner``'s axes applied to ``base``, with the values that differ from it."""
    mine = [(field_name, values) for (name, field_name), values in axes.items() if name == owner]
    variants = []
    for combination in itertools.product(*(values for _, values in mine)):
        changes = {field_name: value for (field_name, _), value in zip(mine, combination)}
        setting = tuple((f"{owner}.{field_name}", value) for field_name, value in sorted(changes.items())
                        if getattr(base, field_name) != value)
        variants.append((replace(base, **changes), setting))
    return variants


def setting_folder(setting: Sequence[tuple[str, Any]]) -> str:
    """The folder of a setting: ``name.field=value`` pairs joined by ``+`` (see :func:`report.folder_label`)."""
    return folder_label(SETTING_JOIN.join(f"{key}={value}" for key, value in setting))


def method_suits_stream(method: str, stream: str) -> bool:
    """Whether the method suits the stream's kind of task (dense or classes), known before the stream is built."""
    return get_method(method).runs_on(get_stream(stream).dense)


def stream_jobs(*, streams: Sequence[str], stream_options: Mapping[str, Any], methods: Sequence[str],
                method_options: Mapping[str, Any], axes: Mapping[tuple[str, str], list[Any]], seeds: int,
                base: RunConfig) -> list[RunJob]:
    """Every stream run of a grid that suits its stream (dense or class tasks), checked, in stream, stream
    setting, method, method setting, seed order.

    :param streams: the streams.
    :param stream_options: each stream's own options (missing: its defaults).
    :param methods: the methods.
    :param method_options: each method's own options (missing: its defaults).
    :param axes: typed grid axes (:func:`typed_axes`).
    :param seeds: seeds 0 .. seeds-1.
    :param base: the settings every run shares (train, out, tensorboard, progress, overwrite).
    """
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds} must be at least 1")
    jobs = []
    for stream in streams:
        for stream_variant, stream_setting in _variants(stream, get_stream(stream).check_options(
                stream_options.get(stream)), axes):
            for method in methods:
                if not method_suits_stream(method, stream):
                    continue  # e.g. --methods all over a class stream and a dense one: HST on the class one only
                for method_variant, method_setting in _variants(method, get_method(method).check_options(
                        method_options.get(method)), axes):
                    setting = stream_setting + method_setting
                    out = Path(base.out) / setting_folder(setting) if setting else Path(base.out)
                    for seed in range(seeds):
                        config = replace(base, stream=stream, method=method, stream_options=stream_variant,
                                         method_options=method_variant, seed=seed, out=str(out)).checked()
                        jobs.append(RunJob(kind=STREAM_RUN, config=config, setting=setting))
    return jobs
