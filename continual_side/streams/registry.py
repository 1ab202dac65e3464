"""The stream registry: a stream is one file that registers its builder and its options dataclass.

The runner, the CLI and the bench read streams only from here, so adding a stream is its file plus
one import line in ``continual_side/streams/__init__.py`` (or a :func:`register_stream` call from
your own module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from avalanche.benchmarks.scenarios.generic_scenario import CLScenario

from continual_side.errors import ConfigError
from continual_side.methods.common import BASES, DEFAULT_BASE
from continual_side.options import check_registration, checked_options


@dataclass(frozen=True)
class StreamSpec:
    """One registered stream.

    :param name: registry name; also the run folders' stream folder.
    :param options: the stream's own options dataclass (every field with a default).
    :param build: ``build(options, progress=...)`` returns the task-incremental benchmark (see
        :func:`continual_side.streams.benchmark.task_benchmark`).
    :param base: the base network a run over this stream uses when its ``TrainConfig.base`` is None
        (a key of ``continual_side.methods.common.BASES``).
    :param dense: whether its tasks are dense (a ``DenseOutput`` per experience): a sweep's ``--methods all``
        then leaves out the methods registered with ``dense=False``, known before the stream is built.
    """

    name: str
    options: type
    build: Callable[..., CLScenario]
    base: str = DEFAULT_BASE
    dense: bool = False

    def check_options(self, options: Any | None) -> Any:
        """``options`` if it is this stream's options type, its defaults for None, else a ConfigError."""
        return checked_options("stream", self.name, self.options, options)


STREAMS: dict[str, StreamSpec] = {}


def register_stream(name: str, *, options: type, build: Callable[..., CLScenario],
                    base: str = DEFAULT_BASE, dense: bool = False) -> StreamSpec:
    """Add a stream to the registry and return its spec.

    :param base: its default base network (see :class:`StreamSpec`); the CIFAR ResNet-44 unless given.
    :param dense: whether its tasks are dense (see :class:`StreamSpec`).
    :raises ValueError: see :func:`continual_side.options.check_registration`, or an unknown base.
    """
    check_registration("stream", name, STREAMS, options)
    if base not in BASES:
        raise ValueError(f"stream {name!r}: unknown base {base!r}; choose one of {', '.join(BASES)}")
    STREAMS[name] = spec = StreamSpec(name=name, options=options, build=build, base=base, dense=dense)
    return spec


def get_stream(name: str) -> StreamSpec:
    """The registered stream ``name``, or a ConfigError listing the registered ones."""
    if name not in STREAMS:
        raise ConfigError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)}")
    return STREAMS[name]


def make_stream(name: str, options: Any = None, *, progress: bool = False) -> CLScenario:
    """Build the named stream with its options (None: its defaults).

    :param name: a registered stream.
    :param options: that stream's options dataclass.
    :param progress: show decoding progress bars.
    """
    spec = get_stream(name)
    return spec.build(spec.check_options(options), progress=progress)
