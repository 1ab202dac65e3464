"""Evaluate a policy on every episode of a split exactly once: success, SPL, distance, collisions.

SB3's ``evaluate_policy`` plays a number of resets, so with a finite episode set some episodes are
played twice and others never; PointNav results are reported per episode set (val or test), so
here each episode is chosen by id through ``reset(options={"episode_id": ...})``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class EpisodeResult:
    """One played episode.

    :param episode_id: habitat's episode id within the split.
    :param scene_id: the episode's scene.
    :param difficulty: easy, medium or hard (the episode file's bin).
    :param success: 1.0 if the agent stopped within the success distance.
    :param spl: success weighted by (shortest path length / path length).
    :param distance_to_goal: geodesic metres left at the end.
    :param collisions: steps that hit an obstacle.
    :param steps: actions taken.
    """

    episode_id: str
    scene_id: str
    difficulty: str | None
    success: float
    spl: float
    distance_to_goal: float
    collisions: int
    steps: int


def evaluate_every_episode(env, policy: Callable[[dict], int]) -> list[EpisodeResult]:
    """Play each episode of the env's split once, in id order, with ``policy(observation)``.

    :param env: a PointNav env from ``gymnasium.make("continual_side/PointNav-v0", ...)`` (its
        TimeLimit ends episodes the policy never stops) or a ``PointNavEnv``.
    :param policy: maps an observation to an action, e.g. ``lambda obs: model.predict(obs,
        deterministic=True)[0]`` for an SB3 model or ``lambda obs: env.unwrapped.expert_action()``.
    :returns: one result per episode.
    """
    results = []
    for episode in env.unwrapped.episodes:
        observation, info = env.reset(options={"episode_id": episode.episode_id})
        steps, done = 0, False
        while not done:
            observation, _, terminated, truncated, info = env.step(policy(observation))
            steps += 1
            done = terminated or truncated
        results.append(
            EpisodeResult(
                episode_id=episode.episode_id,
                scene_id=episode.scene_id,
                difficulty=(episode.info or {}).get("difficulty"),
                success=float(info["success"]),
                spl=float(info["spl"]),
                distance_to_goal=float(info["distance_to_goal"]),
                collisions=int(info["collisions"]["count"]),
                steps=steps,
            )
        )
    return results


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """Means of success, SPL, distance to goal, collisions and steps over the episodes."""
    rows = [asdict(result) for result in results]
    keys = ("success", "spl", "distance_to_goal", "collisions", "steps")
    return {"episodes": len(rows), **{key: float(np.mean([row[key] for row in rows])) for key in keys}}
