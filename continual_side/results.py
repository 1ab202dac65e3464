"""Run folders: one folder per (stream, method, seed) holding everything a run produced.

Layout: ``out_root/<stream>/<method>/seed-<n>/`` with config.json, metrics.jsonl,
acc_matrix.csv, summary.json, accuracy_over_stream.png and acc_matrix.png. A stream of dense tasks
(iTaskonomy: experiences with a ``DenseOutput``) is scored by its test losses instead: its folder
holds config.json, metrics.jsonl, loss_matrix.csv (``L[i, j]`` = test loss of task j after training
task i, each task's own loss), acc_matrix.csv (the accuracy of the classification-like tasks,
segment_semantic pixel accuracy and class_object top-1, in their columns; ``nan`` in the columns of
tasks that have no accuracy), summary.json (see :meth:`RunWriter.write_dense_summary`),
loss_curves.png and predictions.png. Every file is written atomically (temp file in the same folder
+ ``os.replace``), so a reader never sees half a file.
"""

import csv
import dataclasses
import io
import json
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from continual_side import __version__, metrics, plots
from continual_side.atomic import atomic_write_bytes, atomic_write_text
from continual_side.errors import ConfigError, ContinualSideError

CONFIG_FILE = "config.json"
EVENTS_FILE = "metrics.jsonl"
MATRIX_FILE = "acc_matrix.csv"
LOSS_MATRIX_FILE = "loss_matrix.csv"
SUMMARY_FILE = "summary.json"
CURVES_PNG = "accuracy_over_stream.png"
MATRIX_PNG = "acc_matrix.png"
LOSS_CURVES_PNG = "loss_curves.png"
PREDICTIONS_PNG = "predictions.png"
RUN_FILES = (CONFIG_FILE, EVENTS_FILE, MATRIX_FILE, SUMMARY_FILE, CURVES_PNG, MATRIX_PNG)
DENSE_RUN_FILES = (CONFIG_FILE, EVENTS_FILE, LOSS_MATRIX_FILE, MATRIX_FILE, SUMMARY_FILE, LOSS_CURVES_PNG,
                   PREDICTIONS_PNG)
MATRIX_CORNER = "after_training_on\\evaluated_on"
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

# RunConfig record keys (flattened) that do not change what a run learns: ignored when two runs'
# settings are compared, so a run can resume on another device or with another cache or loader.
NOT_SETTINGS = ("seed", "out", "tensorboard", "progress", "overwrite", "resume", "train.device",
                "train.eval_batch_size", "train.feature_cache", "train.cache_dir", "train.num_workers",
                "train.pin_memory", "stream.decode_cache", "stream.decode_cache_dir")


class RunFolderError(ContinualSideError):
    """A run folder is missing a file, holds a malformed one, or would overwrite an earlier run."""


def is_complete(path: str | Path) -> bool:
    """A run is complete once its summary.json exists: the runner writes it last, after every other file."""
    return (Path(path) / SUMMARY_FILE).is_file()


