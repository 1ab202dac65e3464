"""The comparison report of a stream: a table and figures computed from its run folders alone.

Reads the stream's run folders (complete ones only: an incomplete run is listed, never counted):
``<out>/<stream>/<method>/seed-<n>/`` and, for runs a sweep gave other option values,
``<out>/<setting>/<stream>/<method>/seed-<n>/`` (see :mod:`continual_side.grid`). Runs are grouped by
what their config.json records, not by folder names: one table per setting of the stream's own options
(different tasks or data cannot share a table), one row per method and setting of its own options.
A method with several settings in a table gets one row each, labelled with the options that differ
(``ewc lambda_=1000.0``). The table of the stream's plain folders (or its only table) goes to
``<out>/<stream>/comparison/``, any other to ``comparison/<stream options that differ>/``: table.md,
table.csv, comparison.json, curves.png (each task's accuracy over the stream, one panel per row),
average_accuracy.png and final_accuracy.png. A dense stream's runs (iTaskonomy: run folders with a
loss_matrix.csv) are compared on their test losses instead: mean final test loss, loss forgetting and
the accuracy of each classification-like task (:class:`DenseScores`); its folder holds table.md,
table.csv, comparison.json and curves.png (final test loss per task and loss forgetting, per row).
Spreads are sample standard deviations over seeds (ddof=1), shown with their seed count n; a single
seed shows std 0 with n=1. Because it needs nothing but the folders, runs spread over machines with
shared storage aggregate the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
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
_FOLDER_LABEL = re.compile(r"[A-Za-z0-9._=,+-]{1,120}")


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
class DenseScores:
    """A dense stream's scores of one row, over its seeds (see :meth:`RunWriter.write_dense_summary`).

    :param loss_matrices: one test-loss matrix L per seed.
    :param mean_final_loss: mean over tasks of the last row of L.
    :param loss_forgetting: mean rise of each task's final loss over its lowest before the last step.
    :param final_loss_per_task: each task's final test loss.
    :param accuracy: final accuracy of each classification-like task, by task name.
    """

    loss_matrices: list[np.ndarray]
    mean_final_loss: Stat
    loss_forgetting: Stat
    final_loss_per_task: list[Stat]
    accuracy: dict[str, Stat]

    @classmethod
    def of(cls, results: Sequence[RunResult]) -> DenseScores:
        matrices = [result.L for result in results]
        accuracy_tasks = (results[0].summary.get("accuracy") or {}).get("tasks", [])
        columns = {name: results[0].task_names.index(name) for name in accuracy_tasks}
        return cls(
            loss_matrices=matrices,
            mean_final_loss=Stat.of([float(np.mean(metrics.check_loss_matrix(L)[-1])) for L in matrices]),
            loss_forgetting=Stat.of([metrics.loss_forgetting(L) for L in matrices]),
            final_loss_per_task=[Stat.of([L[-1, j] for L in matrices]) for j in range(len(results[0].task_names))],
            accuracy={name: Stat.of([result.R[-1, j] for result in results]) for name, j in columns.items()},
        )


@dataclass
class MethodRow:
    """One method with one setting of its own options over the stream, summarised over seeds.

    :param label: the row's name in the table and figures: the method, followed by the options that
        differ from its other rows when the table holds several of its settings.
    :param average_accuracy: over every task; None on a dense stream (see ``dense``), as are
        ``forgetting`` and ``backward_transfer``.
    :param dense: a dense stream's loss-based scores; None on a classification stream.
    """

    method: str
    label: str
    options: dict[str, Any]
    seeds: list[int]
    run_folders: list[Path]
    matrices: list[np.ndarray]
    average_accuracy: Stat | None
    forgetting: Stat | None
    backward_transfer: Stat | None
    trainable_parameters: int
    wall_time_s: Stat
    dense: DenseScores | None = None

    @property
    def n(self) -> int:
        """Seeds summarised."""
        return len(self.seeds)


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

    @property
    def dense(self) -> bool:
        """A dense stream's comparison, on test losses."""
        return self.rows[0].dense is not None

    def row(self, label: str) -> MethodRow:
        """The row labelled ``label``, else the first row of the method ``label``."""
        return next((row for row in self.rows if row.label == label), None) or next(
            row for row in self.rows if row.method == label)


def folder_label(label: str) -> str:
    """``label`` as a folder name: itself when it holds only letters, digits and ``._=,+-`` and is short,
    else ``settings=<hash of it>`` (a value with a path or a space in it)."""
    if _FOLDER_LABEL.fullmatch(label):
        return label
    return "settings=" + hashlib.sha1(label.encode()).hexdigest()[:12]


