"""Lets habitat-lab's navigation stack import without habitat-sim (and its magnum bindings).

habitat-lab 0.3.x imports habitat-sim-only code on four paths that ``import habitat``,
``habitat.Env`` with the Nav task, and ``habitat.gym`` all go through, although navigation
itself never touches it. This module stands in for exactly those four habitat-lab modules
(never for ``habitat_sim`` or ``magnum`` themselves, so ``try: import habitat_sim`` checks
inside habitat-lab still see that habitat-sim is absent and register their error stubs):

``habitat.sims.habitat_simulator.object_state_machine``
    Imported by ``habitat/sims/habitat_simulator/__init__.py`` only to re-export
    ``ObjectStateMachine`` (rearrangement object states); the real one imports magnum and
    habitat_sim at module top. Stand-in: a class that raises ImportError when built.
``habitat.core.batch_rendering.env_batch_renderer``
    ``habitat/core/vector_env.py`` imports ``EnvBatchRenderer`` (habitat-sim's batch renderer,
    used only when ``habitat.simulator.renderer.enable_batch_renderer`` is set). Stand-in: a
    class that raises ImportError when built.
``habitat.tasks.rearrange`` (the package ``__init__`` only; its submodules stay importable)
    ``habitat/tasks/registration.py`` calls its ``_try_register_rearrange_task()``, which
    imports ~25 rearrangement modules unconditionally (no try/except), most of them needing
    magnum. Stand-in: the same package path with a registration function that registers
    nothing, so rearrangement tasks are simply not available.
``habitat.tasks.rearrange.rearrange_sim``
    ``habitat/gym/gym_wrapper.py`` imports ``add_perf_timing_func`` from it; the real module
    is the habitat-sim based RearrangeSim. Stand-in: ``add_perf_timing_func`` as a
    pass-through decorator, which is what the real one does for a simulator without
    ``add_perf_timing`` (ours).

Call :func:`install` before the first ``import habitat`` (``import envs`` does). When
habitat-sim is installed, :func:`install` does nothing and the real modules load.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Callable, Iterable

_REARRANGE = "habitat.tasks.rearrange"


def _needs_habitat_sim(what: str) -> ImportError:
    return ImportError(f"{what} needs habitat-sim, which is not installed (stand-in from envs.habitat_shim)")


def _unavailable_class(module: ModuleType, name: str) -> None:
    """Put a class called ``name`` into ``module`` that raises ImportError when built."""

    def __init__(self, *args, **kwargs):
        raise _needs_habitat_sim(name)

    module.__dict__[name] = type(name, (), {"__init__": __init__, "__module__": module.__name__})


def _fill_rearrange_package(module: ModuleType) -> None:
    spec = importlib.machinery.PathFinder.find_spec(_REARRANGE, sys.modules["habitat.tasks"].__path__)
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = spec.origin

    def _try_register_rearrange_task() -> None:
        """Registers nothing: every rearrangement task needs habitat-sim."""

    module._try_register_rearrange_task = _try_register_rearrange_task


def _fill_rearrange_sim(module: ModuleType) -> None:
    def add_perf_timing_func(name: str | None = None) -> Callable[[Callable], Callable]:
        """Pass-through: perf timing is only logged by habitat-sim's RearrangeSim."""
        return lambda f: f

    module.add_perf_timing_func = add_perf_timing_func


STUBS: dict[str, Callable[[ModuleType], None]] = {
    "habitat.sims.habitat_simulator.object_state_machine": lambda m: _unavailable_class(m, "ObjectStateMachine"),
    "habitat.core.batch_rendering.env_batch_renderer": lambda m: _unavailable_class(m, "EnvBatchRenderer"),
    _REARRANGE: _fill_rearrange_package,
    "habitat.tasks.rearrange.rearrange_sim": _fill_rearrange_sim,
}
"""The habitat-lab modules stood in for, with the function that fills each stand-in."""


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of the stubbed module names with the stand-ins, before the path finder."""

    def __init__(self, names: Iterable[str]):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname == _REARRANGE)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__doc__ = f"Stand-in from {__name__}: see its docstring."
        STUBS[module.__name__](module)


def habitat_sim_installed() -> bool:
    """True when a real habitat-sim is importable: then nothing is stood in for."""
    return importlib.util.find_spec("habitat_sim") is not None


def installed() -> bool:
    """True when the stand-ins are active in this process."""
    return any(isinstance(f, _StubFinder) for f in sys.meta_path)


def install(names: Iterable[str] = tuple(STUBS)) -> bool:
    """Put the stand-ins in front of the import system, unless habitat-sim is installed.

    Idempotent. Must run before ``import habitat``.

    :param names: which of :data:`STUBS` to stand in for (all by default; tests drop one to
        check that each is still needed).
    :returns: True if the stand-ins are active after the call.
    """
    if installed():
        return True
    if habitat_sim_installed():
        return False
    unknown = set(names) - set(STUBS)
    if unknown:
        raise ValueError(f"no stand-in for {sorted(unknown)}; known: {sorted(STUBS)}")
    sys.meta_path.insert(0, _StubFinder(names))
    return True
