"""Steps per second of the navigation stack, single process on one core, RGB-D at several sizes.

Layers timed, each with random move_forward / turn actions on the shipped val episodes:
  core     envs.render.benchmark_steps_per_second (motion + ray caster, no habitat)
  sim      ContinualSideSim.step (habitat Simulator API: sensors, depth normalisation)
  habitat  habitat.Env.step (Nav task, PointGoal sensor, DistanceToGoal/Success/SPL/Collisions)
  gym      gymnasium.make("continual_side/PointNav-v0") step (wrappers, reward, info; resets
           every 500 steps included)
CPU time (time.process_time) is the headline figure: the machine is shared, wall time is noisy.
With --profile, the gymnasium step at 128x128 is run under cProfile and the top functions by
own time are printed, split into ours (envs/) and habitat-lab's.

    python -m benchmarks.perf_env --steps 3000 --out runs/perf_env.json
"""

from __future__ import annotations

import cProfile
import json
import logging
import os
import pstats
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tyro

from continual_side.atomic import atomic_write_text


@dataclass
class PerfConfig:
    """Steps per second of the simulator, habitat.Env and the gymnasium step, one core, several sizes.

    :param resolutions: square RGB-D sizes.
    :param steps: timed steps per layer and size.
    :param warmup: untimed steps first (numba compilation, caches).
    :param out: JSON results file.
    :param profile: profile the gymnasium step at 128x128.
    :param top: functions listed by the profile.
    :param pin_core: run on one CPU core (sched_setaffinity).
    """

    resolutions: tuple[int, ...] = (64, 128, 256)
    steps: int = 3000
    warmup: int = 200
    out: Path = Path("runs/perf_env.json")
    profile: bool = True
    top: int = 15
    pin_core: bool = True


def _rate(step, actions: np.ndarray, warmup: int) -> dict[str, float]:
    for action in actions[:warmup]:
        step(action)
    timed = actions[warmup:]
    wall, cpu = time.perf_counter(), time.process_time()
    for action in timed:
        step(action)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"cpu_steps_per_s": len(timed) / cpu, "wall_steps_per_s": len(timed) / wall}


def _gym_env(resolution: int):
    import gymnasium

    return gymnasium.make("continual_side/PointNav-v0", split="val", width=resolution, height=resolution)


def bench_layers(resolution: int, cfg: PerfConfig) -> dict[str, dict[str, float]]:
    """Steps/s of each layer at one resolution."""
    from envs.render import benchmark_steps_per_second

    actions = np.random.default_rng(0).integers(1, 4, cfg.warmup + cfg.steps)
    results = {"core": {"cpu_steps_per_s": benchmark_steps_per_second(resolution, cfg.steps, clock=time.process_time)}}
    env = _gym_env(resolution)
    habitat_env = env.unwrapped.habitat_env
    env.reset(seed=0)
    results["sim"] = _rate(habitat_env.sim.step, actions, cfg.warmup)
    habitat_env.reset()
    results["habitat"] = _rate(lambda action: habitat_env.step(int(action)), actions, cfg.warmup)  # no stop: no episode end
    env.reset(seed=0)

    def gym_step(action):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    results["gym"] = _rate(gym_step, actions, cfg.warmup)
    env.close()
    return results


def profile_gym_step(resolution: int, cfg: PerfConfig) -> dict[str, list]:
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


def main(cfg: PerfConfig) -> dict:
    """Run the benchmark, print a table, write JSON."""
    import envs  # noqa: F401  (habitat import shim)
    from habitat import logger as habitat_logger

    habitat_logger.setLevel(logging.WARNING)
    if cfg.pin_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    results = {"config": {**asdict(cfg), "out": str(cfg.out)}, "steps_per_s": {}}
    print(f"{'size':>8} {'core':>9} {'sim':>9} {'habitat':>9} {'gym':>9}   (CPU-time steps/s, one core)")
    for resolution in cfg.resolutions:
        layers = bench_layers(resolution, cfg)
        results["steps_per_s"][f"{resolution}x{resolution}"] = layers
        row = " ".join(f"{layers[name]['cpu_steps_per_s']:>9.0f}" for name in ("core", "sim", "habitat", "gym"))
        print(f"{resolution:>4}x{resolution:<4}{row}")
    if cfg.profile:
        results["profile_gym_128"] = profile_gym_step(128, cfg)
        for owner, rows in results["profile_gym_128"].items():
            print(f"-- top own-time functions, {owner} --")
            for where, share in rows:
                print(f"  {share:6.1%}  {where}")
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg.out, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(tyro.cli(PerfConfig))
