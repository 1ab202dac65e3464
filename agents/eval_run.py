"""``continual-side nav eval RUN_DIR``: a trained run's model on every episode of a split, written into
``RUN_DIR/eval-<split>/`` (see :mod:`agents.evaluate` for the files)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from agents.evaluate import evaluation_folder, split_episodes, spread, timed_evaluation, write_evaluation
from agents.imitation import greedy_actor
from agents.train import load_model, read_run_config
from agents.vec_env import make_agent_env


@dataclass
class NavEvalConfig:
    """Evaluate a trained agent on every episode of a split once; writes <run>/eval-<split>/.

    :param run_dir: a run folder of ``nav train`` (runs/nav/<algo>-<encoder>/seed-<n>).
    :param split: val or test (unseen scenes).
    :param episodes: evaluate this many episodes, evenly spaced over the split (default: all).
    :param maps: top-down maps in paths.png (evenly spaced over the episodes).
    :param device: torch device.
    """

    run_dir: tyro.conf.Positional[Path]
    split: Literal["val", "test"] = "val"
    episodes: int | None = None
    maps: int = 24
    device: str = "cpu"


def evaluate_run(config: NavEvalConfig) -> dict:
    """Play the run's model on the split's episodes; write episodes.csv, summary.json (the means, and the
    episodes asked for, None for all, so that a bench knows whether it can reuse them) and paths.png."""
    trained = read_run_config(config.run_dir)
    env = make_agent_env(trained.env_config(), trained.encoder_config(), split=config.split, render=True)
    model = load_model(config.run_dir, env=env, device=config.device)
    episodes = spread(split_episodes(env), config.episodes)
    results, maps, seconds = timed_evaluation(env, greedy_actor(model), episodes)
    env.close()
    folder = evaluation_folder(config.run_dir, config.split)
    title = f"{trained.method} seed {trained.seed} on {config.split}"
    return write_evaluation(folder, results, maps, title, config.maps,
                            extra={"split": config.split, "requested_episodes": config.episodes,
                                   "run_dir": str(config.run_dir), "wall_time_s": seconds})
