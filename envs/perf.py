"""``continual-side nav perf``: steps per second of the navigation stack, one process on one core.

Layers timed at each RGB-D size, on the shipped val episodes:
  core      motion + ray caster alone (no habitat), random move_forward / turn
  sim       ContinualSideSim.step (habitat Simulator API: sensors, depth normalisation)
  habitat   habitat.Env.step (Nav task, PointGoal sensor, DistanceToGoal/Success/SPL/Collisions)
  gym       the gymnasium env's step (wrappers, reward, info), random move_forward / turn, so
            episodes end only at the 500-step TimeLimit
  gym+stop  the gymnasium env with uniformly random actions including stop, resets included:
            what an untrained agent costs (episodes last about four steps)
Reset times are measured apart: a goal's first reset computes its geodesic distance field
(``cold``), a later process reads it from the disk cache (``disk``), the same process keeps it in
memory (``memory``). The gym+stop layer runs with every val goal's field in memory, the steady
state of a long run. CPU time (time.process_time) is the headline figure: the machine is shared,
wall time is noisy. With ``--profile``, the gymnasium step at 128x128 is run under cProfile and the
top functions by own time are printed, split into ours (envs/) and habitat-lab's.
"""

from __future__ import annotations

import cProfile
import json
import logging
import math
import os
import pstats
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from continual_side.atomic import atomic_write_text
from continual_side.errors import ConfigError
from envs.datasets import DEFAULT_EPISODES_PER_SCENE

RESULTS_FILE = "steps_per_s.json"
LAYERS = ("core", "sim", "habitat", "gym", "gym+stop")


@dataclass
class NavPerfConfig:
    """Steps per second of the simulator, habitat.Env and the gymnasium env, one core, several sizes.

    :param resolutions: square RGB-D sizes.
    :param steps: timed steps per layer and size.
    :param warmup: untimed steps first (numba compilation, caches).
    :param reset_episodes: episodes whose reset is timed cold, from disk and from memory (1-29: one scene).
    :param out: folder the results go into, as steps_per_s.json.
    :param profile: profile the gymnasium step at 128x128.
    :param top: functions listed by the profile.
    :param pin_core: run on one CPU core (sched_setaffinity).
    """

    resolutions: tuple[int, ...] = (64, 128, 256)
    steps: int = 3000
    warmup: int = 200
    reset_episodes: int = 20
    out: Path = Path("runs/nav-perf")
    profile: bool = True
    top: int = 15
    pin_core: bool = True

    def validate(self) -> None:
        """:raises ConfigError: a size, step count or episode count out of range."""
        most = DEFAULT_EPISODES_PER_SCENE["val"] - 1
        if not self.resolutions or min(self.resolutions) < 1 or self.steps < 1 or self.warmup < 0 or not 1 <= self.reset_episodes <= most:
            raise ConfigError(
                f"need resolutions >= 1, steps >= 1, warmup >= 0 and 1 <= reset_episodes <= {most}, got {self.resolutions}, "
                f"{self.steps}, {self.warmup}, {self.reset_episodes}"
            )


def _rate(step, actions: np.ndarray, warmup: int) -> dict[str, float]:
    for action in actions[:warmup]:
        step(action)
    timed = actions[warmup:]
    wall, cpu = time.perf_counter(), time.process_time()
    for action in timed:
        step(action)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cpu_steps_per_s": len(timed) / cpu, "wall_steps_per_s": len(timed) / wall}


def core_steps_per_second(resolution: int, n_steps: int, *, seed: int = 0) -> float:
    """CPU-time steps per second of (random action: forward / turn, then render) on a generated
    apartment: the simulator core alone, no habitat and no Python env wrapper, after warm-up.

    :param resolution: square image side in pixels.
    :param n_steps: steps timed.
    :param seed: scene and action seed.
    """
    from envs.motion import move_forward
    from envs.navgrid import NavGrid
    from envs.render import RGBDRenderer
    from envs.scene import generate_apartment

    scene = generate_apartment(seed)
    grid = NavGrid(scene)
    renderer = RGBDRenderer(scene, width=resolution, height=resolution)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, 3, size=n_steps)
    rgb = np.empty((resolution, resolution, 3), dtype=np.uint8)
    depth = np.empty((resolution, resolution, 1), dtype=np.float32)
    position, heading = grid.sample_navigable_point(rng), 0.0
    renderer.render_into(position, heading, rgb, depth)  # compile / warm up
    move_forward(grid, position, heading)
    turn = math.radians(10.0)
    start = time.process_time()
    for action in actions:
        if action == 0:
            position, _ = move_forward(grid, position, heading)
        else:
            heading += turn if action == 1 else -turn
        renderer.render_into(position, heading, rgb, depth)
    return n_steps / (time.process_time() - start)


def _gym_env(resolution: int):
    import gymnasium

    return gymnasium.make("continual_side/PointNav-v0", split="val", width=resolution, height=resolution)


