"""``continual-side nav train|eval|bench``: the navigation agents' commands (the other nav commands are envs')."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import tyro

from agents.evaluate import split_episodes, spread, timed_evaluation, write_evaluation
from agents.imitation import greedy_actor
from agents.train import NavTrainConfig, load_model, read_run_config, train
from agents.vec_env import make_agent_env
from continual_side.errors import ConfigError


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


@dataclass
class NavBenchConfig:
    """Encoders x {bc, dagger, ppo} x seeds on the built-in scenes (not built yet)."""


def evaluate_run(config: NavEvalConfig) -> dict:
    """Play the run's model on the split's episodes; write episodes.csv, summary.json and paths.png."""
    trained = read_run_config(config.run_dir)
    env = make_agent_env(trained.env_config(), trained.encoder_config(), split=config.split, render=True)
    model = load_model(config.run_dir, env=env, device=config.device)
    episodes = spread(split_episodes(env), config.episodes)
    results, maps, seconds = timed_evaluation(env, greedy_actor(model), episodes)
    env.close()
    folder = Path(config.run_dir) / f"eval-{config.split}"
    title = f"{trained.method} seed {trained.seed} on {config.split}"
    return write_evaluation(folder, results, maps, title, config.maps,
                            extra={"split": config.split, "run_dir": str(config.run_dir), "wall_time_s": seconds})


def main(argv: list[str]) -> None:
    """Parse ``argv`` (the words after ``nav``) and run train, eval or bench."""
    config = tyro.cli(
        Union[
            Annotated[NavTrainConfig, tyro.conf.subcommand("train", prefix_name=False)],
            Annotated[NavEvalConfig, tyro.conf.subcommand("eval", prefix_name=False)],
            Annotated[NavBenchConfig, tyro.conf.subcommand("bench", prefix_name=False)],
        ],
        args=argv,
        prog="continual-side nav",
    )
    if isinstance(config, NavTrainConfig):
        summary = train(config)
        final = summary["final_val"] or {}
        print(f"{config.method} seed {config.seed}: val success {final.get('success', float('nan')):.3f} "
              f"SPL {final.get('spl', float('nan')):.3f} ({summary['wall_time_s']:.0f} s)")
    elif isinstance(config, NavEvalConfig):
        summary = evaluate_run(config)
        print(f"{config.split}: {summary['episodes']} episodes, success {summary['success']:.3f}, SPL {summary['spl']:.3f}, "
              f"distance to goal {summary['distance_to_goal']:.2f} m, collisions {summary['collisions']:.1f}; "
              f"written to {Path(config.run_dir) / f'eval-{config.split}'}")
    else:
        raise ConfigError("nav bench is not built yet: run nav train for each algo and encoder, then nav eval RUN_DIR --split test "
                          "(see docs/agents.md)")
