"""Task streams by name: a new stream is one module plus one line in `STREAMS`."""

from __future__ import annotations

import inspect
from typing import Callable

from avalanche.benchmarks.scenarios.generic_scenario import CLScenario

from continual_side.errors import ConfigError
from continual_side.streams.demo import demo_stream
from continual_side.streams.icifar import icifar100
from continual_side.streams.split_cifar10 import split_cifar10

STREAMS: dict[str, Callable[..., CLScenario]] = {
    "icifar100": icifar100,
    "split_cifar10": split_cifar10,
    "demo": demo_stream,
}


def make_stream(name: str, **options) -> CLScenario:
    """Build the named task-incremental stream.

    :param name: one of `STREAMS`.
    :param options: keyword arguments of that stream's function (e.g. `data_root`, `n_tasks`).
    :raises ConfigError: unknown name, or options the stream does not take.
    """
    if name not in STREAMS:
        raise ConfigError(f"unknown stream {name!r}; choose one of {sorted(STREAMS)}")
    factory = STREAMS[name]
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as error:
        accepted = list(inspect.signature(factory).parameters)
        raise ConfigError(f"stream {name!r}: {error}; it accepts {accepted}") from None
    return factory(**options)
