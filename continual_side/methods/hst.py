"""Hierarchical Side-Tuning (Lin et al., "Hierarchical Side-Tuning for Vision Transformers",
arXiv:2310.05393; official code github.com/AFeng-x/HST), on a small CIFAR Vision Transformer.

Each task gets its own meta tokens, copies of the ViT blocks' LayerNorms, hierarchical side network,
bridges and head over one frozen ViT shared by all tasks
(:class:`~continual_side.models.hst.HierarchicalSideTuning`, whose docstring follows the official code
and lists our choices). The network is :func:`~continual_side.models.hst.vit_cifar` (patch 4, 32 px,
8 blocks of width 192) with the side network :data:`~continual_side.models.hst.CIFAR_SIDE`; the shared
``--base`` (a CIFAR ResNet) is not used.

The ViT's weights are the suite's packaged ``vit-cifar-distilled`` (:mod:`continual_side.hub`): the
ResNet-44 distilled into the ViT on the CIFAR-10 training images by ``benchmarks/pretrain_vit_cifar.py``
(the card beside the file gives the command; 65.41% on the 10,000 CIFAR-10 test JPEGs, where the ResNet-44
teacher scores 82.67%). These are no
ImageNet weights: with a CPU only, the distillation ran for 8 epochs (78 minutes on 2 cores), so the ViT is a weaker
feature extractor than the ResNet-44 the other methods adapt, and HST's rows compare the method on a weaker
base. ``--hst.vit-weights FILE`` takes better weights of the same architecture; ``--hst.random-vit`` keeps the
random initialisation (tests, mechanics), with a warning that its accuracy means nothing.

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

RANDOM_VIT_WARNING = "HST runs on a randomly initialised ViT (--hst.random-vit): its accuracy means nothing"


@dataclass
class HSTOptions:
    """HST's own options.

    :param vit_weights: a state_dict file of ``continual_side.models.hst.vit_cifar()`` (made by
        benchmarks/pretrain_vit_cifar.py); None: the packaged vit-cifar-distilled.
    :param random_vit: run on a randomly initialised ViT instead (a warning says its accuracy means nothing).
    """

    vit_weights: str | None = None
    random_vit: bool = False

    def __post_init__(self) -> None:
        if self.random_vit and self.vit_weights is not None:
            raise ConfigError("--hst.random-vit and --hst.vit-weights contradict each other: give one of them")


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
    """The model on the chosen ViT weights (a random ViT with a warning)."""
    if options.random_vit:
        warnings.warn(RANDOM_VIT_WARNING, stacklevel=2)
        return HSTModel(vit_cifar())
    return HSTModel(vit_cifar(options.vit_weights or True))


register_method(
    "hst",
    options=HSTOptions,
    model=lambda options, train: hst_model(options),
    trained="the current task's meta tokens, block LayerNorm copies, hierarchical side network, bridges and head "
            "(on a frozen ViT)",
    trainable=task_parts(HierarchicalSideTuning.trainable_prefixes),
    dense=False,
)
