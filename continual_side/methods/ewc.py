"""Elastic weight consolidation on top of fine-tuning (Kirkpatrick et al., "Overcoming catastrophic
forgetting in neural networks", PNAS 2017, arXiv:1612.00796).

Fine-tuning (:mod:`continual_side.methods.finetune`) plus Avalanche's ``EWCPlugin`` in "separate"
mode: after each task the diagonal Fisher of every parameter is estimated on that task's whole
training set (Avalanche's default; the side-tuning reference uses 5000 samples, which for iCIFAR is
every training image of a task anyway), and later tasks pay
``lambda * sum_k F_k * (theta - theta_k)^2`` for moving them. Trained per task: the shared base and
the current task's head, as fine-tuning.

Choosing lambda. The reference's 1e4 was tuned with its own optimiser and learning rate, and
Avalanche's Fisher is the squared gradient of each mini-batch's mean loss (not per sample), so the
value does not transfer. Sweep (``benchmarks``-style, run once by hand): split CIFAR-10, 5 tasks of
2 classes, ResNet-20 base, 100 train / 100 test images per class, 2 epochs per task, Adam lr 1e-3,
batch 32, seed 0; final average accuracy over tasks (ACC) and average forgetting (max earlier
accuracy minus final accuracy, over tasks 0..3):

SWEEP_TABLE

CHOICE_TEXT
"""

from __future__ import annotations

from collections.abc import Sequence

from avalanche.core import BasePlugin
from avalanche.training.plugins import EWCPlugin
from avalanche.training.plugins.evaluation import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.methods import finetune
from continual_side.methods.common import MethodConfig

TRAINED_PER_TASK = "the shared base (pulled towards earlier tasks' weights by the EWC penalty) and the current task's linear head"


def build(
    config: MethodConfig,
    *,
    plugins: Sequence[BasePlugin] = (),
    evaluator: EvaluationPlugin | None = None,
) -> SupervisedTemplate:
    """Fine-tuning with an EWC penalty of weight ``config.ewc_lambda``."""
    ewc = EWCPlugin(ewc_lambda=config.ewc_lambda, mode="separate")
    return finetune.build(config, plugins=plugins, evaluator=evaluator, method_plugins=[ewc])