def flat_settings(record: dict[str, Any]) -> dict[str, Any]:
    """A config record flattened to dotted keys, without the keys that do not change results."""
    flat: dict[str, Any] = {}

    def walk(mapping: dict[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif f"{prefix}{key}" not in NOT_SETTINGS:
                flat[f"{prefix}{key}"] = value

    walk(jsonable(record), "")
    return flat


def differing_settings(*records: dict[str, Any]) -> list[str]:
    """Dotted setting keys whose values differ between the records."""
    settings = [flat_settings(record) for record in records]
    keys = set().union(*settings)
    return sorted(key for key in keys if len({repr(s.get(key)) for s in settings}) > 1)


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 120) -> None:
    """Render ``figure`` to PNG in memory and write it atomically to ``path``.

    :param figure: a figure from :mod:`continual_side.plots`.
    :param path: destination ``.png`` file.
    :param dpi: resolution.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types.

    Dataclasses and mappings become dicts, sequences lists, numpy/torch scalars and arrays
    Python numbers and lists, non-finite floats ``None`` (keeps every line valid JSON), anything
    else (paths, devices) its ``str``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return str(value)


def _dump_json(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, allow_nan=False) + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _path_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} cannot name a run folder: use letters, digits, '.', '_', '+', '-' "
                          "and start with a letter or digit")
    return name


def run_folder(out_root: str | Path, stream: str, method: str, seed: int) -> Path:
    """The folder of one run: ``out_root/<stream>/<method>/seed-<seed>``.

    :param out_root: root of all results.
    :param stream: stream name (e.g. ``split_cifar10``).
    :param method: method name (e.g. ``side_tuning``).
    :param seed: non-negative integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed {seed!r} must be a non-negative integer")
    return Path(out_root) / _path_name("stream", stream) / _path_name("method", method) / f"seed-{int(seed)}"


def _matrix_csv(R: np.ndarray, task_names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([MATRIX_CORNER, *task_names])
    for name, row in zip(task_names, R):
        writer.writerow([name, *(repr(float(value)) for value in row)])
    return buffer.getvalue()


def read_acc_matrix(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read an ``acc_matrix.csv`` or ``loss_matrix.csv`` written by :class:`RunWriter` (exact round trip).

    :param path: the csv file.
    :return: task names and the T x T float64 matrix (upper triangle as written, possibly NaN).
    """
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    header = rows[0] if rows else []
    names = header[1:]
    if (not names or header[0] != MATRIX_CORNER or len(rows) != len(names) + 1
            or [row[0] for row in rows[1:]] != names or any(len(row) != len(header) for row in rows)):
        raise RunFolderError(f"{path} is not a task matrix written by continual-side "
                             f"(header {MATRIX_CORNER!r}, one row and one column per task)")
    try:
        matrix = np.array([[float(value) for value in row[1:]] for row in rows[1:]], dtype=np.float64)
    except ValueError as error:
        raise RunFolderError(f"{path} holds a value that is not a number: {error}") from None
    return names, matrix


class RunWriter:
    """Writes the files of one run into ``out_root/<stream>/<method>/seed-<n>/``.

    :param out_root: root of all results.
    :param stream: stream name.
    :param method: method name.
    :param seed: non-negative integer seed.
    :param overwrite: replace everything in the folder (an earlier run, complete or not); without it a
        non-empty folder raises :class:`RunFolderError`, so results are never silently mixed.
    :param keep_events: resume the run in the folder instead: keep its files and the first
        ``keep_events`` lines of metrics.jsonl (those its checkpoint had seen).
    """

    def __init__(self, out_root: str | Path, stream: str, method: str, seed: int, *, overwrite: bool = False,
                 keep_events: int | None = None):
        self.path = run_folder(out_root, stream, method, seed)
        self.stream, self.method, self.seed = stream, method, int(seed)
        self._event_lines: list[str] = []
        self._task_names: list[str] | None = None
        if keep_events is not None:  # resuming: the folder stays, events after the checkpoint go
            lines = (self.path / EVENTS_FILE).read_text(encoding="utf-8").splitlines() \
                if (self.path / EVENTS_FILE).is_file() else []
            if len(lines) < keep_events:
                raise RunFolderError(f"{self.path / EVENTS_FILE} has {len(lines)} lines but its checkpoint "
                                     f"recorded {keep_events}; the folder was changed: rerun with --overwrite")
            self._event_lines = lines[:keep_events]
            atomic_write_text(self.path / EVENTS_FILE, "".join(line + "\n" for line in self._event_lines))
            return
        earlier = [path.name for path in self.path.iterdir()] if self.path.is_dir() else []
        if earlier and not overwrite:
            raise RunFolderError(f"{self.path} already holds a run ({', '.join(sorted(earlier))}): choose another "
                                 "output folder or pass overwrite=True (CLI: --overwrite)")
        self.path.mkdir(parents=True, exist_ok=True)
        for name in earlier:
            target = self.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()

    @property
    def events_written(self) -> int:
        """Lines of metrics.jsonl so far (a checkpoint records it)."""
        return len(self._event_lines)

    def write_config(self, config: Any) -> Path:
        """Write config.json: the run's configuration, package version and time.

        :param config: a dataclass instance or a mapping.
        """
        if not (isinstance(config, Mapping) or (dataclasses.is_dataclass(config) and not isinstance(config, type))):
            raise TypeError(f"config must be a dataclass instance or a mapping, got {type(config).__name__}")
        document = {"continual_side_version": __version__, "written_at": _now(), "stream": self.stream,
                    "method": self.method, "seed": self.seed, "config": config}
        atomic_write_text(self.path / CONFIG_FILE, _dump_json(document))
        return self.path / CONFIG_FILE

    def log(self, event: str, **fields: Any) -> None:
        """Add one JSON object ``{"event", "time", **fields}`` as a line of metrics.jsonl.

        Events used by the runner: ``train_epoch`` {experience, epoch, loss, accuracy} and
        ``eval`` {after_experience, task, accuracy}. The whole file is rewritten atomically.

        :param event: event name.
        :param fields: JSON-convertible values (see :func:`jsonable`); ``time`` is reserved.
        """
        if "time" in fields:
            raise ValueError("'time' is set by RunWriter.log; rename that field")
        record = jsonable({"event": event, "time": _now(), **fields})
        self._event_lines.append(json.dumps(record, allow_nan=False))
        atomic_write_text(self.path / EVENTS_FILE, "\n".join(self._event_lines) + "\n")

    def write_acc_matrix(self, R: np.ndarray, task_names: Sequence[str], *,
                         accuracy_tasks: Sequence[int] | None = None) -> Path:
        """Write acc_matrix.csv: header row and column of task names, all T x T entries.

        Upper-triangle entries (tasks not trained yet) are written as given (NaN allowed) but no
        summary metric reads them.

        :param R: T x T accuracy matrix, ``R[i, j]`` = accuracy on task j after training on task i.
        :param task_names: one name per task.
        :param accuracy_tasks: a dense stream's tasks that have an accuracy (their columns are checked;
            the others are written as given, NaN); None: every task has one.
        """
        if accuracy_tasks is None:
            matrix = metrics.check_accuracy_matrix(R)
        else:
            matrix = _square(R)
            if accuracy_tasks:
                metrics.accuracy_summary(matrix, list(accuracy_tasks))  # checks the columns it reads
        names = self._checked_names(task_names, matrix.shape[0])
        atomic_write_text(self.path / MATRIX_FILE, _matrix_csv(matrix, names))
        return self.path / MATRIX_FILE

    def write_loss_matrix(self, L: np.ndarray, task_names: Sequence[str]) -> Path:
        """Write loss_matrix.csv, laid out as acc_matrix.csv: ``L[i, j]`` = test loss of task j after
        training task i (above the diagonal: the loss of a head not trained yet, read by no metric).

        :param L: T x T loss matrix.
        :param task_names: one name per task.
        """
        matrix = metrics.check_loss_matrix(L)
        names = self._checked_names(task_names, matrix.shape[0])
        atomic_write_text(self.path / LOSS_MATRIX_FILE, _matrix_csv(matrix, names))
        return self.path / LOSS_MATRIX_FILE

    def _checked_names(self, task_names: Sequence[str], count: int) -> list[str]:
        names = [str(name) for name in task_names]
        if len(names) != count:
            raise ConfigError(f"need one task name per task ({count}); got {len(names)}: {names}")
        if self._task_names is not None and names != self._task_names:
            raise ConfigError(f"task names {names} differ from the ones written before, {self._task_names}")
        self._task_names = names
        return names

    def write_summary(self, R: np.ndarray, *, wall_time_s: float, trainable_parameters: int,
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write summary.json and the two PNGs (accuracy_over_stream.png, acc_matrix.png).

        Task names are those given to :meth:`write_acc_matrix`, else ``task 0``, ``task 1``, ...

        :param R: T x T accuracy matrix.
        :param wall_time_s: wall-clock seconds of the run.
        :param trainable_parameters: number of parameters the method trained.
        :param extra: more JSON-convertible values, stored under ``"extra"``.
        :return: the summary as written.
        """
        matrix = metrics.check_accuracy_matrix(R)
        names = self._summary_names(matrix.shape[0])
        summary = self._summary(names, {
            "average_accuracy": metrics.average_accuracy(matrix),
            "forgetting": metrics.forgetting(matrix),
            "backward_transfer": metrics.backward_transfer(matrix),
            "forgetting_per_task": metrics.forgetting_per_task(matrix),
            "final_accuracy_per_task": matrix[-1],
        }, wall_time_s=wall_time_s, trainable_parameters=trainable_parameters, extra=extra)
        title = f"{self.stream} / {self.method} / seed {self.seed}"
        save_figure(plots.accuracy_over_stream(matrix, names, title=f"Accuracy over the stream: {title}"),
                    self.path / CURVES_PNG)
        save_figure(plots.accuracy_matrix_heatmap(matrix, names, title=f"Accuracy matrix: {title}"),
                    self.path / MATRIX_PNG)
        atomic_write_text(self.path / SUMMARY_FILE, _dump_json(summary))
        return summary

    def _summary_names(self, count: int) -> list[str]:
        names = self._task_names or [f"task {j}" for j in range(count)]
        if len(names) != count:
            raise ConfigError(f"the task matrices were written for {len(names)} tasks but the summary's have {count}")
        return names

    def _summary(self, names: list[str], scores: dict[str, Any], *, wall_time_s: float, trainable_parameters: int,
                 extra: Mapping[str, Any] | None) -> dict[str, Any]:
        """summary.json's content: which run, its tasks, ``scores``, then the run's cost and provenance."""
        _check_run_numbers(wall_time_s, trainable_parameters)
        return jsonable({
            "stream": self.stream, "method": self.method, "seed": self.seed, "num_tasks": len(names),
            "task_names": names, **scores,
            "wall_time_s": float(wall_time_s), "trainable_parameters": int(trainable_parameters),
            "continual_side_version": __version__, "written_at": _now(), "extra": dict(extra or {}),
        })

    def write_dense_summary(self, L: np.ndarray, R: np.ndarray, accuracy_tasks: Sequence[int], *, wall_time_s: float,
                            trainable_parameters: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write a dense stream's summary.json and loss_curves.png.

        Summary: ``final_loss_per_task`` (the last row of L), ``mean_final_loss`` (its mean: a mean over
        tasks of different units, comparable between methods on one stream only), ``loss_forgetting``
        and ``loss_forgetting_per_task`` (:func:`~continual_side.metrics.loss_forgetting_per_task`:
        ``g_j = L[T-1, j] - min_{l in j..T-2} L[l, j]``, the rise of the final loss over the lowest one
        before the last step; exactly 0 for a task whose loss never changes), and ``accuracy``: for the
        classification-like tasks (``accuracy_tasks``, by name), their mean final accuracy, mean
        forgetting (Chaudhry et al.), final accuracy and forgetting per task
        (:func:`~continual_side.metrics.accuracy_summary`); None when the stream has none.

        :param L: T x T loss matrix.
        :param R: T x T accuracy matrix; only the columns ``accuracy_tasks`` are read.
        :param accuracy_tasks: indices of the tasks that have an accuracy.
        :param wall_time_s: wall-clock seconds of the run.
        :param trainable_parameters: number of parameters the method trained.
        :param extra: more JSON-convertible values, stored under ``"extra"``.
        :return: the summary as written.
        """
        losses = metrics.check_loss_matrix(L)
        names = self._summary_names(losses.shape[0])
        summary = self._summary(names, {
            "final_loss_per_task": losses[-1],
            "mean_final_loss": float(np.mean(losses[-1])),
            "loss_forgetting": metrics.loss_forgetting(losses),
            "loss_forgetting_per_task": metrics.loss_forgetting_per_task(losses),
            "accuracy": _named_accuracy(R, list(accuracy_tasks), names),
        }, wall_time_s=wall_time_s, trainable_parameters=trainable_parameters, extra=extra)
        title = f"{self.stream} / {self.method} / seed {self.seed}"
        save_figure(plots.loss_over_stream(losses, names, title=f"Test loss over the stream: {title}"),
                    self.path / LOSS_CURVES_PNG)
        atomic_write_text(self.path / SUMMARY_FILE, _dump_json(summary))
        return summary


def _square(R: np.ndarray) -> np.ndarray:
    matrix = np.asarray(R, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ConfigError(f"accuracy matrix must be a non-empty square T x T array; got shape {matrix.shape}")
    return matrix


def _named_accuracy(R: np.ndarray, tasks: list[int], names: list[str]) -> dict[str, Any] | None:
    """:func:`metrics.accuracy_summary` of ``tasks`` with task names for indices; None without such tasks."""
    if not tasks:
        return None
    scores = metrics.accuracy_summary(R, tasks)
    return {
        "tasks": [names[j] for j in tasks],
        "average_accuracy": scores["average_accuracy"],
        "forgetting": scores["forgetting"],
        "final_accuracy_per_task": {names[j]: scores[f"accuracy[{j}]"] for j in tasks},
        "forgetting_per_task": {names[j]: scores[f"forgetting[{j}]"] for j in tasks if f"forgetting[{j}]" in scores},
    }


def _check_run_numbers(wall_time_s: float, trainable_parameters: int) -> None:
    if not (math.isfinite(wall_time_s) and wall_time_s >= 0):
        raise ConfigError(f"wall_time_s {wall_time_s!r} must be a finite number of seconds >= 0")
    if isinstance(trainable_parameters, bool) or not isinstance(trainable_parameters, (int, np.integer)) \
            or trainable_parameters < 0:
        raise ConfigError(f"trainable_parameters {trainable_parameters!r} must be a non-negative integer")


@dataclasses.dataclass
class RunResult:
    """Everything :func:`load_run` reads back from a run folder.

    :param L: the loss matrix of a dense stream's run; None for a classification stream's.
    """

    path: Path
    config: dict[str, Any]
    task_names: list[str]
    R: np.ndarray
    summary: dict[str, Any]
    events: list[dict[str, Any]]
    L: np.ndarray | None = None

    @property
    def dense(self) -> bool:
        """Scored by test losses (a dense stream), not by the accuracy of every task."""
        return self.L is not None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunFolderError(f"{path} is not valid JSON ({error}); the run folder is damaged") from None


def read_events(folder: str | Path) -> list[dict]:
    """The events of a run folder's metrics.jsonl, in order; none when the file does not exist yet.

    :raises RunFolderError: a line is not valid JSON.
    """
    path = Path(folder) / EVENTS_FILE
    if not path.is_file():
        return []
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise RunFolderError(f"{path} line {number} is not valid JSON ({error})") from None
    return events


def load_run(path: str | Path) -> RunResult:
    """Read a finished run folder written by :class:`RunWriter`.

    :param path: the ``seed-<n>`` folder.
    :return: its config (the ``config`` part of config.json), task names, accuracy matrix,
        summary and events.
    """
    folder = Path(path)
    missing = [name for name in (CONFIG_FILE, EVENTS_FILE, MATRIX_FILE, SUMMARY_FILE) if not (folder / name).is_file()]
    if missing:
        raise RunFolderError(f"{folder} lacks {', '.join(missing)}: not a finished run folder "
                             "(the run may have stopped early); rerun it or point at a seed-<n> folder")
    events = read_events(folder)
    task_names, matrix = read_acc_matrix(folder / MATRIX_FILE)
    losses = None
    if (folder / LOSS_MATRIX_FILE).is_file():
        loss_names, losses = read_acc_matrix(folder / LOSS_MATRIX_FILE)
        if loss_names != task_names:
            raise RunFolderError(f"{folder}: {LOSS_MATRIX_FILE} names tasks {loss_names} but {MATRIX_FILE} "
                                 f"{task_names}; the run folder is damaged: rerun it")
    return RunResult(path=folder, config=_read_json(folder / CONFIG_FILE)["config"], task_names=task_names,
                     R=matrix, summary=_read_json(folder / SUMMARY_FILE), events=events, L=losses)
