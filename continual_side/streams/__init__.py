"""Task streams by name: a new stream is one module that calls ``register_stream`` plus its import below."""

from __future__ import annotations

# the registry lines: importing a stream's module registers it
from continual_side.streams import demo, icifar, itaskonomy, split_cifar10, split_cifar10_c  # noqa: F401
from continual_side.streams.registry import STREAMS, StreamSpec, get_stream, make_stream, register_stream

__all__ = ["STREAMS", "StreamSpec", "get_stream", "make_stream", "register_stream"]
