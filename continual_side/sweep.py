"""Sweeps: a grid of runs trained on a local pool or a Ray cluster, then each stream's comparison.

A sweep is every stream x method x seed x setting of the grid's options (:mod:`continual_side.grid`),
each an ordinary run folder. Before anything trains, every run folder is looked at: a complete run
with the same settings is skipped, an incomplete one continues from its checkpoint (or starts again
when it stopped before its first checkpoint), a complete one with other settings stops the sweep
with a hint. The rest train on the executor (:mod:`continual_side.executors`); a run that fails is
reported with its error and log while the others go on, so rerunning the same command finishes only
what is missing. Last, each stream's comparison (:mod:`continual_side.report`) is computed from the
run folders. ``bench`` is a sweep over one stream without a grid. :func:`run_jobs` (prepare, train,
report) serves any kind of run: ``nav bench`` trains its navigation runs with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from continual_side.errors import ConfigError
from continual_side.executors import ExecutorConfig, execute
from continual_side.grid import RunJob, method_suits_stream, stream_jobs, typed_axes
from continual_side.methods import METHODS, TrainConfig
from continual_side.methods.registry import check_method_runs_on
from continual_side.report import ComparisonTable, aggregate, compare_runs
from continual_side.results import RunFolderError, differing_settings, is_complete
from continual_side.runner import RunConfig
from continual_side.streams import get_stream

ALL_METHODS = "all"


@dataclass
class BenchConfig:
    """Every method over one stream with several seeds, then a comparison table and figures.

    :param stream: a registered stream.
    :param stream_options: that stream's options; None for its defaults.
    :param methods: registered method names, or ``all`` for every registered method that runs on the stream.
    :param method_options: options of some of the methods, by name (the others use their defaults).
    :param train: training settings shared by every run.
    :param seeds: number of seeds per method (seeds 0 .. n-1).
    :param out: root folder of the run folders; the comparison goes to ``<out>/<stream>/comparison/``.
    :param tensorboard: also log each run to TensorBoard in its run folder.
    :param overwrite: retrain runs that already finished (otherwise they are reused, so a sweep resumes).
    :param progress: show progress bars.
    :param aggregate_only: train nothing: rebuild the comparison from the complete run folders of the
        stream (with ``all``, every method folder found there).
    """

    stream: str = "demo"
    stream_options: Any = None
    methods: tuple[str, ...] = (ALL_METHODS,)
    method_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: int = 3
    out: str = "runs"
    tensorboard: bool = False
    overwrite: bool = False
    progress: bool = True
    aggregate_only: bool = False


def resolve_methods(names: Sequence[str], streams: Sequence[str] = ()) -> list[str]:
    """Expand ``all`` to every registered method that runs on one of ``streams`` (every method when none is
    given) and check the other names, keeping the given order.

    :param names: method names and/or ``all``.
    :param streams: registered streams the methods will run on.
    :raises ConfigError: no names, a name that is not registered, or one that cannot run on one of ``streams``
        (HST on a dense stream).
    """
    if not names:
        raise ConfigError(f"no method given; pass --methods {ALL_METHODS} or some of: {', '.join(METHODS)}")
    unknown = [name for name in names if name != ALL_METHODS and name not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(map(repr, unknown))}; choose from: "
                          f"{', '.join(METHODS)} (or {ALL_METHODS})")
    for stream in streams:
        for name in names:
            if name != ALL_METHODS:
                check_method_runs_on(name, stream, get_stream(stream).dense)
    suited = [method for method in METHODS if not streams or any(method_suits_stream(method, stream) for stream in streams)]
    expanded = [method for name in names for method in (suited if name == ALL_METHODS else [name])]
    return list(dict.fromkeys(expanded))


Action = Literal["skipped", "started", "resumed", "restarted"]


@dataclass
class SweepConfig:
    """A grid of runs, where they train, and the settings they share.

    :param streams: registered streams.
    :param stream_options: each stream's own options, by name (missing: its defaults).
    :param methods: registered method names, or ``all`` for every registered method that runs on each stream.
    :param method_options: each method's own options, by name (missing: its defaults).
    :param grid: axes ``name.field`` -> values to try (text as on the command line, or TOML values).
    :param train: training settings shared by every run.
    :param seeds: number of seeds per setting (seeds 0 .. n-1).
    :param out: root folder of the run folders; each stream's comparison goes to ``<out>/<stream>/comparison/``.
    :param tensorboard: also log each run to TensorBoard in its run folder.
    :param overwrite: retrain runs that already finished (otherwise they are skipped, so a sweep resumes).
    :param progress: show the grid's progress bar.
    :param executor: where the runs train.
    """

    streams: tuple[str, ...] = ("demo",)
    stream_options: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = (ALL_METHODS,)
    method_options: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Sequence[Any]] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: int = 3
    out: str = "runs"
    tensorboard: bool = False
    overwrite: bool = False
    progress: bool = True
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


@dataclass
class RunReport:
    """What a sweep did with one run.

    :param action: skipped (complete already), started, resumed (from where it stopped) or restarted (its
        folder held a run stopped before its first checkpoint, or ``overwrite``).
    :param error: its error as one line when it failed (the traceback is in ``job.log``), else None.
    """

    job: RunJob
    action: Action
    error: str | None = None


@dataclass
class SweepResult:
    """Every run of the sweep and the comparison tables of its streams."""

    runs: list[RunReport]
    tables: list[ComparisonTable]

    @property
    def failed(self) -> list[RunReport]:
        return [report for report in self.runs if report.error is not None]


def _prepared(job: RunJob, overwrite: bool) -> tuple[RunJob, Action]:
    """How to (re)start the run in ``job.folder``; ``skipped`` for a complete run with the same settings."""
    kind, path = job.kind, job.folder
    if overwrite:
        return replace(job, config=kind.restarted(job.config)), "restarted" if path.is_dir() else "started"
    if not path.is_dir() or not any(path.iterdir()):
        return job, "started"
    if is_complete(path):  # trained: reused only with the same settings
        differing = differing_settings(kind.recorded(path), kind.record(job.config))
        if differing:
            raise RunFolderError(f"{path} holds a complete run with other settings ({', '.join(differing)}): pass "
                                 "--overwrite to retrain it or choose another --out")
        if kind.complete(job.config):
            return job, "skipped"
    if kind.resumable(path):
        return replace(job, config=kind.resumed(job.config)), "resumed"
    return replace(job, config=kind.restarted(job.config)), "restarted"  # stopped before its first checkpoint


def run_jobs(jobs: Sequence[RunJob], *, executor: ExecutorConfig, out: str, overwrite: bool, progress: bool,
             desc: str) -> list[RunReport]:
    """Train what is missing of ``jobs`` on the executor, under one progress bar; any kind of run.

    :param jobs: the runs, checked.
    :param executor: where they train.
    :param out: the root of their folders (on a Ray cluster: absolute, on the shared storage).
    :param overwrite: retrain complete runs (otherwise they are skipped and incomplete ones resumed).
    :param progress: show the progress bar.
    :param desc: the progress bar's label.
    :return: what happened to each run; a failure does not stop the others.
    :raises RunFolderError: a complete run folder holds other settings (nothing has trained yet).
    """
    if executor.check().ray_address is not None and not Path(out).is_absolute():
        raise ConfigError(f"--out {out} is relative: on a Ray cluster give an absolute folder on the shared "
                          "storage, the same path on every node")
    prepared = [_prepared(job, overwrite) for job in jobs]
    todo = [index for index, (_, action) in enumerate(prepared) if action != "skipped"]
    with tqdm(total=len(prepared), initial=len(prepared) - len(todo), desc=desc, unit="run",
              disable=not progress) as bar:
        errors = execute([prepared[index][0] for index in todo], executor, bar)
    failed = dict(zip(todo, errors))
    return [RunReport(job=job, action=action, error=failed.get(index)) for index, (job, action) in enumerate(prepared)]


def _unused(given: dict[str, Any], used: Sequence[str], what: str) -> None:
    unused = sorted(set(given) - set(used))
    if unused:
        raise ConfigError(f"options given for {', '.join(unused)}, which this sweep does not run "
                          f"(its {what}: {', '.join(used)})")


def grid_jobs(config: SweepConfig) -> list[RunJob]:
    """Every run of the sweep, with every name, option and grid value checked before anything trains."""
    if not config.streams:
        raise ConfigError("no stream given; pass --streams with one or more registered streams")
    streams = list(dict.fromkeys(get_stream(name).name for name in config.streams))
    methods = resolve_methods(config.methods, streams)
    _unused(config.method_options, methods, "methods")
    _unused(config.stream_options, streams, "streams")
    jobs = stream_jobs(streams=streams, stream_options=config.stream_options, methods=methods,
                       method_options=config.method_options, axes=typed_axes(config.grid, streams, methods),
                       seeds=config.seeds, base=RunConfig(train=config.train, out=config.out,
                                                          tensorboard=config.tensorboard, progress=False))
    return jobs


def run_sweep(config: SweepConfig) -> SweepResult:
    """Train what is missing of the grid on the executor, then compare each stream's runs.

    :param config: the sweep.
    :return: what happened to each run (failures included: they do not stop the others) and the tables of
        each stream's complete runs, also written to ``<out>/<stream>/comparison/``.
    :raises RunFolderError: a complete run folder holds other settings (nothing has trained yet).
    """
    runs = run_jobs(grid_jobs(config), executor=config.executor, out=config.out, overwrite=config.overwrite,
                    progress=config.progress, desc="sweep")
    tables = []
    for stream in dict.fromkeys(report.job.config.stream for report in runs):
        mine = [report.job.folder for report in runs if report.job.config.stream == stream]
        complete = [folder for folder in mine if is_complete(folder)]
        if complete:
            tables += compare_runs(Path(config.out) / stream, complete,
                                   unfinished=[folder for folder in mine if folder not in complete])
    return SweepResult(runs=runs, tables=tables)


def run_bench(config: BenchConfig) -> ComparisonTable:
    """Train every method over the stream for every seed (reusing and resuming runs), then compare them.

    A sweep over one stream without a grid, on the default executor: one run after another in this process.

    :param config: the benchmark; with ``aggregate_only`` nothing is trained (see :func:`report.aggregate`).
    :return: the comparison table, also written to ``<out>/<stream>/comparison/``.
    :raises RunFolderError: a run failed (the first one's error and log are in the message); the others ran.
    """
    if config.aggregate_only:
        only = None if ALL_METHODS in config.methods else config.methods
        return aggregate(config.out, config.stream, methods=only)
    result = run_sweep(SweepConfig(
        streams=(config.stream,), stream_options={config.stream: config.stream_options}, methods=config.methods,
        method_options=config.method_options, train=config.train, seeds=config.seeds, out=config.out,
        tensorboard=config.tensorboard, overwrite=config.overwrite, progress=config.progress))
    if result.failed:
        first = result.failed[0]
        raise RunFolderError(f"{len(result.failed)} of {len(result.runs)} runs failed, first {first.job.name}: "
                             f"{first.error} (log: {first.job.log})")
    return result.tables[0]