def bench_layers(resolution: int, cfg: NavPerfConfig) -> dict[str, dict[str, float]]:
    """Steps/s of each layer at one resolution."""
    rng = np.random.default_rng(0)
    moves = rng.integers(1, 4, cfg.warmup + cfg.steps)
    results = {"core": {"cpu_steps_per_s": core_steps_per_second(resolution, cfg.steps)}}
    env = _gym_env(resolution)
    habitat_env = env.unwrapped.habitat_env
    env.reset(seed=0)
    results["sim"] = _rate(habitat_env.sim.step, moves, cfg.warmup)
    habitat_env.reset()
    results["habitat"] = _rate(lambda action: habitat_env.step(int(action)), moves, cfg.warmup)  # no stop: no episode end
    episodes = {"count": 0}

    def gym_step(action):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            episodes["count"] += 1

    env.reset(seed=0)
    results["gym"] = _rate(gym_step, moves, cfg.warmup)
    for episode in env.unwrapped.episodes:  # every goal's field in memory: a long run's steady state
        env.reset(options={"episode_id": episode.episode_id})
    env.reset(seed=0)
    episodes["count"] = 0
    results["gym+stop"] = _rate(gym_step, rng.integers(0, 4, cfg.warmup + cfg.steps), cfg.warmup)
    results["gym+stop"]["episodes"] = episodes["count"]
    env.close()
    return results


def reset_times_ms(resolution: int, n_episodes: int) -> dict[str, float]:
    """Mean CPU milliseconds of a reset whose goal field is computed, read from disk, or in memory.

    Times the last `n_episodes` val episodes (they share one scene, whose renderer is then
    built before the clock starts), with a fresh field cache folder, so "cold" is cold whatever the
    user's cache holds.
    """
    times, env = {}, None
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("cold", "disk", "memory"):
            if kind != "memory":  # a new process's view: nothing in memory
                if env is not None:
                    env.close()
                env = _gym_env(resolution)
                env.unwrapped.habitat_env.sim.set_field_cache_dir(Path(folder))
                # warm-up on the episode before: its scene's renderer is built, its field not timed
                env.reset(options={"episode_id": env.unwrapped.episodes[-n_episodes - 1].episode_id})
            episodes = env.unwrapped.episodes[-n_episodes:]
            start = time.process_time()
            for episode in episodes:
                env.reset(options={"episode_id": episode.episode_id})
            times[kind] = 1e3 * (time.process_time() - start) / len(episodes)
        env.close()
    return times


def profile_gym_step(resolution: int, cfg: NavPerfConfig) -> dict[str, list]:
    """Top functions by own time in the gymnasium step loop, split into ours and habitat-lab's."""
    env = _gym_env(resolution)
    env.reset(seed=0)
    actions = np.random.default_rng(1).integers(1, 4, cfg.steps)
    for action in actions[: cfg.warmup]:
        env.step(action)
    profiler = cProfile.Profile()
    profiler.enable()
    for action in actions:
        if any(env.step(action)[2:4]):
            env.reset()
    profiler.disable()
    env.close()
    stats = pstats.Stats(profiler).stats
    total = sum(entry[2] for entry in stats.values())
    rows = sorted(
        ((entry[2] / total, f"{Path(file).name}:{line}({name})", file) for (file, line, name), entry in stats.items()),
        reverse=True,
    )
    split = {"ours": [], "habitat": [], "other": []}
    for share, where, file in rows[: cfg.top * 3]:
        owner = "ours" if f"{os.sep}envs{os.sep}" in file else "habitat" if f"{os.sep}habitat{os.sep}" in file else "other"
        if len(split[owner]) < cfg.top:
            split[owner].append([where, round(share, 4)])
    return split


def run_nav_perf(cfg: NavPerfConfig) -> dict:
    """Run the benchmark, print a table, write ``<out>/steps_per_s.json``.

    :raises ConfigError: a setting out of range (nothing is written).
    """
    cfg.validate()
    from habitat import logger as habitat_logger

    habitat_logger.setLevel(logging.WARNING)
    if cfg.pin_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    results = {"config": {**asdict(cfg), "out": str(cfg.out)}, "steps_per_s": {}, "reset_ms": {}}
    print(f"{'size':>8} " + " ".join(f"{name:>9}" for name in LAYERS) + "   (CPU-time steps/s, one core)")
    for resolution in cfg.resolutions:
        layers = bench_layers(resolution, cfg)
        results["steps_per_s"][f"{resolution}x{resolution}"] = layers
        row = " ".join(f"{layers[name]['cpu_steps_per_s']:>9.0f}" for name in LAYERS)
        print(f"{resolution:>4}x{resolution:<4}{row}")
    size = min(cfg.resolutions)
    results["reset_ms"] = reset_times_ms(size, cfg.reset_episodes)
    print(
        f"reset at {size}x{size}, CPU ms: " + ", ".join(f"{kind} {ms:.2f}" for kind, ms in results["reset_ms"].items())
        + " (goal distance field computed / read from disk / in memory)"
    )
    if cfg.profile:
        results["profile_gym_128"] = profile_gym_step(128, cfg)
        for owner, rows in results["profile_gym_128"].items():
            print(f"-- top own-time functions, {owner} --")
            for where, share in rows:
                print(f"  {share:6.1%}  {where}")
    out = Path(cfg.out) / RESULTS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(results, indent=2))
    print(f"results written to {out}")
    return results
