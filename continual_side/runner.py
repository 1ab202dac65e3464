"""Train one method over one task stream and write its run folder.

This is the loop behind ``continual-side demo`` and ``continual-side stream``: for each experience,
train the Avalanche strategy, then evaluate on every task of the test stream to fill one row of the
accuracy matrix R (R[i, j] = accuracy on task j after training on task i), then save a checkpoint,
so that an interrupted run continues from its last finished experience (``resume``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from tqdm.auto import tqdm

from continual_side import checkpoint
from continual_side.errors import ConfigError
from continual_side.methods import TrainConfig, build_strategy, get_method
from continual_side.results import RunFolderError, RunWriter, differing_settings, is_complete, run_folder
from continual_side.streams import get_stream, make_stream

@dataclass
class RunConfig:
    """One run: a method trained over a stream with one seed.

    :param stream: a registered stream (``continual_side.streams.STREAMS``).
    :param method: a registered method (``continual_side.methods.METHODS``).
    :param stream_options: that stream's options dataclass; None for its defaults.
    :param method_options: that method's options dataclass; None for its defaults.
    :param train: training settings every method shares; its base None is the stream's default base.
    :param seed: random seed for initialisation and data order.
    :param out: root folder of the run folders (``<out>/<stream>/<method>/seed-<n>/``).
    :param tensorboard: also log to TensorBoard (Avalanche's TensorboardLogger) in the run folder.
    :param progress: show progress bars.
    :param overwrite: replace an earlier run in the same run folder, complete or not.
    :param resume: continue the incomplete run in the run folder from its last checkpoint.
    """

    stream: str = "demo"
    method: str = "sidetune"
    stream_options: Any = None
    method_options: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = "runs"
    tensorboard: bool = False
    progress: bool = True
    overwrite: bool = False
    resume: bool = False

    def checked(self) -> RunConfig:
        """This config with every option filled in and checked, before anything is built or written.

        The base is resolved here (None: the stream's), so config.json records the base a run used and
        a run that left it to the stream has the settings of one that named the same base.
        """
        if self.overwrite and self.resume:
            raise ConfigError("--overwrite and --resume exclude each other: start again or continue, not both")
        stream = get_stream(self.stream)
        stream_options = stream.check_options(self.stream_options)
        method_options = get_method(self.method).check_options(self.method_options)
        run_folder(self.out, self.stream, self.method, self.seed)  # names and seed usable as a folder
        train = stream_train_config(self.train, self.stream).check()
        return RunConfig(**{**vars(self), "stream_options": stream_options, "method_options": method_options,
                            "train": train})

    def record(self) -> dict[str, Any]:
        """What config.json records: the stream's and the method's own options only, and the shared settings."""
        config = self.checked()
        return {
            "stream": {"name": config.stream, **asdict(config.stream_options)},
            "method": {"name": config.method, **asdict(config.method_options)},
            "train": asdict(config.train),
            **{name: getattr(config, name) for name in ("seed", "out", "tensorboard", "progress", "overwrite",
                                                         "resume")},
        }


def stream_train_config(train: TrainConfig, stream: str) -> TrainConfig:
    """``train`` with its base resolved: the stream's default base when ``train.base`` is None."""
    return train if train.base is not None else replace(train, base=get_stream(stream).base)


@dataclass
class RunOutcome:
    """What a finished run produced, including the trained model (e.g. to inspect each task's alpha)."""

    acc_matrix: np.ndarray
    run_dir: Path
    summary: dict
    task_names: list[str]
    model: torch.nn.Module


class EpochProgress(SupervisedPlugin):
    """tqdm bar over the epochs of the current experience; reports each epoch's loss and accuracy.

    :param enabled: show the bar.
    :param log: called as ``log("train_epoch", experience=..., epoch=..., loss=..., accuracy=...)``
        after each epoch (e.g. :meth:`RunWriter.log`); None reports nowhere.
    """

    def __init__(self, enabled: bool, log: Callable[..., None] | None = None) -> None:
        super().__init__()
        self.log = log
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.loss_sum = self.correct = self.seen = 0

    def before_training_exp(self, strategy, **kwargs):
        self.bar = tqdm(
            total=strategy.train_epochs,
            desc=f"  task {strategy.experience.current_experience} epochs",
            leave=False,
            disable=not self.enabled,
        )

    def before_training_epoch(self, strategy, **kwargs):
        self.loss_sum = self.correct = self.seen = 0

    def after_training_iteration(self, strategy, **kwargs):
        n = len(strategy.mb_y)
        self.loss_sum += strategy.loss.item() * n
        self.correct += int((strategy.mb_output.argmax(1) == strategy.mb_y).sum())
        self.seen += n

    def after_training_epoch(self, strategy, **kwargs):
        loss, acc = self.loss_sum / self.seen, self.correct / self.seen
        if self.log is not None:
            self.log(
                "train_epoch",
                experience=strategy.experience.current_experience,
                epoch=strategy.clock.train_exp_epochs,
                loss=loss,
                accuracy=acc,
            )
        self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
        self.bar.update()

    def after_training_exp(self, strategy, **kwargs):
        self.bar.close()


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_evaluator(loggers: list | tuple = ()) -> EvaluationPlugin:
    """The metrics every run records (accuracy and loss per epoch and per experience)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No loggers specified")  # the run folder is our log
        return EvaluationPlugin(
            accuracy_metrics(epoch=True, experience=True),
            loss_metrics(epoch=True, experience=True),
            loggers=list(loggers),
        )


def _open_run_folder(config: RunConfig, record: dict[str, Any]) -> tuple[RunWriter, dict | None]:
    """The run's writer and, when resuming, its checkpoint; refuses to mix two runs in one folder."""
    path = run_folder(config.out, config.stream, config.method, config.seed)
    started = path.is_dir() and any(path.iterdir())
    if config.resume:
        if is_complete(path):
            raise RunFolderError(f"{path} holds a complete run; nothing to resume (--overwrite retrains it)")
        document = checkpoint.load(path)
        differing = differing_settings(json.loads(document["settings"]), record)
        if differing:
            raise RunFolderError(f"the checkpoint in {path} was written with other settings ({', '.join(differing)}): "
                                 "resume with the settings it used, or rerun with --overwrite")
        return RunWriter(config.out, config.stream, config.method, config.seed,
                         keep_events=document["events"]), document
    if started and not config.overwrite:
        state = "a complete run" if is_complete(path) else "an incomplete run"
        raise RunFolderError(f"{path} already holds {state}: pass --resume to continue an incomplete one, "
                             "--overwrite to start again, or choose another --out")
    writer = RunWriter(config.out, config.stream, config.method, config.seed, overwrite=config.overwrite)
    writer.write_config(record)
    return writer, None


def run(config: RunConfig) -> RunOutcome:
    """Train ``config.method`` over ``config.stream`` and write the run folder.

    Everything the user can get wrong (names, options, data, weights, folder state) is checked before
    the first file is written. After each experience a checkpoint is saved; it is removed once the
    run is complete (summary.json written).

    :param config: the run's configuration; written to ``config.json``.
    :return: the accuracy matrix, the run folder, the summary and the trained model.
    """
    config = config.checked()
    record = config.record()
    RNGManager.set_random_seeds(config.seed)
    benchmark = make_stream(config.stream, config.stream_options, progress=config.progress)
    task_names = ["+".join(classes) for classes in benchmark.classes_per_task]
    progress = EpochProgress(config.progress)
    strategy = build_strategy(config.method, config.method_options, config.train, plugins=[progress],
                              evaluator=run_evaluator())
    writer, document = _open_run_folder(config, record)
    for plugin in strategy.plugins:  # plugins that report (progress, SpotTune's routing) write to metrics.jsonl
        if getattr(plugin, "log", False) is None:
            plugin.log = writer.log
    if config.tensorboard:
        from avalanche.logging import TensorboardLogger

        strategy.evaluator.loggers.append(TensorboardLogger(writer.path / "tensorboard"))

    n_tasks = len(benchmark.train_stream)
    acc = np.zeros((n_tasks, n_tasks))
    state = checkpoint.RunProgress(settings=json.dumps(record, default=str), acc_rows=acc[:0],
                                   trainable_parameters=[], wall_time_s=0.0, events=0)
    if document is not None:
        state = checkpoint.progress_of(document)
        acc[: state.experiences_done] = state.acc_rows
        checkpoint.restore(document, strategy, benchmark)
    start = time.perf_counter() - state.wall_time_s
    experiences = tqdm(range(n_tasks), desc="experiences", disable=not config.progress,
                       initial=state.experiences_done)
    for i in range(state.experiences_done, n_tasks):
        strategy.train(benchmark.train_stream[i], **config.train.loader_options())
        trained = state.trainable_parameters + [trainable_parameters(strategy.model)]
        metrics = strategy.eval(benchmark.test_stream, **config.train.loader_options())
        for j, test_exp in enumerate(benchmark.test_stream):
            acc[i, j] = metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task{test_exp.task_label:03d}/Exp{j:03d}"]
            writer.log("eval", after_experience=i, task=j, accuracy=acc[i, j])
        state = checkpoint.RunProgress(settings=state.settings, acc_rows=acc[: i + 1].copy(),
                                       trainable_parameters=trained, wall_time_s=time.perf_counter() - start,
                                       events=writer.events_written)
        checkpoint.save(writer.path, strategy, state)
        experiences.update()
    experiences.close()

    writer.write_acc_matrix(acc, task_names)
    summary = writer.write_summary(acc, wall_time_s=state.wall_time_s,
                                   trainable_parameters=max(state.trainable_parameters))
    (writer.path / checkpoint.CHECKPOINT_FILE).unlink()
    return RunOutcome(acc_matrix=acc, run_dir=writer.path, summary=summary, task_names=task_names,
                      model=strategy.model)