def is_setting_folder(path: Path) -> bool:
    """A results root of one option setting (``<out>/<setting>/``): its name holds a ``=``, no stream's does."""
    return path.is_dir() and "=" in path.name


def stream_run_folders(out_root: str | Path, stream: str, *,
                       methods: Sequence[str] | None = None) -> list[Path]:
    """Every run folder of ``stream`` under ``out_root``, complete or not, its setting folders included.

    :param out_root: root folder of the run folders (``--out`` of the sweep).
    :param stream: stream folder name.
    :param methods: only these method folders; None for all.
    """
    root = Path(out_root)
    roots = [root, *sorted(p for p in root.iterdir() if is_setting_folder(p))] if root.is_dir() else []
    folders = []
    for stream_dir in (r / stream for r in roots):
        method_dirs = [p for p in stream_dir.iterdir() if p.is_dir() and p.name != COMPARISON_DIR
                       and not is_setting_folder(p)] if stream_dir.is_dir() else []
        for method_dir in sorted(method_dirs):
            if methods is None or method_dir.name in methods:
                folders += sorted((p for p in method_dir.glob(f"{SEED_PREFIX}*") if p.is_dir()),
                                  key=lambda p: int(p.name.removeprefix(SEED_PREFIX)))
    return folders


def aggregate_all(out_root: str | Path, stream: str, *,
                  methods: Sequence[str] | None = None) -> list[ComparisonTable]:
    """Rebuild every comparison of ``stream`` from its run folders only, training nothing (see the module doc).

    :param out_root: root folder of the run folders (``--out`` of the sweep).
    :param stream: stream folder name (e.g. ``split_cifar10``).
    :param methods: methods to compare, in this row order; None for every method found (registered
        methods in registry order, then the others by name).
    :return: the tables, the one in ``<out_root>/<stream>/comparison/`` first.
    :raises RunFolderError: the stream has no folder or no finished run.
    """
    folders = stream_run_folders(out_root, stream, methods=methods)
    if not folders and not (Path(out_root) / stream).is_dir():
        raise RunFolderError(f"{Path(out_root) / stream} does not exist: no runs of stream {stream!r} under "
                             f"{out_root}; run the sweep first or pass the --out it used")
    complete = [p for p in folders if is_complete(p)]
    if not complete:
        raise RunFolderError(f"no finished run of {stream} under {out_root} (methods "
                             f"{', '.join(methods or []) or 'all'}): run the sweep first")
    return compare_runs(Path(out_root) / stream, complete, unfinished=[p for p in folders if p not in complete],
                        order=methods)


def aggregate(out_root: str | Path, stream: str, *, methods: Sequence[str] | None = None) -> ComparisonTable:
    """The comparison in ``<out_root>/<stream>/comparison/`` (:func:`aggregate_all` writes the others too)."""
    return aggregate_all(out_root, stream, methods=methods)[0]


def _options(result: RunResult) -> dict[str, Any]:
    return {key.removeprefix("method."): value for key, value in flat_settings(result.config).items()
            if key.startswith("method.") and key != "method.name"}


def _method_row(method: str, label: str, results: Sequence[RunResult]) -> MethodRow:
    matrices = [result.R for result in results]
    dense = results[0].dense
    return MethodRow(
        method=method,
        label=label,
        options=_options(results[0]),
        seeds=[int(result.summary["seed"]) for result in results],
        run_folders=[result.path for result in results],
        matrices=matrices,
        average_accuracy=None if dense else Stat.of([metrics.average_accuracy(R) for R in matrices]),
        forgetting=None if dense else Stat.of([metrics.forgetting(R) for R in matrices]),
        backward_transfer=None if dense else Stat.of([metrics.backward_transfer(R) for R in matrices]),
        trainable_parameters=max(int(result.summary["trainable_parameters"]) for result in results),
        wall_time_s=Stat.of([result.summary["wall_time_s"] for result in results]),
        dense=DenseScores.of(results) if dense else None,
    )


def _differing_values(settings: Sequence[dict[str, Any]]) -> list[str]:
    """Per settings dict, its ``key=value`` pairs for the keys whose values differ between them, joined by ``,``."""
    keys = [key for key in dict.fromkeys(key for s in settings for key in s)
            if len({repr(s.get(key)) for s in settings}) > 1]
    return [",".join(f"{key}={s.get(key)}" for key in keys) for s in settings]


def _method_name(result: RunResult) -> str:
    return result.config.get("method", {}).get("name") or result.path.parent.name


