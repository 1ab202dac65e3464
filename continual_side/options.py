"""What the method and stream registries share: a name check at registration and an options check per use.

A method or stream owns one options dataclass whose fields all have defaults, so a run can be built
from its name alone and records exactly the options it used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from continual_side.errors import ConfigError


def check_registration(kind: str, name: str, registry: Mapping[str, Any], options: type) -> None:
    """Refuse a bad ``kind`` registration.

    :raises ValueError: the name is not lower case letters, digits and '_', or is taken, or ``options``
        is not a dataclass whose fields all have defaults (a TypeError when a default is missing).
    """
    if not name or name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"{kind} name {name!r}: use lower-case letters, digits and '_'")
    if name in registry:
        raise ValueError(f"{kind} {name!r} is registered already")
    if not dataclasses.is_dataclass(options):
        raise ValueError(f"{kind} {name!r}: options must be a dataclass, got {options!r}")
    options()  # every field needs a default


def checked_options(kind: str, name: str, options_type: type, options: Any | None) -> Any:
    """``options`` if it is ``options_type``, the defaults for None, else a ConfigError."""
    if options is None:
        return options_type()
    if type(options) is not options_type:
        raise ConfigError(f"{kind} {name!r} takes {options_type.__name__}, got {type(options).__name__}")
    return options
