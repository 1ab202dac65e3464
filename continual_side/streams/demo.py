"""The offline demo stream: a small CIFAR-10 sample packaged with the code (see demo_data/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avalanche.benchmarks.scenarios.generic_scenario import CLScenario

from continual_side.streams.registry import register_stream
from continual_side.streams.split_cifar10 import split_cifar10

DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo_data"
TRAIN_PER_CLASS = 350  # with 100 test images per class: about 4.15 MB of JPEGs, under the 4.5 MB budget
TEST_PER_CLASS = 100


def demo_stream(*, n_tasks: int = 5, class_order_seed: int | None = None) -> CLScenario:
    """Split CIFAR-10 over the packaged sample: 5 tasks x 2 classes by default, no download.

    :param n_tasks: number of tasks; must divide 10.
    :param class_order_seed: None keeps classes sorted by name; an int shuffles them.
    """
    return split_cifar10(DEMO_DATA_DIR, n_tasks=n_tasks, class_order_seed=class_order_seed, stream_name="demo")


@dataclass
class DemoOptions:
    """demo's options.

    :param n_tasks: number of tasks; must divide 10.
    :param class_order_seed: permute the class order with this seed (None: sorted by name).
    """

    n_tasks: int = 5
    class_order_seed: int | None = None


register_stream(
    "demo",
    options=DemoOptions,
    build=lambda options, progress=False: demo_stream(n_tasks=options.n_tasks,
                                                      class_order_seed=options.class_order_seed),
)
