"""``continual-side nav demo``: the shortest-path expert plays one PointNav episode in habitat.Env.

Prints success, SPL, steps and collisions from habitat's own measures and writes a top-down map
of the scene with the agent's path, its final pose and the goal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from continual_side.atomic import atomic_open
from continual_side.errors import ConfigError


@dataclass
class NavDemoConfig:
    """A shortest-path expert plays one PointNav episode; prints success and SPL, writes a top-down map.

    :param scene: built-in scene whose episodes are used (see envs.scene.builtin_scene_names).
    :param split: dataset split holding the episodes.
    :param episode: index among that scene's episodes in the split.
    :param seed: habitat seed.
    :param out_dir: where the top-down map PNG goes.
    :param resolution: RGB-D width and height in pixels.
    """

    scene: str = "apartment_2"
    split: str = "val"
    episode: int = 0
    seed: int = 0
    out_dir: Path = Path("runs/nav-demo")
    resolution: int = 128


def run_nav_demo(cfg: NavDemoConfig) -> dict:
    """Play the episode with the expert; print and return the metrics and the map's path.

    :raises ConfigError: unknown scene or episode index.
    """
    from habitat import logger as habitat_logger

    from envs.expert import ShortestPathExpert
    from envs.habitat_env import make_habitat_config, make_habitat_env
    from envs.render import topdown_map
    from envs.simulator import quaternion_to_heading

    habitat_logger.setLevel(logging.WARNING)
    config = make_habitat_config(split=cfg.split, width=cfg.resolution, height=cfg.resolution, seed=cfg.seed)
    env = make_habitat_env(config)
    scene_id = f"builtin:{cfg.scene}"
    episodes = [e for e in env.episodes if e.scene_id == scene_id]
    if not episodes:
        known = sorted({e.scene_id.removeprefix("builtin:") for e in env.episodes})
        raise ConfigError(f"split {cfg.split!r} has no episode on scene {cfg.scene!r}: choose one of {known}")
    if not 0 <= cfg.episode < len(episodes):
        raise ConfigError(f"episode {cfg.episode} out of range: scene {cfg.scene!r} has {len(episodes)} in {cfg.split!r}")
    env.current_episode = episodes[cfg.episode]
    env.reset()
    expert = ShortestPathExpert(env.sim, goal_radius=config.habitat.task.measurements.success.success_distance)
    goals = [goal.position for goal in env.current_episode.goals]
    path = [env.sim.get_agent_state().position]
    while not env.episode_over:
        env.step(expert.get_next_action(goals))
        path.append(env.sim.get_agent_state().position)
    metrics = env.get_metrics()
    state = env.sim.get_agent_state()
    image = topdown_map(env.sim.scene, path=path, agent=(state.position, quaternion_to_heading(state.rotation)), goal=goals[0])
    out = Path(cfg.out_dir) / f"{cfg.scene}_{cfg.split}_ep{cfg.episode}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        Image.fromarray(np.ascontiguousarray(image)).save(handle, format="PNG")
    env.close()
    result = {
        "episode_id": env.current_episode.episode_id,
        "difficulty": env.current_episode.info.get("difficulty"),
        "geodesic_distance": float(env.current_episode.info["geodesic_distance"]),
        "success": float(metrics["success"]),
        "spl": float(metrics["spl"]),
        "steps": len(path) - 1,
        "collisions": int(metrics["collisions"]["count"]),
        "map": str(out),
    }
    print(
        f"{cfg.scene} {cfg.split} episode {cfg.episode} ({result['difficulty']}, {result['geodesic_distance']:.2f} m): "
        f"success {result['success']:.0f}, SPL {result['spl']:.3f}, {result['steps']} steps, "
        f"{result['collisions']} collisions; map {out}"
    )
    return result
