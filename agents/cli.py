"""``continual-side nav train|eval|bench``: the navigation agents' commands (the other nav commands are envs')."""

from __future__ import annotations

from typing import Annotated, Union

import tyro

from agents.bench import BENCH_TABLE, NavBenchConfig, run_nav_bench
from agents.eval_run import NavEvalConfig, evaluate_run
from agents.evaluate import evaluation_folder
from agents.train import NavTrainConfig, train
from continual_side.cli import report_runs


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
              f"SPL {final.get('spl', float('nan')):.3f}"
              + (f" (round {summary['selected_round']})" if config.algo == "dagger" else "")
              + f" ({summary['wall_time_s']:.0f} s)")
    elif isinstance(config, NavEvalConfig):
        summary = evaluate_run(config)
        print(f"{config.split}: {summary['episodes']} episodes, success {summary['success']:.3f}, SPL {summary['spl']:.3f}, "
              f"distance to goal {summary['distance_to_goal']:.2f} m, collisions {summary['collisions']:.1f}; "
              f"written to {evaluation_folder(config.run_dir, config.split)}")
    else:
        result = run_nav_bench(config)
        if result.folder is not None:
            print((result.folder / BENCH_TABLE).read_text(encoding="utf-8"), end="")
            print(f"comparison folder: {result.folder}")
        if result.left_out:
            print("left out, not complete: " + ", ".join(job.name for job in result.left_out))
        report_runs(result.runs)
