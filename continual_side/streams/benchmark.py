"""Turn per-task decoded images into a task-incremental Avalanche benchmark.

Task label = task index. Classification: targets are 0..C-1 inside each task (one head per task, as
in the paper). Dense tasks (iTaskonomy): each target is a view's packed label map
(:func:`~continual_side.models.dense_losses.pack_target`), and each experience carries its
``task_output`` (a :class:`~continual_side.models.heads.DenseOutput`) for the heads and the loss.
"""

from __future__ import annotations

from typing import Sequence

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import _make_taskaware_classification_dataset
from torch.utils.data import Dataset

from continual_side.models.heads import DenseOutput
from continual_side.streams.imagefolder import ImageTensors
from continual_side.streams.transforms import normalise


class ImageTensorDataset(Dataset):
    """(normalised float image, target) pairs; normalises per item so memory stays at uint8 size.

    :param data: the decoded images; `data` stays reachable for caches that want raw pixels.
    """

    def __init__(self, data: ImageTensors):
        self.data = data
        self.targets = data.targets.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalise(self.data.images[index]), self.targets[index]


def task_benchmark(stream_name: str, tasks: Sequence[tuple[ImageTensors, ImageTensors]]) -> CLScenario:
    """Avalanche benchmark with one experience per (train, test) pair; experience i has task label i.

    Each pair's targets must already be 0..C-1 (see `ImageTensors.select_classes`). The result also
    carries `stream_name`, `classes_per_task` (class names of each task) and `task_images` (the
    (train, test) `ImageTensors` of each task, for code that wants the raw pixels);
    each experience's `classes_in_this_experience` is a sorted list (a set breaks
    MultiHeadClassifier masking).

    :param stream_name: name recorded on the benchmark.
    :param tasks: (train, test) decoded images of each task, with the same class names.
    """
    for index, (train, test) in enumerate(tasks):
        if train.class_names != test.class_names:
            raise ValueError(f"task {index}: train classes {train.class_names} != test {test.class_names}")
    streams = {
        split: [
            _make_taskaware_classification_dataset(ImageTensorDataset(pair[position]), task_labels=index)
            for index, pair in enumerate(tasks)
        ]
        for position, split in enumerate(("train", "test"))
    }
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(**streams)))
    for stream in (bench.train_stream, bench.test_stream):
        for experience in stream:
            experience.classes_in_this_experience = sorted(experience.classes_in_this_experience)
    bench.stream_name = stream_name
    bench.classes_per_task = [list(train.class_names) for train, _ in tasks]
    bench.task_images = list(tasks)
    return bench


class DenseTaskDataset(Dataset):
    """(normalised image, packed target) pairs of one dense task.

    :param images: uint8 (N, 3, H, W); tasks over the same views share this tensor (and the frozen
        base's feature cache hits across tasks, since it keys on the pixels).
    :param packed: (N, ...) the views' :func:`~continual_side.models.dense_losses.pack_target` tensors, in
        any float dtype (float16 halves a stream's memory); items are float32.
    """

    def __init__(self, images: torch.Tensor, packed: torch.Tensor):
        if len(images) != len(packed):
            raise ValueError(f"{len(images)} images but {len(packed)} targets")
        self.images = images
        self.packed = packed
        self.targets = [0] * len(images)  # Avalanche's class attribute; a dense task has no classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return normalise(self.images[index]), self.packed[index].float()


def dense_task_benchmark(
    stream_name: str, tasks: Sequence[tuple[DenseOutput, DenseTaskDataset, DenseTaskDataset]]
) -> CLScenario:
    """Avalanche benchmark with one experience per dense task; experience i has task label i.

    The result carries `stream_name`, `classes_per_task` (``[[domain]]`` per task: the task's name)
    and `task_outputs`; every experience of both streams carries its `task_output`.

    :param stream_name: name recorded on the benchmark.
    :param tasks: (output, train, test) of each task.
    """
    streams = {
        split: [_make_taskaware_classification_dataset(task[position], task_labels=index)
                for index, task in enumerate(tasks)]
        for position, split in ((1, "train"), (2, "test"))
    }
    bench = with_classes_timeline(with_task_labels(benchmark_from_datasets(**streams)))  # class 0 only
    for stream in (bench.train_stream, bench.test_stream):
        for experience, (output, _, _) in zip(stream, tasks):
            experience.task_output = output
    bench.stream_name = stream_name
    bench.classes_per_task = [[output.domain] for output, _, _ in tasks]
    bench.task_outputs = [output for output, _, _ in tasks]
    return bench
