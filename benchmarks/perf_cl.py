"""Speed and memory of fine-tuning, side-tuning (feature cache off and on), fixed features and a plain
Avalanche Naive loop, on the same stream and the same batches, in one run. Same options as
``continual-side perf``; ``--help`` lists them. Prints a Markdown table of ratios against fine-tuning
and writes every number (with the machine and its load) as JSON.

The README table: ResNet-44 base, distilled FCN4 side, batch 128, first task of split CIFAR-10
(1,000 training images), 3 epochs, timed twice in turn::

    python -m benchmarks.perf_cl --stream split_cifar10 --data-root ../shared/data/cifar10-jpeg \\
        --n-tasks 5 --images-per-class 500 --test-images-per-class 10 --base resnet44 \\
        --batch-size 128 --epochs 3 --repeats 2 --threads 1 --out runs/perf

On a GPU add ``--device cuda`` (and ``--num-workers 4`` to load batches in worker processes).
"""

from __future__ import annotations

import sys

from continual_side.cli import main


if __name__ == "__main__":
    main(["perf", *sys.argv[1:]])
