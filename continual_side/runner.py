"""Train one method over one task stream and write its run folder.

This is the loop behind ``continual-side demo`` and ``continual-side stream``: for each experience,
train the Avalanche strategy, then evaluate on every task of the test stream to fill one row of the
accuracy matrix R (R[i, j] = accuracy on task j after training on task i), then save a checkpoint,
so that an interrupted run continues from its last finished experience (``resume``).

A stream of dense tasks (experiences carrying a :class:`~continual_side.models.heads.DenseOutput`,
iTaskonomy) fills the test-loss matrix L instead (L[i, j] = Avalanche's per-experience test loss of
task j after training task i, each task evaluated with its own loss), and R only in the columns of
the classification-like tasks (:func:`~continual_side.models.dense_losses.correct_and_count`: pixel
accuracy of segment_semantic, top-1 of class_object); Avalanche's accuracy metric, meaningless on
dense outputs, is not used there.
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

from continual_side import checkpoint, plots
from continual_side.errors import ConfigError
from continual_side.methods import TrainConfig, build_strategy, get_method
from continual_side.methods.registry import check_method_runs_on
from continual_side.methods.common import task_output
from continual_side.models.dense_losses import TASK_LOSSES, correct_and_count, unpack_target
from continual_side.models.heads import DenseOutput, TaskOutput
from continual_side.results import (
    PREDICTIONS_PNG,
    RunFolderError,
    RunWriter,
    differing_settings,
    is_complete,
    run_folder,
    save_figure,
)
from continual_side.streams import get_stream, make_stream
from continual_side.streams.transforms import IMAGENET_MEAN, IMAGENET_STD

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
        check_method_runs_on(self.method, self.stream, stream.dense)
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
    """What a finished run produced, including the trained model (e.g. to inspect each task's alpha).

    :param loss_matrix: a dense stream's test-loss matrix L; None for a classification stream.
    """

    acc_matrix: np.ndarray
    run_dir: Path
    summary: dict
    task_names: list[str]
    model: torch.nn.Module
    loss_matrix: np.ndarray | None = None


def has_accuracy(output: TaskOutput) -> bool:
    """Whether a task's accuracy means something: a class count, or a classification-like dense task."""
    return not isinstance(output, DenseOutput) or TASK_LOSSES[output.domain].classification


def batch_correct_and_count(output: TaskOutput, logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """Correct predictions and their number in a batch of a task that :func:`has_accuracy`: images for
    classes, labelled pixels or images for a dense task (``targets`` packed)."""
    if isinstance(output, DenseOutput):
        return correct_and_count(output.domain, logits, unpack_target(output.domain, targets))
    return int((logits.argmax(1) == targets).sum()), len(targets)


def is_dense(benchmark) -> bool:
    """A stream of dense tasks: its experiences carry a DenseOutput (see the module docstring)."""
    return any(isinstance(getattr(experience, "task_output", None), DenseOutput)
               for experience in benchmark.train_stream)


class EpochProgress(SupervisedPlugin):
    """tqdm bar over the epochs of the current experience; reports each epoch's loss and accuracy
    (accuracy only for tasks that :func:`has_accuracy`).

    :param enabled: show the bar.
    :param log: called as ``log("train_epoch", experience=..., epoch=..., loss=..., accuracy=...)``
        after each epoch (e.g. :meth:`RunWriter.log`); None reports nowhere.
    """

    def __init__(self, enabled: bool, log: Callable[..., None] | None = None) -> None:
        super().__init__()
        self.log = log
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.loss_sum = self.correct = self.counted = self.seen = 0

    def before_training_exp(self, strategy, **kwargs):
        self.bar = tqdm(
            total=strategy.train_epochs,
            desc=f"  task {strategy.experience.current_experience} epochs",
            leave=False,
            disable=not self.enabled,
        )

    def before_training_epoch(self, strategy, **kwargs):
        self.loss_sum = self.correct = self.counted = self.seen = 0

    def after_training_iteration(self, strategy, **kwargs):
        n = len(strategy.mb_y)
        self.loss_sum += strategy.loss.item() * n
        self.seen += n
        output = task_output(strategy.experience)
        if has_accuracy(output):
            correct, counted = batch_correct_and_count(output, strategy.mb_output, strategy.mb_y)
            self.correct += correct
            self.counted += counted

    def after_training_epoch(self, strategy, **kwargs):
        loss = self.loss_sum / self.seen
        scores = {"accuracy": self.correct / self.counted} if self.counted else {}
        if self.log is not None:
            self.log(
                "train_epoch",
                experience=strategy.experience.current_experience,
                epoch=strategy.clock.train_exp_epochs,
                loss=loss,
                **scores,
            )
        postfix = {"loss": f"{loss:.3f}"}
        if scores:
            postfix["acc"] = f"{scores['accuracy']:.3f}"
        self.bar.set_postfix(**postfix)
        self.bar.update()

    def after_training_exp(self, strategy, **kwargs):
        self.bar.close()


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_evaluator(loggers: list | tuple = (), *, dense: bool = False) -> EvaluationPlugin:
    """The metrics every run records: loss per epoch and per experience, and accuracy unless the stream is
    dense (:class:`DenseAccuracy` scores the dense tasks that have one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No loggers specified")  # the run folder is our log
        return EvaluationPlugin(
            *([] if dense else [accuracy_metrics(epoch=True, experience=True)]),
            loss_metrics(epoch=True, experience=True),
            loggers=list(loggers),
        )


class DenseAccuracy(SupervisedPlugin):
    """The test accuracy of each evaluated experience whose task :func:`has_accuracy`, by experience id.

    ``accuracy[j]`` is NaN for a task without accuracy (and for one without a labelled pixel).
    """

    def __init__(self) -> None:
        super().__init__()
        self.accuracy: dict[int, float] = {}
        self.correct = self.counted = 0

    def before_eval_exp(self, strategy, **kwargs):
        self.correct = self.counted = 0

    def after_eval_iteration(self, strategy, **kwargs):
        output = task_output(strategy.experience)
        if has_accuracy(output):
            correct, counted = batch_correct_and_count(output, strategy.mb_output, strategy.mb_y)
            self.correct += correct
            self.counted += counted

    def after_eval_exp(self, strategy, **kwargs):
        score = self.correct / self.counted if self.counted else float("nan")
        self.accuracy[strategy.experience.current_experience] = score


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
    :return: the accuracy matrix (and a dense stream's loss matrix), the run folder, the summary and the
        trained model.
    """
    config = config.checked()
    record = config.record()
    RNGManager.set_random_seeds(config.seed)
    benchmark = make_stream(config.stream, config.stream_options, progress=config.progress)
    task_names = ["+".join(classes) for classes in benchmark.classes_per_task]
    dense = is_dense(benchmark)
    progress = EpochProgress(config.progress)
    dense_accuracy = DenseAccuracy()
    strategy = build_strategy(config.method, config.method_options, config.train,
                              plugins=[progress, *([dense_accuracy] if dense else [])],
                              evaluator=run_evaluator(dense=dense))
    writer, document = _open_run_folder(config, record)
    for plugin in strategy.plugins:  # plugins that report (progress, SpotTune's routing) write to metrics.jsonl
        if getattr(plugin, "log", False) is None:
            plugin.log = writer.log
    if config.tensorboard:
        from avalanche.logging import TensorboardLogger

        strategy.evaluator.loggers.append(TensorboardLogger(writer.path / "tensorboard"))

    n_tasks = len(benchmark.train_stream)
    acc = np.zeros((n_tasks, n_tasks))
    losses = np.zeros((n_tasks, n_tasks)) if dense else None
    state = checkpoint.RunProgress(settings=json.dumps(record, default=str), acc_rows=acc[:0],
                                   trainable_parameters=[], wall_time_s=0.0, events=0,
                                   loss_rows=None if losses is None else losses[:0])
    if document is not None:
        state = checkpoint.progress_of(document)
        acc[: state.experiences_done] = state.acc_rows
        if losses is not None:
            losses[: state.experiences_done] = state.loss_rows
        checkpoint.restore(document, strategy, benchmark)
    start = time.perf_counter() - state.wall_time_s
    experiences = tqdm(range(n_tasks), desc="experiences", disable=not config.progress,
                       initial=state.experiences_done)
    for i in range(state.experiences_done, n_tasks):
        strategy.train(benchmark.train_stream[i], **config.train.loader_options())
        trained = state.trainable_parameters + [trainable_parameters(strategy.model)]
        metrics = strategy.eval(benchmark.test_stream, **config.train.loader_options())
        for j, test_exp in enumerate(benchmark.test_stream):
            name = f"Task{test_exp.task_label:03d}/Exp{j:03d}"
            if losses is None:
                acc[i, j] = metrics[f"Top1_Acc_Exp/eval_phase/test_stream/{name}"]
                writer.log("eval", after_experience=i, task=j, accuracy=acc[i, j])
            else:
                losses[i, j] = metrics[f"Loss_Exp/eval_phase/test_stream/{name}"]
                acc[i, j] = dense_accuracy.accuracy[j]
                scores = {"accuracy": acc[i, j]} if has_accuracy(test_exp.task_output) else {}
                writer.log("eval", after_experience=i, task=j, loss=losses[i, j], **scores)
        state = checkpoint.RunProgress(settings=state.settings, acc_rows=acc[: i + 1].copy(),
                                       trainable_parameters=trained, wall_time_s=time.perf_counter() - start,
                                       events=writer.events_written,
                                       loss_rows=None if losses is None else losses[: i + 1].copy())
        checkpoint.save(writer.path, strategy, state)
        experiences.update()
    experiences.close()

    if losses is None:
        writer.write_acc_matrix(acc, task_names)
        summary = writer.write_summary(acc, wall_time_s=state.wall_time_s,
                                       trainable_parameters=max(state.trainable_parameters))
    else:
        accuracy_tasks = [j for j, exp in enumerate(benchmark.test_stream) if has_accuracy(exp.task_output)]
        writer.write_loss_matrix(losses, task_names)
        writer.write_acc_matrix(acc, task_names, accuracy_tasks=accuracy_tasks)
        title = f"{config.stream} / {config.method} / seed {config.seed}: predictions on one test view"
        save_figure(plots.dense_predictions(*predictions_on_test_view(strategy, benchmark), title=title),
                    writer.path / PREDICTIONS_PNG)
        summary = writer.write_dense_summary(losses, acc, accuracy_tasks, wall_time_s=state.wall_time_s,
                                             trainable_parameters=max(state.trainable_parameters))
    (writer.path / checkpoint.CHECKPOINT_FILE).unlink()
    return RunOutcome(acc_matrix=acc, run_dir=writer.path, summary=summary, task_names=task_names,
                      model=strategy.model, loss_matrix=losses)


def predictions_on_test_view(strategy, benchmark, view: int = 0) -> tuple[np.ndarray, list[plots.DensePrediction]]:
    """The input of one test view of a dense stream (in [0, 1]) and every task's target and prediction on it.

    :param strategy: the trained strategy (its model predicts each task with that task's head).
    :param benchmark: the dense stream.
    :param view: index of the view in the test set (every task's test set holds the same views).
    """
    model = strategy.model.eval()
    items = []
    image = None
    with torch.no_grad():
        for task, experience in enumerate(benchmark.test_stream):
            x, packed, _ = experience.dataset[view]
            prediction = model(x[None].to(strategy.device), torch.tensor([task]))[0].float().cpu()
            domain = experience.task_output.domain
            targets = unpack_target(domain, packed[None])
            mask = targets.get(domain + "_mask")
            items.append(plots.DensePrediction(domain, targets[domain][0].numpy(),
                                               None if mask is None else mask[0].numpy(), prediction.numpy()))
            image = x
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).clamp(0.0, 1.0).numpy(), items