def _rows(results: Sequence[RunResult]) -> list[MethodRow]:
    """One row per method and setting of its options, labelled by the options that tell its rows apart."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((_method_name(result), json.dumps(_options(result), sort_keys=True)), []).append(result)
    rows = []
    for method in dict.fromkeys(method for method, _ in groups):
        settings = [(key, members) for key, members in groups.items() if key[0] == method]
        labels = _differing_values([_options(members[0]) for _, members in settings])
        rows += [_method_row(method, f"{method} {label}" if len(settings) > 1 else method, members)
                 for label, (_, members) in zip(labels, settings)]
    return rows


def compare_runs(stream_dir: Path, complete: Sequence[Path], *, unfinished: Sequence[Path] = (),
                 order: Sequence[str] | None = None) -> list[ComparisonTable]:
    """Summarise complete run folders of one stream and write their comparisons (see the module doc).

    :param stream_dir: ``<out>/<stream>``; the tables go to its ``comparison/`` folder.
    :param complete: complete run folders of the stream (plain and setting folders alike).
    :param unfinished: incomplete run folders, listed in the first table but not counted.
    :param order: methods in row order; None: registered methods in registry order, then by name.
    :return: the tables, the one of the plain run folders (or the only one) first.
    """
    order = list(order or METHODS)
    results = sorted((load_run(path) for path in complete), key=lambda r: (  # a method's plain folders first
        order.index(_method_name(r)) if _method_name(r) in order else len(order), _method_name(r),
        r.path.parent.parent != stream_dir, str(r.path)))
    by_stream: dict[str, list[RunResult]] = {}
    for result in results:
        stream_options = flat_settings({"stream": result.config.get("stream", {})})
        by_stream.setdefault(json.dumps(stream_options, sort_keys=True), []).append(result)
    groups = sorted(by_stream.values(), key=lambda members: not any(
        r.path.parent.parent == stream_dir for r in members))  # the plain folders' table first
    labels = _differing_values([flat_settings(members[0].config.get("stream", {})) for members in groups])
    return [_table(stream_dir, members, stream_dir / COMPARISON_DIR / folder_label(label) if index else
                   stream_dir / COMPARISON_DIR, list(unfinished) if not index else [])
            for index, (label, members) in enumerate(zip(labels, groups))]


def _table(stream_dir: Path, results: Sequence[RunResult], folder: Path, unfinished: list[Path]) -> ComparisonTable:
    task_names = results[0].task_names
    mismatched = [str(result.path) for result in results if result.task_names != task_names]
    kinds = {result.dense for result in results}
    if len(kinds) > 1:
        raise RunFolderError(f"runs of {stream_dir} mix loss-scored (loss_matrix.csv) and accuracy-scored run "
                             "folders; a stream is one or the other: move the foreign runs to another --out")
    if mismatched:
        raise RunFolderError(f"runs of {stream_dir} do not share the tasks {task_names}: {', '.join(mismatched)}; "
                             "move runs of another task split to another --out")
    # the stream's and the shared training settings must agree across all rows; a method's own tell rows apart
    shared = [{key: value for key, value in result.config.items() if key != "method"} for result in results]
    differing = differing_settings(*shared)
    table = ComparisonTable(
        stream=stream_dir.name,
        task_names=task_names,
        rows=_rows(results),
        folder=folder,
        settings={key: value for key, value in flat_settings(shared[0]).items() if key not in differing},
        differing_settings=differing,
        unfinished=unfinished,
    )
    write_comparison(table)
    return table


CSV_COLUMNS = (
    "method", "n_seeds", "average_accuracy_mean", "average_accuracy_std", "forgetting_mean", "forgetting_std",
    "bwt_mean", "bwt_std", "trainable_parameters_per_task", "wall_time_mean_s",
)


def _accuracy_tasks(table: ComparisonTable) -> list[str]:
    return list(table.rows[0].dense.accuracy)


def dense_csv_columns(table: ComparisonTable) -> list[str]:
    """A dense table's CSV columns: losses, then each classification-like task's accuracy mean and std."""
    return ["method", "n_seeds", "mean_final_loss_mean", "mean_final_loss_std", "loss_forgetting_mean",
            "loss_forgetting_std", *(f"{task}_accuracy_{part}" for task in _accuracy_tasks(table)
                                     for part in ("mean", "std")),
            "trainable_parameters_per_task", "wall_time_mean_s"]


def _dense_table_csv(table: ComparisonTable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(dense_csv_columns(table))
    for row in table.rows:
        stats = [row.dense.mean_final_loss, row.dense.loss_forgetting,
                 *(row.dense.accuracy[task] for task in _accuracy_tasks(table))]
        writer.writerow([row.label, row.n, *(repr(value) for stat in stats for value in (stat.mean, stat.std)),
                         row.trainable_parameters, repr(row.wall_time_s.mean)])
    return buffer.getvalue()


def table_csv(table: ComparisonTable) -> str:
    """The table as CSV: fractions (not percentages) at full precision, one row per method."""
    if table.dense:
        return _dense_table_csv(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table.rows:
        writer.writerow([
            row.label, row.average_accuracy.n,
            *(repr(value) for stat in (row.average_accuracy, row.forgetting, row.backward_transfer)
              for value in (stat.mean, stat.std)),
            row.trainable_parameters, repr(row.wall_time_s.mean),
        ])
    return buffer.getvalue()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _dense_table_lines(table: ComparisonTable) -> list[str]:
    tasks = _accuracy_tasks(table)
    lines = [
        f"Methods over `{table.stream}` ({len(table.task_names)} tasks, scored by test loss): mean ± sample std "
        "(ddof=1) over n seeds; a single seed shows ± 0 with n=1. Mean final test loss: the mean over tasks of "
        "each task's test loss after the whole stream (each task's own loss, in its own units: compare methods, "
        "not tasks). Loss forgetting: the mean over every task but the last of how far its final loss rose above "
        "the lowest it had before the last step (0: nothing forgotten).",
        "",
        "| method | n | mean final test loss | loss forgetting | "
        + "".join(f"{task} accuracy (%) | " for task in tasks) + "trainable parameters per task | time per run |",
        "| --- | ---: | ---: | ---: | " + "---: | " * len(tasks) + "---: | ---: |",
    ]
    for row in table.rows:
        scores = row.dense
        loss, forgetting = scores.mean_final_loss, scores.loss_forgetting
        lines.append(f"| {row.label} | {row.n} | {loss.mean:.4f} ± {loss.std:.4f} "
                     f"| {forgetting.mean:+.4f} ± {forgetting.std:.4f} | "
                     + "".join(f"{scores.accuracy[task].percent()} | " for task in tasks)
                     + f"{row.trainable_parameters:,} | {_duration(row.wall_time_s.mean)} |")
    return lines


def table_markdown(table: ComparisonTable) -> str:
    """The table as Markdown: percentages, mean ± sample std over n seeds, and what each method trains."""
    if table.dense:
        lines = _dense_table_lines(table)
    else:
        lines = [
            f"Methods over `{table.stream}` ({len(table.task_names)} tasks): mean ± sample std (ddof=1) over n "
            "seeds; a single seed shows ± 0.00 with n=1.",
            "",
            "| method | n | average accuracy (%) | forgetting (%) | BWT (%) | trainable parameters per task "
            "| time per run |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in table.rows:
            lines.append(f"| {row.label} | {row.average_accuracy.n} | {row.average_accuracy.percent()} "
                         f"| {row.forgetting.percent()} | {row.backward_transfer.percent(sign=True)} "
                         f"| {row.trainable_parameters:,} | {_duration(row.wall_time_s.mean)} |")
    trained = [(method, METHODS[method].trained if method in METHODS else None)
               for method in dict.fromkeys(row.method for row in table.rows)]
    lines += ["", "Trained per task:"] + [f"- {method}: {what}" for method, what in trained if what]
    options = [f"- {row.label}: " + ", ".join(f"{key}={value}" for key, value in row.options.items())
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
    """Write table.md, table.csv, comparison.json and the PNGs (three; curves.png only for a dense stream)
    into ``table.folder``."""
    table.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(table.folder / "table.md", table_markdown(table))
    atomic_write_text(table.folder / "table.csv", table_csv(table))
    document = json.dumps(jsonable(table), indent=2, allow_nan=False) + "\n"
    if table.dense:
        final_losses = {row.label: [L[-1] for L in row.dense.loss_matrices] for row in table.rows}
        forgetting = {row.label: [metrics.loss_forgetting(L) for L in row.dense.loss_matrices] for row in table.rows}
        save_figure(plots.dense_comparison(final_losses, forgetting, table.task_names, stream=table.stream),
                    table.folder / "curves.png")
        atomic_write_text(table.folder / "comparison.json", document)
        return
    matrices = {row.label: row.matrices for row in table.rows}
    save_figure(plots.per_task_curves(matrices, table.task_names, stream=table.stream), table.folder / "curves.png")
    save_figure(plots.method_curves(matrices, title=f"Average accuracy over the {table.stream} stream"),
                table.folder / "average_accuracy.png")
    finals = {row.label: [metrics.average_accuracy(R) for R in row.matrices] for row in table.rows}
    save_figure(plots.bar_with_error(finals, title=f"Final average accuracy on {table.stream}"),
                table.folder / "final_accuracy.png")
    atomic_write_text(table.folder / "comparison.json", document)
