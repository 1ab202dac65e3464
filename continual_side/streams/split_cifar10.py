"""Split CIFAR-10 (or any image-folder tree with train/ and test/) into equal class-disjoint tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario

from continual_side.errors import ConfigError
from continual_side.streams.benchmark import task_benchmark
from continual_side.streams.imagefolder import load_image_folder
from continual_side.streams.registry import register_stream


def split_cifar10(
    root: str | Path,
    *,
    n_tasks: int = 5,
    classes_per_task: int | None = None,
    class_order_seed: int | None = None,
    images_per_class: int | None = None,
    test_images_per_class: int | None = None,
    progress: bool = False,
    stream_name: str = "split_cifar10",
) -> CLScenario:
    """Task-incremental stream over `root/{train,test}/<class>/*.jpg|png`.

    :param root: image-folder tree such as the CIFAR-10 JPEGs.
    :param n_tasks: number of tasks; must divide the number of classes unless `classes_per_task`
        is given.
    :param classes_per_task: classes in each task; the first `n_tasks * classes_per_task` classes of
        the (possibly shuffled) order are used and the rest left out. None: all classes, evenly split.
    :param class_order_seed: None keeps classes sorted by name; an int shuffles them with
        `numpy.random.default_rng(seed).permutation` before cutting them into tasks.
    :param images_per_class: train images per class (first k by file name); None keeps all.
    :param test_images_per_class: test images per class; None keeps all.
    :param progress: show decoding progress bars.
    :param stream_name: recorded as the benchmark's `stream_name`.
    """
    root = Path(root)
    train = load_image_folder(root / "train", images_per_class=images_per_class, progress=progress)
    test = load_image_folder(
        root / "test", classes=train.class_names, images_per_class=test_images_per_class, progress=progress
    )
    names = train.class_names
    if n_tasks < 1:
        raise ConfigError(f"n_tasks={n_tasks} must be at least 1")
    if classes_per_task is None:
        if len(names) % n_tasks:
            raise ConfigError(
                f"n_tasks={n_tasks} does not divide the {len(names)} classes of {root}; "
                f"choose a divisor of {len(names)} or set classes_per_task"
            )
        size = len(names) // n_tasks
    else:
        size = classes_per_task
        if size < 1 or n_tasks * size > len(names):
            raise ConfigError(
                f"{n_tasks} tasks x {size} classes needs {n_tasks * size} classes but {root} has "
                f"{len(names)}; lower n_tasks or classes_per_task"
            )
    if class_order_seed is not None:
        names = [names[i] for i in np.random.default_rng(class_order_seed).permutation(len(names))]
    task_classes = [names[k * size : (k + 1) * size] for k in range(n_tasks)]
    tasks = [(train.select_classes(c), test.select_classes(c)) for c in task_classes]
    return task_benchmark(stream_name, tasks)


@dataclass
class SplitCifar10Options:
    """split_cifar10's options.

    :param data_root: an image-folder tree with ``train/`` and ``test/`` (e.g. the CIFAR-10 JPEGs).
    :param n_tasks: number of tasks (classes are split evenly unless classes_per_task is set).
    :param classes_per_task: classes per task (None: all classes split evenly).
    :param class_order_seed: permute the class order with this seed (None: sorted by name).
    :param images_per_class: keep the first N training images per class (None: all).
    :param test_images_per_class: keep the first N test images per class (None: all).
    """

    data_root: str | None = None
    n_tasks: int = 5
    classes_per_task: int | None = None
    class_order_seed: int | None = None
    images_per_class: int | None = None
    test_images_per_class: int | None = None


def _build(options: SplitCifar10Options, *, progress: bool = False) -> CLScenario:
    if options.data_root is None:
        raise ConfigError("split_cifar10 needs its images: pass --data-root DIR, a folder with train/<class>/ "
                          "and test/<class>/ (e.g. CIFAR-10 as JPEGs)")
    return split_cifar10(options.data_root, n_tasks=options.n_tasks, classes_per_task=options.classes_per_task,
                         class_order_seed=options.class_order_seed, images_per_class=options.images_per_class,
                         test_images_per_class=options.test_images_per_class, progress=progress)


register_stream("split_cifar10", options=SplitCifar10Options, build=_build)
