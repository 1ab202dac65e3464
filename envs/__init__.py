"""Embodied navigation: habitat-lab's PointNav task on a numba grid simulator (no habitat-sim needed).

Importing this package puts envs.habitat_shim in place (so ``import habitat`` works without
habitat-sim) and registers the gymnasium env ``continual_side/PointNav-v0``; the habitat modules
themselves load on first use of the names below.

- ``make_habitat_config(...)`` / ``make_habitat_env(...)``: habitat's config and ``habitat.Env``.
- ``PointNavEnv``: the gymnasium env (``gymnasium.make("continual_side/PointNav-v0", ...)``,
  ``gymnasium.make_vec(..., num_envs=n)``).
- ``ShortestPathExpert``: geodesic shortest-path expert.
- ``evaluate_every_episode``: a policy on every episode of a split, once each.
- ``write_pointnav_dataset``, ``load_dataset``, ``EpisodeFileError``: PointNav-v1 episode files.
"""

import importlib
import importlib.metadata
import sys

import gymnasium

from envs import habitat_shim


def _drop_gym_notice() -> None:
    """Keep gym 0.23 (imported by habitat-lab) from printing its "unmaintained" banner on stderr.

    gym prints the entry for its own version from ``gym_notices`` on first import; only that
    entry is removed, before gym is imported, so every other warning still shows.
    """
    if "gym" in sys.modules:
        return
    try:
        import gym_notices.notices as gym_notices

        gym_notices.notices.pop(importlib.metadata.version("gym"), None)
    except (ImportError, importlib.metadata.PackageNotFoundError):
        pass  # no gym or no notices: nothing to silence


_drop_gym_notice()
habitat_shim.install()

GYM_ID = "continual_side/PointNav-v0"
if GYM_ID not in gymnasium.registry:
    # gymnasium's TimeLimit truncates (make(..., max_episode_steps=N) overrides it); the env's own
    # habitat_step_limit is 0 by default, so habitat cannot cut episodes shorter than asked
    gymnasium.register(id=GYM_ID, entry_point="envs.gym_env:PointNavEnv", max_episode_steps=500)

_LAZY = {
    "make_habitat_config": "envs.habitat_env",
    "make_habitat_env": "envs.habitat_env",
    "PointNavEnv": "envs.gym_env",
    "ShortestPathExpert": "envs.expert",
    "evaluate_every_episode": "envs.evaluation",
    "write_pointnav_dataset": "envs.datasets",
    "load_dataset": "envs.datasets",
    "EpisodeFileError": "envs.datasets",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
