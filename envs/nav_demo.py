"""``continual-side nav demo``: the shortest-path expert plays one PointNav episode in habitat-lab.

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

    :param scene: scene whose episodes are played: a built-in name (the val split's are
        apartment_16..19) or, with --episodes, the stem of a scene file it names; default the first.
    :param split: dataset split holding the episodes.
    :param episode: index among that scene's episodes in the split.
    :param episodes: a PointNav-v1 episode file (json.gz) to play instead of the shipped split.
    :param out: folder the top-down map PNG goes into (named <scene>_<split>_ep<episode>.png).
    :param resolution: RGB-D width and height in pixels.
    :param hfov: horizontal field of view in degrees.
    :param camera_height: camera height above the floor in metres (below the 2.5 m ceiling).
    """

    scene: str | None = None
    split: str = "val"
    episode: int = 0
    episodes: Path | None = None
    out: Path = Path("runs/nav-demo")
    resolution: int = 128
    hfov: int = 90
    camera_height: float = 1.25


def _scene_name(scene_id: str) -> str:
    """``apartment_16`` for ``builtin:apartment_16``, the file stem for a scene .npz path."""
    return Path(scene_id.rpartition("builtin:")[2]).stem


def run_nav_demo(cfg: NavDemoConfig) -> dict:
    """Play the episode with the expert; print and return the metrics and the map's path.

    :raises ConfigError: unknown scene or episode index, or a camera the simulator cannot place.
    :raises envs.datasets.EpisodeFileError: a missing or corrupt episode file, or an unreachable goal.
    :raises envs.scene.SceneFileError: a missing or corrupt scene file.
    """
    from habitat import logger as habitat_logger

    from envs.gym_env import PointNavEnv
    from envs.habitat_env import DEFAULT_DATA_PATH

    habitat_logger.setLevel(logging.WARNING)
    env = PointNavEnv(
        data_path=str(cfg.episodes) if cfg.episodes is not None else DEFAULT_DATA_PATH, split=cfg.split,
        width=cfg.resolution, height=cfg.resolution, hfov=cfg.hfov, camera_height=cfg.camera_height,
        habitat_step_limit=500, render_mode="rgb_array",
    )
    scenes = list(dict.fromkeys(_scene_name(e.scene_id) for e in env.episodes))
    scene = cfg.scene if cfg.scene is not None else scenes[0]
    episodes = [e for e in env.episodes if _scene_name(e.scene_id) == _scene_name(scene)]
    if not episodes:
        raise ConfigError(f"split {cfg.split!r} has no episode on scene {scene!r}: choose one of {scenes}")
    if not 0 <= cfg.episode < len(episodes):
        raise ConfigError(f"episode {cfg.episode} out of range: scene {scene!r} has {len(episodes)} in {cfg.split!r}")
    episode = episodes[cfg.episode]
    _, info = env.reset(options={"episode_id": episode.episode_id})
    geodesic_distance = float(info["distance_to_goal"])
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(env.expert_action())
        steps, done = steps + 1, terminated or truncated
    out = Path(cfg.out) / f"{_scene_name(scene)}_{cfg.split}_ep{cfg.episode}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        Image.fromarray(np.ascontiguousarray(env.render())).save(handle, format="PNG")
    env.close()
    result = {
        "episode_id": episode.episode_id,
        "difficulty": (episode.info or {}).get("difficulty"),
        "geodesic_distance": geodesic_distance,
        "success": float(info["success"]),
        "spl": float(info["spl"]),
        "steps": steps,
        "collisions": int(info["collisions"]["count"]),
        "map": str(out),
    }
    print(
        f"{_scene_name(scene)} {cfg.split} episode {cfg.episode} ({result['difficulty']}, "
        f"{result['geodesic_distance']:.2f} m): success {result['success']:.0f}, SPL {result['spl']:.3f}, "
        f"{result['steps']} steps, {result['collisions']} collisions; map {out}"
    )
    return result
