"""Compare continual-learning methods over one task stream: every method x every seed, then one table.

Each run is an ordinary run folder (``<out>/<stream>/<method>/seed-<n>/``, see
:mod:`continual_side.runner`); a sweep skips runs that already finished, so an interrupted sweep
resumes where it stopped. The comparison goes to ``<out>/<stream>/comparison/``: table.md,
table.csv, comparison.json, curves.png (each task's accuracy over the stream, one panel per method),
average_accuracy.png and final_accuracy.png. Spreads are sample standard deviations over seeds
(ddof=1), shown with their seed count n; a single seed shows std 0 with n=1.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from continual_side import metrics, plots, runner
from continual_side.errors import ConfigError
from continual_side.methods import METHODS, MethodConfig
from continual_side.results import (
    SUMMARY_FILE,
    RunFolderError,
    RunResult,
    atomic_write_text,
    jsonable,
    load_run,
    run_folder,
    save_figure,
)
from continual_side.runner import RunConfig, StreamConfig

ALL_METHODS = "all"
COMPARISON_DIR = "comparison"
SEED_PREFIX = "seed-"
# RunConfig fields (flattened) that do not change what a run learns: ignored when comparing settings,
# so a sweep can resume on another device.
NOT_SETTINGS = ("method", "seed", "out", "tensorboard", "progress", "overwrite", "train.device",
                "train.eval_batch_size")


@dataclass
class BenchConfig:
    """Every method over one stream with several seeds, then a comparison table and figures.

    :param methods: registered method names, or ``all`` for every registered method.
    :param seeds: number of seeds per method (seeds 0 .. n-1).
    :param out: root folder of the run folders; the comparison goes to ``<out>/<stream>/comparison/``.
    :param tensorboard: also log each run to TensorBoard in its run folder.
    :param overwrite: retrain runs that already finished (otherwise they are reused, so a sweep resumes).
    :param progress: show progress bars.
    :param aggregate_only: train nothing: rebuild the comparison from the finished run folders of the
        stream (with ``all``, every method folder found there).
    """

    data: Annotated[StreamConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=StreamConfig)
    train: Annotated[MethodConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=MethodConfig)
    methods: tuple[str, ...] = (ALL_METHODS,)
    seeds: int = 3
    out: str = "runs"
    tensorboard: bool = False
    overwrite: bool = False
    progress: bool = True
    aggregate_only: bool = False


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; 0.0 for one value) of ``n`` per-seed values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        array = np.asarray(values, dtype=np.float64)
        mean, std = metrics.mean_and_std(array)
        return cls(mean=float(mean), std=float(std), n=int(array.size))

    def percent(self, sign: bool = False) -> str:
        return f"{100 * self.mean:{'+' if sign else ''}.2f} ± {100 * self.std:.2f}"


@dataclass
class MethodRow:
    """One method's runs over the stream, summarised over seeds."""

    method: str
    seeds: list[int]
    run_folders: list[Path]
    matrices: list[np.ndarray]
    average_accuracy: Stat
    forgetting: Stat
    backward_transfer: Stat
    trainable_parameters: int
    wall_time_s: Stat


@dataclass
class ComparisonTable:
    """The comparison of methods over one stream, as written to ``folder``.

    :param settings: the runs' common configuration (stream and hyper-parameters).
    :param differing_settings: dotted configuration keys whose values differ between the runs.
    :param unfinished: run folders without a summary (stopped early), left out of the table.
    """

    stream: str
    task_names: list[str]
    rows: list[MethodRow]
    folder: Path
    settings: dict[str, Any]
    differing_settings: list[str]
    unfinished: list[Path]

    def row(self, method: str) -> MethodRow:
        return next(row for row in self.rows if row.method == method)


