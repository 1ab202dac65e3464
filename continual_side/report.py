"""The comparison report of a stream: a table and figures computed from its run folders alone.

Reads ``<out>/<stream>/<method>/seed-<n>/`` folders (complete ones only: an incomplete run is listed,
never counted) and writes ``<out>/<stream>/comparison/``: table.md, table.csv, comparison.json,
curves.png (each task's accuracy over the stream, one panel per method), average_accuracy.png and
final_accuracy.png. Spreads are sample standard deviations over seeds (ddof=1), shown with their
seed count n; a single seed shows std 0 with n=1. Because it needs nothing but the folders, runs
spread over machines with shared storage aggregate the same way.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from continual_side import metrics, plots
from continual_side.methods import METHODS
from continual_side.results import (
    RunFolderError,
    RunResult,
    atomic_write_text,
    differing_settings,
    flat_settings,
    is_complete,
    jsonable,
    load_run,
    save_figure,
)

COMPARISON_DIR = "comparison"
SEED_PREFIX = "seed-"


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
    options: dict[str, Any]
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
        finished = [p for p in seed_dirs if is_complete(p)]
        unfinished += [p for p in seed_dirs if p not in finished]
        if finished:
            runs[method] = finished
    if not runs:
        raise RunFolderError(f"no finished run under {stream_dir} (methods {', '.join(methods) or 'none'}): "
                             "run the sweep first")
    return compare(stream_dir, runs, unfinished=unfinished)


def _method_row(method: str, results: Sequence[RunResult]) -> MethodRow:
    matrices = [result.R for result in results]
    options = {key.removeprefix("method."): value for key, value in flat_settings(results[0].config).items()
               if key.startswith("method.") and key != "method.name"}
    return MethodRow(
        method=method,
        options=options,
        seeds=[int(result.summary["seed"]) for result in results],
        run_folders=[result.path for result in results],
        matrices=matrices,
        average_accuracy=Stat.of([metrics.average_accuracy(R) for R in matrices]),
        forgetting=Stat.of([metrics.forgetting(R) for R in matrices]),
        backward_transfer=Stat.of([metrics.backward_transfer(R) for R in matrices]),
        trainable_parameters=max(int(result.summary["trainable_parameters"]) for result in results),
        wall_time_s=Stat.of([result.summary["wall_time_s"] for result in results]),
    )


def compare(stream_dir: Path, runs: Mapping[str, Sequence[Path]], *, unfinished: list[Path]) -> ComparisonTable:
    """Summarise complete run folders per method and write the comparison into ``stream_dir/comparison``.

    :param stream_dir: ``<out>/<stream>``.
    :param runs: each method's complete run folders.
    :param unfinished: incomplete run folders, listed in the table but not counted.
    """
    results = {method: [load_run(path) for path in paths] for method, paths in runs.items()}
    every = [result for method_results in results.values() for result in method_results]
    task_names = every[0].task_names
    mismatched = [str(result.path) for result in every if result.task_names != task_names]
    if mismatched:
        raise RunFolderError(f"runs of {stream_dir} do not share the tasks {task_names}: {', '.join(mismatched)}; "
                             "move runs of another task split to another --out")
    # the stream's and the shared training settings must agree across all runs, a method's own only within it
    shared = [{key: value for key, value in result.config.items() if key != "method"} for result in every]
    differing = differing_settings(*shared) + sorted({key for method_results in results.values() for key in
                                                      differing_settings(*(r.config for r in method_results))})
    settings = [flat_settings(config) for config in shared]
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
    trained = [(row.method, METHODS[row.method].trained if row.method in METHODS else None) for row in table.rows]
    lines += ["", "Trained per task:"] + [f"- {method}: {what}" for method, what in trained if what]
    options = [f"- {row.method}: " + ", ".join(f"{key}={value}" for key, value in row.options.items())
               for row in table.rows if row.options]
    if options:
        lines += ["", "Method options:", *options]
    lines += ["", "Settings: " + ", ".join(f"{key}={value}" for key, value in sorted(table.settings.items()))]
    if table.differing_settings:
        lines.append(f"**Runs differ in: {', '.join(table.differing_settings)}** (see comparison.json).")
    if table.unfinished:
        lines.append(f"Unfinished runs left out: {', '.join(str(path) for path in table.unfinished)}.")
    return "\n".join(lines) + "\n"


def write_comparison(table: ComparisonTable) -> None:
    """Write table.md, table.csv, comparison.json and the three PNGs into ``table.folder``."""
    table.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(table.folder / "table.md", table_markdown(table))
    atomic_write_text(table.folder / "table.csv", table_csv(table))
    matrices = {row.method: row.matrices for row in table.rows}
    save_figure(plots.per_task_curves(matrices, table.task_names, stream=table.stream), table.folder / "curves.png")
    save_figure(plots.method_curves(matrices, title=f"Average accuracy over the {table.stream} stream"),
                table.folder / "average_accuracy.png")
    finals = {row.method: [metrics.average_accuracy(R) for R in row.matrices] for row in table.rows}
    save_figure(plots.bar_with_error(finals, title=f"Final average accuracy on {table.stream}"),
                table.folder / "final_accuracy.png")
    document = json.dumps(jsonable(table), indent=2, allow_nan=False) + "\n"
    atomic_write_text(table.folder / "comparison.json", document)
