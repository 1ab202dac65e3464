"""Speed and memory of fine-tuning, side-tuning (feature cache off and on), fixed features and a plain
Avalanche Naive loop, on the same stream and the same batches, in one run. Same options as
``continual-side perf``; ``--help`` lists them. Prints a Markdown table of ratios against fine-tuning
and writes every number (with the machine and its load) as JSON.

The README table: ResNet-44 base, distilled FCN4 side, batch 128, first task of split CIFAR-10
(1,000 training images), 3 epochs, timed twice in turn::

    python -m benchmarks.perf_cl --stream split_cifar10 --data-root ../shared/data/cifar10-jpeg \\
        --n-tasks 5 --images-per-class 500 --test-images-per-class 10 --base resnet44 \\
        --batch-size 128 --epochs 3 --repeats 2 --threads 1 --out perf_cl.json

On a GPU add ``--device cuda`` (and ``--num-workers 4`` to load batches in worker processes).
"""

from __future__ import annotations

import sys

import tyro

from continual_side.errors import ContinualSideError
from continual_side.perf import PerfConfig, format_table, run_perf


def main(argv: list[str] | None = None) -> None:
    config = tyro.cli(PerfConfig, args=argv, description=__doc__)
    try:
        report = run_perf(config)
    except ContinualSideError as error:
        print(f"perf_cl: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(report))
    print(f"results written to {config.out}")


if __name__ == "__main__":
    main()
