"""Evaluation of navigation agents: every chosen episode once, per-episode rows, top-down maps.

``continual-side nav eval RUN_DIR --split val|test`` loads ``RUN_DIR/model.zip`` with the env settings
in ``RUN_DIR/config.json`` and writes ``RUN_DIR/eval-<split>/``: ``episodes.csv`` (one row per
episode), ``summary.json`` (means) and ``paths.png`` (a grid of top-down maps with the agent's paths).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from stable_baselines3.common.vec_env import VecEnv

from agents.vec_env import TOPDOWN_KEY, play_episode
from continual_side.atomic import atomic_write_text
from continual_side.errors import ConfigError
from continual_side.results import jsonable, save_figure
from envs.evaluation import EpisodeResult, summarize

EPISODES_CSV = "episodes.csv"
EVAL_SUMMARY = "summary.json"
PATHS_PNG = "paths.png"


def evaluation_folder(run_dir: Path, split: str) -> Path:
    """Where ``nav eval`` writes a run's evaluation on a split."""
    return Path(run_dir) / f"eval-{split}"


def split_episodes(vec_env: VecEnv) -> list:
    """The first env's split, habitat episodes in id order."""
    return vec_env.get_attr("episodes", indices=[0])[0]


def spread(items: list, count: int | None) -> list:
    """``count`` items evenly spaced over the list (all of them for None or count >= len): a subset
    that covers every scene and difficulty of a split ordered by scene."""
    if count is None or count >= len(items):
        return list(items)
    if count < 1:
        raise ConfigError(f"episode count must be at least 1, got {count}")
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round()]


def evaluate_episodes(vec_env: VecEnv, act: Callable[[dict], int], episodes: list
                      ) -> tuple[list[EpisodeResult], list[np.ndarray | None]]:
    """Play each episode once with ``act``.

    :param vec_env: a single-env agent env (``render=True`` for top-down maps).
    :param act: stacked observation -> action.
    :param episodes: habitat episodes of the env's split.
    :returns: one result per episode and its final top-down map (None without rendering).
    """
    results, maps = [], []
    for episode in episodes:
        info, steps = play_episode(vec_env, episode.episode_id, act)
        results.append(EpisodeResult(
            episode_id=episode.episode_id, scene_id=episode.scene_id,
            difficulty=(episode.info or {}).get("difficulty"), success=float(info["success"]), spl=float(info["spl"]),
            distance_to_goal=float(info["distance_to_goal"]), collisions=int(info["collisions"]["count"]), steps=steps,
        ))
        maps.append(info.get(TOPDOWN_KEY))
    return results, maps


def episodes_csv(results: list[EpisodeResult]) -> str:
    """One row per episode, columns as EpisodeResult's fields."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[field.name for field in fields(EpisodeResult)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(result) for result in results)
    return buffer.getvalue()


def paths_figure(results: list[EpisodeResult], maps: list[np.ndarray], title: str, columns: int = 6) -> Figure:
    """A grid of top-down maps (path blue, agent red, goal green), each titled with its outcome."""
    rows = math.ceil(len(maps) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows + 0.4))
    figure.suptitle(title)
    for index, (result, image) in enumerate(zip(results, maps)):
        axis = figure.add_subplot(rows, columns, index + 1)
        axis.imshow(image)
        outcome = "success" if result.success else "fail"
        axis.set_title(f"{result.scene_id.rsplit('/', 1)[-1]} #{result.episode_id}\n{outcome}, SPL {result.spl:.2f}",
                       fontsize=7)
        axis.axis("off")
    figure.tight_layout()
    return figure


def write_evaluation(folder: Path, results: list[EpisodeResult], maps: list[np.ndarray | None], title: str,
                     map_count: int, extra: dict) -> dict:
    """Write episodes.csv, summary.json and (with maps) paths.png into ``folder``; return the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / EPISODES_CSV, episodes_csv(results))
    summary = {**summarize(results), **extra}
    atomic_write_text(folder / EVAL_SUMMARY, json.dumps(jsonable(summary), indent=2) + "\n")
    shown = spread(list(range(len(results))), map_count)
    if shown and maps[shown[0]] is not None:
        save_figure(paths_figure([results[i] for i in shown], [maps[i] for i in shown], title), folder / PATHS_PNG)
    return summary


def timed_evaluation(vec_env: VecEnv, act: Callable[[dict], int], episodes: list
                     ) -> tuple[list[EpisodeResult], list[np.ndarray | None], float]:
    """:func:`evaluate_episodes` and its wall-clock seconds."""
    start = time.perf_counter()
    results, maps = evaluate_episodes(vec_env, act, episodes)
    return results, maps, time.perf_counter() - start
