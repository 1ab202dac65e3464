"""Compare methods over one stream: every method x every seed, then the comparison report.

Each run is an ordinary run folder (``<out>/<stream>/<method>/seed-<n>/``, see
:mod:`continual_side.runner`). A complete run with the same settings is reused, an incomplete one
continues from its checkpoint (or starts again when it stopped before its first checkpoint), so an
interrupted sweep resumes where it stopped. The report is :mod:`continual_side.report`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from continual_side import runner
from continual_side.checkpoint import CHECKPOINT_FILE
from continual_side.errors import ConfigError
from continual_side.methods import METHODS, TrainConfig, get_method
from continual_side.report import ComparisonTable, aggregate, compare
from continual_side.results import RunFolderError, differing_settings, is_complete, load_run, run_folder
from continual_side.runner import RunConfig

ALL_METHODS = "all"


@dataclass
class BenchConfig:
    """Every method over one stream with several seeds, then a comparison table and figures.

    :param stream: a registered stream.
    :param stream_options: that stream's options; None for its defaults.
    :param methods: registered method names, or ``all`` for every registered method.
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


def _prepared(path: Path, config: RunConfig) -> RunConfig | None:
    """How to (re)start the run in ``path``: None to reuse a complete run with the same settings."""
    if config.overwrite or not path.is_dir() or not any(path.iterdir()):
        return config
    if is_complete(path):
        differing = differing_settings(load_run(path).config, config.record())
        if differing:
            raise RunFolderError(f"{path} holds a complete run with other settings ({', '.join(differing)}): pass "
                                 "--overwrite to retrain it or choose another --out")
        return None
    if (path / CHECKPOINT_FILE).is_file():
        return replace(config, resume=True)
    return replace(config, overwrite=True)  # stopped before its first checkpoint: nothing to keep


def run_bench(config: BenchConfig) -> ComparisonTable:
    """Train every method over the stream for every seed (reusing and resuming runs), then compare them.

    :param config: the sweep; with ``aggregate_only`` nothing is trained (see :func:`report.aggregate`).
    :return: the comparison table, also written to ``<out>/<stream>/comparison/``.
    """
    if config.aggregate_only:
        only = None if ALL_METHODS in config.methods else config.methods
        return aggregate(config.out, config.stream, methods=only)
    methods = resolve_methods(config.methods)
    if config.seeds < 1:
        raise ConfigError(f"--seeds {config.seeds} must be at least 1")
    unused = sorted(set(config.method_options) - set(methods))
    if unused:
        raise ConfigError(f"options given for {', '.join(unused)}, which this sweep does not run")
    jobs = [
        RunConfig(stream=config.stream, method=method, stream_options=config.stream_options,
                  method_options=get_method(method).check_options(config.method_options.get(method)),
                  train=config.train, seed=seed, out=config.out, tensorboard=config.tensorboard,
                  progress=config.progress, overwrite=config.overwrite).checked()
        for method in methods for seed in range(config.seeds)
    ]  # every name and option is checked before the first run starts
    runs: dict[str, list[Path]] = {method: [] for method in methods}
    with tqdm(jobs, desc="bench (method x seed)", unit="run", disable=not config.progress) as bar:
        for job in bar:
            bar.set_postfix_str(f"{job.method} seed {job.seed}")
            path = run_folder(job.out, job.stream, job.method, job.seed)
            todo = _prepared(path, job)
            if todo is not None:
                path = runner.run(todo).run_dir
            runs[job.method].append(path)
    return compare(Path(config.out) / config.stream, runs, unfinished=[])
