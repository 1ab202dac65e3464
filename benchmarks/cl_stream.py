"""Compare continual-learning methods over a task stream (the comparison table of the README).

Trains every method for every seed (reusing runs that already finished, so an interrupted sweep
resumes: a complete run is reused, an incomplete one continues from its last checkpoint), then writes ``<out>/<stream>/comparison/`` (table.md, table.csv, comparison.json,
curves.png, average_accuracy.png, final_accuracy.png). Same options as ``continual-side bench``;
``--help`` lists them. Hyper-parameter defaults are the paper's: Adam lr 1e-3, batch 128, 4 epochs
per task, ResNet-44 base pre-trained on CIFAR-10, FCN4 side distilled from it, alpha merge.

(a) The README table: split CIFAR-10 from the shared JPEGs, 5 tasks x 2 classes, all methods,
3 seeds, 500 train / 100 test images per class (the per-class counts of iCIFAR-100). On 2 busy CPU
cores one side-tuning run took 2m20s (83.8% average accuracy, seed 0); methods that train the base
take longer, so expect a few hours for the 21 runs; the full 5,000 images per class is 10 times
slower (days), not practical on 2 CPU cores. Interrupt and rerun the same command to resume::

    python -m benchmarks.cl_stream --stream split_cifar10 --data-root ../shared/data/cifar10-jpeg \\
        --n-tasks 5 --images-per-class 500 --test-images-per-class 100 --methods all --seeds 3 \\
        --base resnet44 --sidetune.side-init distilled --sidetune.merge alpha --ewc.lambda_ 1e4 --lr 1e-3 --batch-size 128 --epochs 4 --out runs

(b) The paper's iCIFAR-100 setting (10 tasks x 10 classes; needs internet once to download
CIFAR-100 into data/; add ``--device cuda`` on a GPU). Reference: side-tuning reaches 76.03%
average accuracy over the 10 tasks::

    python -m benchmarks.cl_stream --stream icifar100 --data-root data --download --methods all --seeds 3 \\
        --base resnet44 --sidetune.side-init distilled --sidetune.merge alpha --ewc.lambda_ 1e4 --lr 1e-3 --batch-size 128 --epochs 4 --out runs

Regenerate the table and figures from the run folders without training::

    python -m benchmarks.cl_stream --stream split_cifar10 --out runs --aggregate-only
"""

from __future__ import annotations

import sys

from continual_side.cli import main


if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
