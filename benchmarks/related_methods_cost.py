"""Counted costs of every method (trainable parameters per task, training memory and step time relative
to fine-tuning, inference MACs per image for one task and for all tasks), see continual_side/cost.py.

Prints a Markdown table and writes the rows as JSON. The issue-12 table (ResNet-44, split CIFAR-10, the
fifth task trained, batch 32)::

    OMP_NUM_THREADS=1 python -m benchmarks.related_methods_cost --data-root ../shared/data/cifar10-jpeg \\
        --base resnet44 --n-tasks 5 --batch-size 32 --out related_methods_cost.json

Memory and MACs are counts and do not depend on the machine; the step-time ratio does (run it on a quiet one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tyro

from continual_side.atomic import atomic_write_text
from continual_side.cost import cost_rows, format_cost_table, method_cost
from continual_side.methods import METHODS, TrainConfig
from continual_side.streams import make_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options


@dataclass
class CostConfig:
    """Counted costs of the methods on split CIFAR-10.

    :param data_root: the CIFAR-10 image-folder tree (train/ and test/).
    :param methods: registered methods to count (finetune, the reference, is always added).
    :param base: the CIFAR ResNet base.
    :param n_tasks: tasks of 2 classes; the last one is trained and measured.
    :param batch_size: images per training step.
    :param steps: timed training steps per method.
    :param out: JSON file for the rows; None prints only.
    """

    data_root: str
    methods: tuple[str, ...] = tuple(METHODS)
    base: str = "resnet44"
    n_tasks: int = 5
    batch_size: int = 32
    steps: int = 5
    out: str | None = None


def main(config: CostConfig) -> list[dict]:
    stream = make_stream("split_cifar10", SplitCifar10Options(
        data_root=config.data_root, n_tasks=config.n_tasks, classes_per_task=2, images_per_class=config.batch_size,
        test_images_per_class=1))
    methods = ["finetune", *(m for m in config.methods if m != "finetune")]
    rows = cost_rows([method_cost(m, stream, train=TrainConfig(base=config.base), n_tasks=config.n_tasks,
                                  batch_size=config.batch_size, steps=config.steps) for m in methods])
    print(format_cost_table(rows))
    if config.out:
        atomic_write_text(config.out, json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main(tyro.cli(CostConfig))
