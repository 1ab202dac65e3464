"""``continual-side nav bench``: encoders x algorithms x seeds, each trained then evaluated on a split.

Each run is ``nav train`` with the shared training options (``--algo``, ``--encoder`` and ``--seed`` set
per run) followed by ``nav eval --split`` (test by default: the unseen scenes). A run whose folder
already holds a summary.json is reused (``--overwrite`` retrains it). The comparison goes to
``<out>/nav/bench-<split>/``: table.md (success and SPL, mean ± std over seeds, with the training
wall time), results.json, success.png and spl.png (bars over seeds). Each run's own curves.png shows
val success and SPL during training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import tyro

from agents.eval_run import NavEvalConfig, evaluate_run
from agents.extractors import ENCODER_MODES, EncoderMode
from agents.train import Algo, NavTrainConfig, train
from continual_side import plots
from continual_side.atomic import atomic_write_text
from continual_side.report import Stat
from continual_side.results import SUMMARY_FILE, is_complete, jsonable, run_folder, save_figure

BENCH_TABLE = "table.md"
BENCH_RESULTS = "results.json"


@dataclass
class NavBenchConfig:
    """Encoders x {bc, dagger, ppo} x seeds: train each, evaluate it on a split, tabulate success and SPL.

    :param encoders: encoder modes to compare.
    :param algos: training algorithms.
    :param seeds: seeds per (algo, encoder): 0 .. n-1.
    :param split: where each trained agent is evaluated (test: unseen scenes).
    :param episodes: evaluate this many episodes of the split, evenly spaced (default: all).
    :param train: training options shared by every run (--algo, --encoder, --seed are set per run).
    """

    encoders: tuple[EncoderMode, ...] = ENCODER_MODES
    algos: tuple[Algo, ...] = ("bc", "dagger", "ppo")
    seeds: int = 3
    split: Literal["val", "test"] = "test"
    episodes: int | None = None
    train: Annotated[NavTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=NavTrainConfig)


def run_one(config: NavTrainConfig, split: str, episodes: int | None) -> dict:
    """Train (unless a complete run exists and --overwrite is off) and evaluate one run."""
    folder = run_folder(config.out, "nav", config.method, config.seed)
    if config.overwrite or not is_complete(folder):
        train(replace(config, overwrite=True, resume=False))
    trained = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    start = time.perf_counter()
    evaluated = evaluate_run(NavEvalConfig(run_dir=folder, split=split, episodes=episodes, device=config.device))
    return {"algo": config.algo, "encoder": config.encoder, "seed": config.seed, "success": evaluated["success"],
            "spl": evaluated["spl"], "train_s": trained["wall_time_s"], "eval_s": time.perf_counter() - start,
            "run_dir": str(folder)}


def table_markdown(rows: list[dict], split: str) -> str:
    """One line per (algo, encoder): success and SPL in percent, mean ± std over seeds, training time."""
    lines = [f"| algo | encoder | {split} success (%) | {split} SPL (%) | seeds | train time per seed (min) |",
             "| --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["algo"], row["encoder"]), []).append(row)
    for (algo, encoder), group in groups.items():
        success, spl = Stat.of([r["success"] for r in group]), Stat.of([r["spl"] for r in group])
        minutes = sum(r["train_s"] for r in group) / len(group) / 60
        lines.append(f"| {algo} | {encoder} | {success.percent()} | {spl.percent()} | {len(group)} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def run_nav_bench(config: NavBenchConfig) -> Path:
    """Every (algo, encoder, seed); returns the comparison folder."""
    rows = [run_one(replace(config.train, algo=algo, encoder=encoder, seed=seed), config.split, config.episodes)
            for algo in config.algos for encoder in config.encoders for seed in range(config.seeds)]
    folder = Path(config.train.out) / "nav" / f"bench-{config.split}"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / BENCH_TABLE, table_markdown(rows, config.split))
    atomic_write_text(folder / BENCH_RESULTS, json.dumps(jsonable({"config": config, "runs": rows}), indent=2) + "\n")
    for metric in ("success", "spl"):
        values = {f"{algo}-{encoder}": [r[metric] for r in rows if (r["algo"], r["encoder"]) == (algo, encoder)]
                  for algo in config.algos for encoder in config.encoders}
        save_figure(plots.bar_with_error(values, title=f"PointNav {metric} on {config.split}", ylabel=metric),
                    folder / f"{metric}.png")
    return folder