def resolve_methods(names: Sequence[str]) -> list[str]:
    """Expand ``all`` to every registered method and check the other names, keeping the given order.

    :param names: method names and/or ``all``.
    :raises ConfigError: no names, or a name that is not registered.
    """
    if not names:
        raise ConfigError(f"no method given; pass --methods {ALL_METHODS} or some of: {', '.join(METHODS)}")
    unknown = [name for name in names if name != ALL_METHODS and name not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from: "
                          f"{', '.join(METHODS)} (or {ALL_METHODS})")
    expanded = [method for name in names for method in (METHODS if name == ALL_METHODS else [name])]
    return list(dict.fromkeys(expanded))


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json ``config`` part, flattened, without the fields that do not change results."""
    return {key: value for key, value in _flat(jsonable(config)).items() if key not in NOT_SETTINGS}


def _differing(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = set().union(*settings)
    return sorted(key for key in keys if len({repr(s.get(key)) for s in settings}) > 1)


def _reusable(path: Path, config: RunConfig) -> bool:
    """True when ``path`` holds a finished run of ``config``; a different finished run is an error."""
    if not (path / SUMMARY_FILE).is_file():
        return False
    differing = _differing([_settings(load_run(path).config), _settings(asdict(config))])
    if differing:
        raise ConfigError(f"{path} holds a finished run with other settings ({', '.join(differing)}): pass "
                          "--overwrite to retrain it or choose another --out")
    return True


def run_bench(config: BenchConfig) -> ComparisonTable:
    """Train every method over the stream for every seed (reusing finished runs), then compare them.

    :param config: the sweep; with ``aggregate_only`` nothing is trained (see :func:`aggregate`).
    :return: the comparison table, also written to ``<out>/<stream>/comparison/``.
    """
    if config.aggregate_only:
        only = None if ALL_METHODS in config.methods else config.methods
        return aggregate(config.out, config.data.stream, methods=only)
    methods = resolve_methods(config.methods)
    if config.seeds < 1:
        raise ConfigError(f"--seeds {config.seeds} must be at least 1")
    jobs = [(method, seed) for method in methods for seed in range(config.seeds)]
    runs: dict[str, list[Path]] = {method: [] for method in methods}
    with tqdm(jobs, desc="bench (method x seed)", unit="run", disable=not config.progress) as bar:
        for method, seed in bar:
            bar.set_postfix_str(f"{method} seed {seed}")
            run_config = RunConfig(data=config.data, method=method, train=config.train, seed=seed, out=config.out,
                                   tensorboard=config.tensorboard, progress=config.progress, overwrite=True)
            path = run_folder(config.out, config.data.stream, method, seed)
            if config.overwrite or not _reusable(path, run_config):
                path = runner.run(run_config).run_dir
            runs[method].append(path)
    return _compare(Path(config.out) / config.data.stream, runs, unfinished=[])


def aggregate(out_root: str | Path, stream: str, *, methods: Sequence[str] | None = None) -> ComparisonTable:
    """Rebuild the comparison of ``stream`` from its finished run folders only, training nothing.

    :param out_root: root folder of the run folders (``--out`` of the sweep).
    :param stream: stream folder name (e.g. ``split_cifar10``).
    :param methods: method folders to compare; None for every method folder of the stream (registered
        methods in registry order, then the others by name).
    :return: the comparison table, also written to ``<out_root>/<stream>/comparison/``.
    :raises RunFolderError: the stream folder, a named method or any finished run is missing.
    """
    stream_dir = Path(out_root) / stream
    if not stream_dir.is_dir():
        raise RunFolderError(f"{stream_dir} does not exist: no runs of stream {stream!r} under {out_root}; "
                             "run the sweep first or pass the --out it used")
    if methods is None:
        found = {p.name for p in stream_dir.iterdir() if p.is_dir() and p.name != COMPARISON_DIR}
        methods = [m for m in METHODS if m in found] + sorted(found - set(METHODS))
    runs: dict[str, list[Path]] = {}
    unfinished = []
    for method in methods:
        seed_dirs = sorted((p for p in (stream_dir / method).glob(f"{SEED_PREFIX}*") if p.is_dir()),
                           key=lambda p: int(p.name.removeprefix(SEED_PREFIX)))
        finished = [p for p in seed_dirs if (p / SUMMARY_FILE).is_file()]
        unfinished += [p for p in seed_dirs if p not in finished]
        if finished:
            runs[method] = finished
    if not runs:
        raise RunFolderError(f"no finished run under {stream_dir} (methods {', '.join(methods) or 'none'}): "
                             "run the sweep first")
    return _compare(stream_dir, runs, unfinished=unfinished)


def _method_row(method: str, results: Sequence[RunResult]) -> MethodRow:
    matrices = [result.R for result in results]
    return MethodRow(
        method=method,
        seeds=[int(result.summary["seed"]) for result in results],
        run_folders=[result.path for result in results],
        matrices=matrices,
        average_accuracy=Stat.of([metrics.average_accuracy(R) for R in matrices]),
        forgetting=Stat.of([metrics.forgetting(R) for R in matrices]),
        backward_transfer=Stat.of([metrics.backward_transfer(R) for R in matrices]),
        trainable_parameters=max(int(result.summary["trainable_parameters"]) for result in results),
        wall_time_s=Stat.of([result.summary["wall_time_s"] for result in results]),
    )


def _compare(stream_dir: Path, runs: Mapping[str, Sequence[Path]], *, unfinished: list[Path]) -> ComparisonTable:
    results = {method: [load_run(path) for path in paths] for method, paths in runs.items()}
    every = [result for method_results in results.values() for result in method_results]
    task_names = every[0].task_names
    mismatched = [str(result.path) for result in every if result.task_names != task_names]
    if mismatched:
        raise RunFolderError(f"runs of {stream_dir} do not share the tasks {task_names}: {', '.join(mismatched)}; "
                             "move runs of another task split to another --out")
    settings = [_settings(result.config) for result in every]
    differing = _differing(settings)
    table = ComparisonTable(
        stream=stream_dir.name,
        task_names=task_names,
        rows=[_method_row(method, method_results) for method, method_results in results.items()],
        folder=stream_dir / COMPARISON_DIR,
        settings={key: value for key, value in settings[0].items() if key not in differing},
        differing_settings=differing,
        unfinished=unfinished,
    )
    write_comparison(table)
    return table


CSV_COLUMNS = (
    "method", "n_seeds", "average_accuracy_mean", "average_accuracy_std", "forgetting_mean", "forgetting_std",
    "bwt_mean", "bwt_std", "trainable_parameters_per_task", "wall_time_mean_s",
)


def table_csv(table: ComparisonTable) -> str:
    """The table as CSV: fractions (not percentages) at full precision, one row per method."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        writer.writerow([
            row.method, row.average_accuracy.n,
            *(repr(value) for stat in (row.average_accuracy, row.forgetting, row.backward_transfer)
              for value in (stat.mean, stat.std)),
            row.trainable_parameters, repr(row.wall_time_s.mean),
        ])
    return buffer.getvalue()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def table_markdown(table: ComparisonTable) -> str:
    """The table as Markdown: percentages, mean ± sample std over n seeds, and what each method trains."""
    lines = [
        f"Methods over `{table.stream}` ({len(table.task_names)} tasks): mean ± sample std (ddof=1) over n seeds; "
        "a single seed shows ± 0.00 with n=1.",
        "",
        "| method | n | average accuracy (%) | forgetting (%) | BWT (%) | trainable parameters per task "
        "| time per run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in table.rows:
        lines.append(f"| {row.method} | {row.average_accuracy.n} | {row.average_accuracy.percent()} "
                     f"| {row.forgetting.percent()} | {row.backward_transfer.percent(sign=True)} "
                     f"| {row.trainable_parameters:,} | {_duration(row.wall_time_s.mean)} |")
    trained = [(row.method, getattr(METHODS.get(row.method), "TRAINED_PER_TASK", None)) for row in table.rows]
    lines += ["", "Trained per task:"] + [f"- {method}: {what}" for method, what in trained if what]
    lines += ["", "Settings: " + ", ".join(f"{key}={value}" for key, value in sorted(table.settings.items()))]
    if table.differing_settings:
        lines.append(f"**Runs differ in: {', '.join(table.differing_settings)}** (see comparison.json).")
    if table.unfinished:
        lines.append(f"Unfinished runs left out: {', '.join(str(path) for path in table.unfinished)}.")
    return "\n".join(lines) + "\n"


def per_task_curves(table: ComparisonTable) -> Figure:
    """One panel per method: each task's accuracy over the stream (mean over seeds, band = sample std).

    These are the side-tuning paper's incremental-learning curves, side by side for every method.
    """
    count = len(table.task_names)
    columns = min(3, len(table.rows))
    lines = math.ceil(len(table.rows) / columns)
    figure = Figure(figsize=(4.2 * columns + 1.8, 3.4 * lines), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(lines, columns, sharey=True, squeeze=False).ravel()
    colours = colormaps["tab20" if count > 10 else "tab10"]
    for axes, row in zip(panels, table.rows):
        for j, name in enumerate(table.task_names):
            mean, std = metrics.mean_and_std(np.stack([metrics.accuracy_curves(R)[j] for R in row.matrices]))
            steps = np.arange(j + 1, count + 1)
            axes.plot(steps, mean, marker="o", markersize=3, color=colours(j % colours.N), label=name)
            axes.fill_between(steps, mean - std, mean + std, color=colours(j % colours.N), alpha=0.15)
        axes.set_title(f"{row.method} (n={len(row.matrices)})")
        axes.set_xticks(range(1, count + 1))
        axes.set_xlim(0.7, count + 0.3)
        axes.set_ylim(0.0, 1.02)
        axes.grid(alpha=0.3)
    for axes in panels[len(table.rows):]:
        axes.set_visible(False)
    for axes in panels[::columns]:
        axes.set_ylabel("test accuracy")
    for axes in panels[len(table.rows) - columns:len(table.rows)]:
        axes.set_xlabel("tasks learned")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="task", loc="outside right center", fontsize="small")
    figure.suptitle(f"Accuracy of each task over the {table.stream} stream (mean over seeds ± std)")
    return figure


def write_comparison(table: ComparisonTable) -> None:
    """Write table.md, table.csv, comparison.json and the three PNGs into ``table.folder``."""
    table.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(table.folder / "table.md", table_markdown(table))
    atomic_write_text(table.folder / "table.csv", table_csv(table))
    save_figure(per_task_curves(table), table.folder / "curves.png")
    matrices = {row.method: row.matrices for row in table.rows}
    save_figure(plots.method_curves(matrices, title=f"Average accuracy over the {table.stream} stream"),
                table.folder / "average_accuracy.png")
    finals = {row.method: [metrics.average_accuracy(R) for R in row.matrices] for row in table.rows}
    save_figure(plots.bar_with_error(finals, title=f"Final average accuracy on {table.stream}"),
                table.folder / "final_accuracy.png")
    document = json.dumps(jsonable(table), indent=2, allow_nan=False) + "\n"
    atomic_write_text(table.folder / "comparison.json", document)
