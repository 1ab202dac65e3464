"""Hierarchical Side-Tuning (Lin et al., "Hierarchical Side-Tuning for Vision Transformers",
arXiv:2310.05393; official code github.com/AFeng-x/HST), on a small CIFAR Vision Transformer.

Each task gets its own meta tokens, copies of the ViT blocks' LayerNorms, hierarchical side network,
bridges and head over one frozen ViT shared by all tasks
(:class:`~continual_side.models.hst.HierarchicalSideTuning`, whose docstring follows the official code
and lists our choices). The network is :func:`~continual_side.models.hst.vit_cifar` (patch 4, 32 px,
8 blocks of width 192) with the side network :data:`~continual_side.models.hst.CIFAR_SIDE`; the shared
``--base`` (a CIFAR ResNet) is not used.

.. warning:: No pre-trained ViT ships with the suite. Without ``vit_weights`` the ViT keeps its random
   initialisation (seeded like every run), which is enough for tests and for checking the method's
   mechanics but says nothing about HST's accuracy; a warning says so at every build. Make the weights
   with ``python benchmarks/pretrain_vit_cifar.py`` (distils the shipped ResNet-44 into the ViT on the
   CIFAR-10 training images) and pass them as ``--hst.vit-weights FILE``.

Dense streams (iTaskonomy) are refused: HST is registered with ``dense=False``, so ``--methods all`` leaves it
out of a dense stream's sweep and naming it is a ConfigError before anything trains; a dense task given to the
model anyway raises one too. HST does not read the
stream's base (the mid-level encoder every other method adapts), its ViT takes only 32 px images (the
mini-Taskonomy views are larger), and no ViT pre-trained on such views exists here. A decoder on the side
network's last tokens would run on 32 px inputs, but it would adapt a randomly initialised ViT instead of
the stream's base, so its numbers could not be compared with the other methods'.

Trained per task: the current task's ``meta_tokens``, ``block_norms``, ``bridges``, ``meta_norms``,
``embeds``, ``stages``, ``stage_norms`` and ``head``. Gradients pass through the frozen ViT to the meta
tokens and block norms, but no ViT tensor changes and nothing is shared, so nothing is forgotten.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from avalanche.benchmarks.scenarios import CLExperience
from torchvision.models.vision_transformer import VisionTransformer

from continual_side.errors import ConfigError
from continual_side.methods.common import TaskModules
from continual_side.methods.frozen_backbone import task_parts
from continual_side.methods.registry import register_method
from continual_side.models.heads import DenseOutput, TaskOutput
from continual_side.models.hst import CIFAR_SIDE, HierarchicalSideTuning, vit_cifar

RANDOM_VIT_WARNING = ("HST runs on a randomly initialised ViT: its accuracy means nothing; make weights with "
                      "'python benchmarks/pretrain_vit_cifar.py' and pass --hst.vit-weights FILE")


@dataclass
class HSTOptions:
    """HST's own options.

    :param vit_weights: a state_dict file of ``continual_side.models.hst.vit_cifar()`` (made by
        benchmarks/pretrain_vit_cifar.py); None: random ViT weights, with a warning.
    """

    vit_weights: str | None = None


class HSTModel(TaskModules):
    """One :class:`HierarchicalSideTuning` per task over a shared frozen ViT.

    :param vit: the ViT; frozen in place and always in eval mode.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit.requires_grad_(False).eval()

    def new_task_module(self, output: TaskOutput) -> HierarchicalSideTuning:
        """The task's HST network; a dense task is refused (see the module docstring).

        :raises ConfigError: ``output`` is a DenseOutput.
        """
        if isinstance(output, DenseOutput):
            raise ConfigError(
                f"hst cannot run the dense task {output.domain!r}: it predicts classes from its own 32 px CIFAR "
                "ViT, not from the stream's base, and has no dense head; leave hst out of --methods for a dense "
                "stream such as iTaskonomy"
            )
        return HierarchicalSideTuning(self.vit, output, CIFAR_SIDE)

    def adaptation(self, experience: CLExperience) -> None:
        """Add the experience's task modules and freeze the other tasks' (as TaskModules), the ViT included."""
        super().adaptation(experience)
        self.vit.requires_grad_(False)

    def train(self, mode: bool = True) -> HSTModel:
        """Set the mode as usual but keep the ViT in eval mode."""
        super().train(mode)
        self.vit.eval()
        return self

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.task(task_label)(x)


def hst_model(options: HSTOptions) -> HSTModel:
    """The model on the given ViT weights, or on a random ViT with a warning."""
    if options.vit_weights is None:
        warnings.warn(RANDOM_VIT_WARNING, stacklevel=2)
    return HSTModel(vit_cifar(options.vit_weights))


register_method(
    "hst",
    options=HSTOptions,
    model=lambda options, train: hst_model(options),
    trained="the current task's meta tokens, block LayerNorm copies, hierarchical side network, bridges and head "
            "(on a frozen ViT)",
    trainable=task_parts(HierarchicalSideTuning.trainable_prefixes),
    dense=False,
)
