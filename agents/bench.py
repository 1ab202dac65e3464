"""``continual-side nav bench``: encoders x algorithms x seeds, each trained then evaluated on a split.

Each run is ``nav train`` with the shared training options (``--algo``, ``--encoder`` and ``--seed`` set
per run) followed by ``nav eval --split`` (test by default: the unseen scenes), a run of the kind
:data:`NAV_RUN`, so the runs train on the sweep's executors (this machine's cores with ``--workers N``,
or a Ray cluster with ``--executor ray``) and are prepared as a sweep's are: a complete run (trained and
evaluated as asked) with the same settings is skipped, an incomplete PPO run resumes from its checkpoint,
a trained run only lacking its evaluation is evaluated, any other incomplete run starts again
(``--overwrite`` retrains them all). A failed run is reported with its log while the others go on. The
comparison is built from the run folders alone and goes to ``<out>/nav/bench-<split>/``: table.md (success
and SPL, mean ± std over seeds, with the training wall time), results.json, success.png and spl.png (bars
over seeds) and curves.png (val success during training: one panel per algorithm, one line per encoder,
against expert frames for imitation and environment steps for PPO). Each run's own curves.png shows its val
success and SPL during training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro
from matplotlib.figure import Figure

from agents.eval_run import NavEvalConfig, evaluate_run
from agents.evaluate import EVAL_SUMMARY, evaluation_folder
from agents.extractors import ENCODER_MODES, EncoderMode
from agents.train import Algo, NavTrainConfig, latest_checkpoint, progress_key, read_run_config, run_settings, train
from continual_side import plots
from continual_side.atomic import atomic_write_text
from continual_side.errors import ConfigError
from continual_side.executors import ExecutorConfig
from continual_side.grid import RunJob, RunKind
from continual_side.report import Stat
from continual_side.results import SUMMARY_FILE, is_complete, jsonable, read_events, run_folder, save_figure
from continual_side.sweep import RunReport, run_jobs

BENCH_TABLE = "table.md"
BENCH_RESULTS = "results.json"
BENCH_CURVES = "curves.png"
Split = Literal["val", "test"]


@dataclass
class NavBenchConfig:
    """Encoders x {bc, dagger, ppo} x seeds: train each, evaluate it on a split, tabulate success and SPL.

    :param encoders: encoder modes to compare.
    :param algos: training algorithms.
    :param seeds: seeds per (algo, encoder): 0 .. n-1.
    :param split: where each trained agent is evaluated (test: unseen scenes).
    :param episodes: evaluate this many episodes of the split, evenly spaced (default: all).
    :param train: training options shared by every run (--algo, --encoder, --seed are set per run; --overwrite
        retrains complete runs, --progress shows the bench's bar).
    :param executor: where the runs train.
    :param aggregate_only: train and evaluate nothing: compare the runs of the grid that are complete and
        name the others.
    """

    encoders: tuple[EncoderMode, ...] = ENCODER_MODES
    algos: tuple[Algo, ...] = ("bc", "dagger", "ppo")
    seeds: int = 3
    split: Split = "test"
    episodes: int | None = None
    train: Annotated[NavTrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=NavTrainConfig)
    executor: Annotated[ExecutorConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ExecutorConfig)
    aggregate_only: bool = False


@dataclass(frozen=True)
class NavBenchRun:
    """One run of a bench: an agent trained as ``nav train`` trains it, then evaluated as ``nav eval`` does.

    :param train: its training options.
    :param split: where it is evaluated.
    :param episodes: evaluate this many episodes of the split, evenly spaced (None: all).
    """

    train: NavTrainConfig
    split: Split
    episodes: int | None

    @property
    def resume(self) -> bool:
        """Whether its training continues from a PPO checkpoint (shown in its log)."""
        return self.train.resume


def _folder(run: NavBenchRun) -> Path:
    return run_folder(run.train.out, "nav", run.train.method, run.train.seed)


def _evaluation(run: NavBenchRun) -> Path:
    """The summary of the run's evaluation on its split."""
    return evaluation_folder(_folder(run), run.split) / EVAL_SUMMARY


def _train_and_evaluate(run: NavBenchRun) -> None:
    """Train the agent, unless its folder holds it already (a run resumed for its evaluation only), then evaluate it."""
    folder = _folder(run)
    if run.train.overwrite or not is_complete(folder):
        train(run.train)
    evaluate_run(NavEvalConfig(run_dir=folder, split=run.split, episodes=run.episodes, device=run.train.device))


def _record(run: NavBenchRun) -> dict:
    return run_settings(run.train)


def _recorded(folder: Path) -> dict:
    return run_settings(read_run_config(folder))


def _label(run: NavBenchRun) -> str:
    return f"nav/{run.train.method}"


def _complete(run: NavBenchRun) -> bool:
    """Trained, and evaluated after its training on the episodes asked for."""
    folder, evaluation = _folder(run), _evaluation(run)
    if not is_complete(folder) or not evaluation.is_file():
        return False
    summary = json.loads(evaluation.read_text(encoding="utf-8"))  # without requested_episodes: an older one, redone
    return ("requested_episodes" in summary and summary["requested_episodes"] == run.episodes
            and evaluation.stat().st_mtime_ns >= (folder / SUMMARY_FILE).stat().st_mtime_ns)


def _resumable(folder: Path) -> bool:
    """Trained (its evaluation is what is left) or a PPO run with a checkpoint."""
    return is_complete(folder) or latest_checkpoint(folder) is not None


def _resumed(run: NavBenchRun) -> NavBenchRun:
    """A trained run is only evaluated; PPO training continues from its checkpoint."""
    return replace(run, train=replace(run.train, resume=not is_complete(_folder(run))))


def _restarted(run: NavBenchRun) -> NavBenchRun:
    return replace(run, train=replace(run.train, overwrite=True))


NAV_RUN = RunKind(train=_train_and_evaluate, record=_record, recorded=_recorded, folder=_folder, label=_label,
                  complete=_complete, resumable=_resumable, resumed=_resumed, restarted=_restarted)


@dataclass
class NavBenchResult:
    """What the bench did with each run, and its comparison folder (None when no run is complete).

    :param runs: each run's action and error (None when it completed).
    :param folder: ``<out>/nav/bench-<split>/``, built from the complete runs' folders.
    :param left_out: with ``aggregate_only``, the runs of the grid that are not complete.
    """

    runs: list[RunReport]
    folder: Path | None
    left_out: list[RunJob] = field(default_factory=list)


def nav_jobs(config: NavBenchConfig) -> list[RunJob]:
    """Every (algo, encoder, seed) run, checked, to start from scratch (the preparation decides otherwise)."""
    if config.seeds < 1:
        raise ConfigError(f"--seeds {config.seeds} must be at least 1")
    return [RunJob(kind=NAV_RUN, config=NavBenchRun(
                train=replace(config.train, algo=algo, encoder=encoder, seed=seed, progress=False, overwrite=False,
                              resume=False),
                split=config.split, episodes=config.episodes))
            for algo in config.algos for encoder in config.encoders for seed in range(config.seeds)]


def bench_row(run: NavBenchRun) -> dict:
    """A complete run's line of results.json, read from its folder: its training summary and its evaluation."""
    trained = json.loads((_folder(run) / SUMMARY_FILE).read_text(encoding="utf-8"))
    evaluated = json.loads(_evaluation(run).read_text(encoding="utf-8"))
    return {"algo": trained["algo"], "encoder": trained["encoder"], "seed": trained["seed"],
            "success": evaluated["success"], "spl": evaluated["spl"], "train_s": trained["wall_time_s"],
            "selected_round": trained.get("selected_round"),
            "eval_s": evaluated["wall_time_s"], "run_dir": str(_folder(run))}


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The rows by (algo, encoder), in the order they come."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["algo"], row["encoder"]), []).append(row)
    return groups


def table_markdown(rows: list[dict], split: str) -> str:
    """One line per (algo, encoder): success and SPL in percent, mean ± std over seeds, the DAgger round each seed
    kept (best on val), training time."""
    lines = [f"| algo | encoder | {split} success (%) | {split} SPL (%) | seeds | DAgger round kept | "
             "train time per seed (min) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for (algo, encoder), group in _groups(rows).items():
        success, spl = Stat.of([r["success"] for r in group]), Stat.of([r["spl"] for r in group])
        kept = ", ".join(str(r.get("selected_round")) for r in group) if algo == "dagger" else "-"
        minutes = sum(r["train_s"] for r in group) / len(group) / 60
        lines.append(f"| {algo} | {encoder} | {success.percent()} | {spl.percent()} | {len(group)} | {kept} | "
                     f"{minutes:.1f} |")
    return "\n".join(lines) + "\n"


def learning_curves(rows: list[dict]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Val success during training per algorithm and encoder, from the runs' metrics.jsonl: at each evaluation,
    the mean over seeds of the x (expert frames for imitation, environment steps for PPO) and of the success
    (as many evaluations as the shortest seed has)."""
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (algo, encoder), group in _groups(rows).items():
        x_key = progress_key(algo)
        per_seed = []
        for row in group:
            evals = [event for event in read_events(row["run_dir"]) if event["event"] == "eval"]
            per_seed.append([(event[x_key], event["success"]) for event in evals])
        length = min(map(len, per_seed))
        if length:
            points = np.asarray([seed[:length] for seed in per_seed], dtype=np.float64).mean(axis=0)
            curves.setdefault(algo, {})[encoder] = (points[:, 0], points[:, 1])
    return curves


def learning_curves_figure(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> Figure:
    """One panel per algorithm of :func:`learning_curves`, one line per encoder."""
    figure = Figure(figsize=(4.5 * len(curves), 3.6))
    for index, (algo, lines) in enumerate(curves.items()):
        axis = figure.add_subplot(1, len(curves), index + 1)
        for encoder, (x, success) in lines.items():
            axis.plot(x, success, marker="o", label=encoder)
        axis.set_xlabel("environment steps" if algo == "ppo" else "expert frames")
        axis.set_ylabel("val success")
        axis.set_ylim(0, 1)
        axis.set_title(algo)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    return figure


def run_nav_bench(config: NavBenchConfig) -> NavBenchResult:
    """Train and evaluate what is missing of every (algo, encoder, seed) on the executor, then compare the
    complete runs from their folders.

    :param config: the bench.
    :return: what happened to each run (failures included: they do not stop the others) and the comparison
        folder.
    :raises RunFolderError: a complete run folder holds other settings (nothing has trained yet).
    """
    jobs, left_out = nav_jobs(config), []
    if config.aggregate_only:
        left_out = [job for job in jobs if not NAV_RUN.complete(job.config)]
        runs = [RunReport(job=job, action="skipped") for job in jobs if job not in left_out]
    else:
        runs = run_jobs(jobs, executor=config.executor, out=config.train.out, overwrite=config.train.overwrite,
                        progress=config.train.progress, desc="nav bench")
    rows = [bench_row(report.job.config) for report in runs if NAV_RUN.complete(report.job.config)]
    if not rows:
        return NavBenchResult(runs=runs, folder=None, left_out=left_out)
    folder = Path(config.train.out) / "nav" / f"bench-{config.split}"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / BENCH_TABLE, table_markdown(rows, config.split))
    atomic_write_text(folder / BENCH_RESULTS, json.dumps(jsonable({"config": config, "runs": rows}), indent=2) + "\n")
    groups = _groups(rows)
    for metric in ("success", "spl"):
        values = {f"{algo}-{encoder}": [row[metric] for row in group] for (algo, encoder), group in groups.items()}
        save_figure(plots.bar_with_error(values, title=f"PointNav {metric} on {config.split}", ylabel=metric),
                    folder / f"{metric}.png")
    save_figure(learning_curves_figure(learning_curves(rows)), folder / BENCH_CURVES)
    return NavBenchResult(runs=runs, folder=folder, left_out=left_out)
