"""Train one method over one task stream and write its run folder.

This is the loop behind ``continual-side demo`` and ``continual-side stream``: for each experience,
train the Avalanche strategy, then evaluate on every task of the test stream to fill one row of the
accuracy matrix R (R[i, j] = accuracy on task j after training on task i).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from tqdm.auto import tqdm

from continual_side.methods import MethodConfig, build_strategy
from continual_side.results import RunWriter, run_folder
from continual_side.streams import make_stream


@dataclass
class StreamConfig:
    """Which task stream to build.

    :param stream: icifar100, split_cifar10 or demo.
    :param data_root: dataset folder (icifar100: where CIFAR-100 is or will be downloaded;
        split_cifar10: an image-folder tree with train/ and test/). Unused by demo.
    :param download: icifar100 only: download CIFAR-100 into data_root if it is not there.
    :param n_tasks: split_cifar10 only: number of tasks (classes are split evenly).
    :param classes_per_task: split_cifar10 only: classes per task (None: all classes split evenly).
    :param class_order_seed: split_cifar10 only: permute the class order with this seed (None: sorted).
    :param images_per_class: split_cifar10 only: keep the first N training images per class.
    :param test_images_per_class: split_cifar10 only: keep the first N test images per class.
    """

    stream: str = "demo"
    data_root: str | None = None
    download: bool = False
    n_tasks: int = 5
    classes_per_task: int | None = None
    class_order_seed: int | None = None
    images_per_class: int | None = None
    test_images_per_class: int | None = None

    def options(self) -> dict:
        """Keyword arguments for :func:`continual_side.streams.make_stream`."""
        if self.stream == "icifar100":
            return {"data_root": self.data_root or "data", "download": self.download}
        if self.stream == "split_cifar10":
            return {
                "root": self.data_root,
                "n_tasks": self.n_tasks,
                "classes_per_task": self.classes_per_task,
                "class_order_seed": self.class_order_seed,
                "images_per_class": self.images_per_class,
                "test_images_per_class": self.test_images_per_class,
            }
        return {}


@dataclass
class RunConfig:
    """One run: a method trained over a stream with one seed.

    :param method: a registered method: finetune, features, independent, ewc, lwf, pnn or sidetune
        (``continual_side.methods.METHODS``).
    :param seed: random seed for initialisation and data order.
    :param out: root folder of the run folders (``<out>/<stream>/<method>/seed-<n>/``).
    :param tensorboard: also log to TensorBoard (Avalanche's TensorboardLogger) in the run folder.
    :param progress: show progress bars.
    :param overwrite: replace an earlier run in the same run folder (otherwise that is an error).
    """

    data: Annotated[StreamConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=StreamConfig)
    method: str = "sidetune"
    train: Annotated[MethodConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=MethodConfig)
    seed: int = 0
    out: str = "runs"
    tensorboard: bool = False
    progress: bool = True
    overwrite: bool = False


@dataclass
class RunOutcome:
    """What a finished run produced, including the trained model (e.g. to inspect each task's alpha)."""

    acc_matrix: np.ndarray
    run_dir: Path
    summary: dict
    task_names: list[str]
    model: torch.nn.Module


class EpochProgress(SupervisedPlugin):
    """tqdm bar over the epochs of the current experience; logs each epoch's loss and accuracy.

    :param enabled: show the bar.
    :param writer: where epochs are logged; set once the run folder exists.
    """

    def __init__(self, enabled: bool, writer: RunWriter | None = None) -> None:
        super().__init__()
        self.writer = writer
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
        self.writer.log(
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


def run(config: RunConfig) -> RunOutcome:
    """Train ``config.method`` over ``config.stream`` and write the run folder.

    :param config: the run's configuration; written to ``config.json``.
    :return: the accuracy matrix, the run folder and the summary.
    """
    RNGManager.set_random_seeds(config.seed)
    benchmark = make_stream(config.data.stream, **config.data.options())
    task_names = ["+".join(classes) for classes in benchmark.classes_per_task]
    folder = run_folder(config.out, benchmark.stream_name, config.method, config.seed)
    loggers = []
    if config.tensorboard:
        from avalanche.logging import TensorboardLogger

        loggers.append(TensorboardLogger(folder / "tensorboard"))
    progress = EpochProgress(config.progress)
    # a bad method, merge or device fails here, before a run folder is written
    strategy = build_strategy(config.method, config.train, plugins=[progress], evaluator=run_evaluator(loggers))
    writer = RunWriter(config.out, benchmark.stream_name, config.method, config.seed, overwrite=config.overwrite)
    writer.write_config(asdict(config))
    progress.writer = writer

    n_tasks = len(benchmark.train_stream)
    acc = np.zeros((n_tasks, n_tasks))
    trained_per_task = []
    start = time.perf_counter()
    for i, experience in enumerate(tqdm(benchmark.train_stream, desc="experiences", disable=not config.progress)):
        strategy.train(experience, **config.train.loader_options())
        trained_per_task.append(trainable_parameters(strategy.model))
        metrics = strategy.eval(benchmark.test_stream, **config.train.loader_options())
        for j, test_exp in enumerate(benchmark.test_stream):
            key = f"Top1_Acc_Exp/eval_phase/test_stream/Task{test_exp.task_label:03d}/Exp{j:03d}"
            acc[i, j] = metrics[key]
            writer.log("eval", after_experience=i, task=j, accuracy=acc[i, j])
    wall_time = time.perf_counter() - start

    writer.write_acc_matrix(acc, task_names)
    summary = writer.write_summary(acc, wall_time_s=wall_time, trainable_parameters=max(trained_per_task))
    return RunOutcome(acc_matrix=acc, run_dir=writer.path, summary=summary, task_names=task_names, model=strategy.model)
