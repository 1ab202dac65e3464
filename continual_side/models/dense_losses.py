"""The iTaskonomy tasks' losses, as the side-tuning reference trains them.

From the reference implementation's 12-task configuration: curvature uses a masked L2, the other
pixel-regression tasks a masked L1 (masked where depth is invalid), segment_semantic a softmax cross
entropy over 18 classes, and class_object a cross entropy against the target distribution over 1000
classes. Here the class_object loss is the KL divergence, which has the same gradient (it differs from
that cross entropy by the target's entropy, a constant) and is 0 exactly when prediction and target
agree; and segment_semantic ignores the unlabelled index 0, which the reference does not.

Every loss takes ``(prediction, target, mask)``; ``mask`` (bool, broadcastable to the target, e.g.
(N, 1, H, W)) selects the pixels that count and is ignored by the losses that take none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from continual_side.errors import ConfigError

SEGMENT_UNLABELLED = 0
"""segment_semantic label that carries no class (the loader's reading of the Taskonomy format)."""

ITASKONOMY_ORDER = (
    "curvature", "segment_semantic", "reshading", "keypoints3d", "keypoints2d", "edge_texture",
    "edge_occlusion", "depth_zbuffer", "depth_euclidean", "normal", "class_object", "rgb",
)
"""The paper's iTaskonomy task order (rgb last: autoencoding)."""

LossFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _masked_mean(errors: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``errors`` over the pixels (and all channels) where ``mask`` is True; 0 if none is."""
    if mask is None:
        return errors.mean()
    weight = mask.to(errors.dtype).expand_as(errors)
    return (errors * weight).sum() / weight.sum().clamp_min(1.0)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over the valid pixels; plain L1 when ``mask`` is None.

    :param prediction: (N, C, H, W).
    :param target: (N, C, H, W).
    :param mask: bool, broadcastable to the target; False pixels are left out of sum and count.
    """
    return _masked_mean((prediction - target).abs(), mask)


def masked_l2(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the valid pixels; plain MSE when ``mask`` is None (see :func:`masked_l1`)."""
    return _masked_mean((prediction - target).square(), mask)


def segmentation_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross entropy, unlabelled pixels (index 0) left out; 0 when every pixel is unlabelled.

    :param logits: (N, K, H, W).
    :param labels: int64 (N, H, W).
    :param mask: not used: the unlabelled index is the mask.
    """
    if not bool((labels != SEGMENT_UNLABELLED).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=SEGMENT_UNLABELLED)


def distribution_kl(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(target || softmax(logits)) per image, averaged over the batch.

    :param logits: (N, K) unnormalised scores.
    :param target: (N, K) distributions (rows sum to 1).
    :param mask: not used.
    """
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")


@dataclass(frozen=True)
class TaskLoss:
    """One task's decoder output and loss.

    :param out_channels: channels of the prediction (classes for the classification-like tasks).
    :param loss: ``(prediction, target, mask) -> scalar``.
    :param pixelwise: the prediction is an image (N, C, H, W); otherwise a vector per image (N, C).
    :param classification: the target is classes (labels or a distribution): accuracy is meaningful.
    """

    out_channels: int
    loss: LossFunction
    pixelwise: bool = True
    classification: bool = False


TASK_LOSSES: dict[str, TaskLoss] = {
    "curvature": TaskLoss(2, masked_l2),
    "segment_semantic": TaskLoss(18, segmentation_cross_entropy, classification=True),
    "reshading": TaskLoss(1, masked_l1),
    "keypoints3d": TaskLoss(1, masked_l1),
    "keypoints2d": TaskLoss(1, masked_l1),
    "edge_texture": TaskLoss(1, masked_l1),
    "edge_occlusion": TaskLoss(1, masked_l1),
    "depth_zbuffer": TaskLoss(1, masked_l1),
    "depth_euclidean": TaskLoss(1, masked_l1),
    "normal": TaskLoss(3, masked_l1),
    "class_object": TaskLoss(1000, distribution_kl, pixelwise=False, classification=True),
    "rgb": TaskLoss(3, masked_l1),
}
"""Each iTaskonomy task's loss, in :data:`ITASKONOMY_ORDER`; channel counts as the reference's decoders."""


def task_loss(task: str, prediction: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of ``task`` on a batch from the Taskonomy loader, using ``targets[task + "_mask"]`` if present.

    :param task: a key of :data:`TASK_LOSSES`.
    :param prediction: the task decoder's output for the batch.
    :param targets: the batch's targets, ``{domain: target, domain + "_mask": mask}``.
    :raises ConfigError: unknown task.
    """
    if task not in TASK_LOSSES:
        raise ConfigError(f"unknown iTaskonomy task {task!r}; choose one of {list(TASK_LOSSES)}")
    return TASK_LOSSES[task].loss(prediction, targets[task], targets.get(task + "_mask"))


def correct_and_count(task: str, prediction: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Correct predictions and their number in a batch of a classification-like task.

    Summed over batches, ``correct / count`` is the task's accuracy, the entry of an accuracy matrix
    that :func:`continual_side.metrics.accuracy_summary` reads. segment_semantic: labelled pixels whose
    arg-max logit is the label. class_object: images whose arg-max logit is the target's most likely class.

    :param task: a task of :data:`TASK_LOSSES` with ``classification=True``.
    :param prediction: the task decoder's logits for the batch.
    :param targets: the batch's targets from the Taskonomy loader.
    :raises ConfigError: the task is not classification-like.
    """
    if task not in TASK_LOSSES or not TASK_LOSSES[task].classification:
        classes = [name for name, spec in TASK_LOSSES.items() if spec.classification]
        raise ConfigError(f"accuracy needs a classification-like task, one of {classes}; got {task!r}")
    predicted = prediction.argmax(dim=1)
    if task == "segment_semantic":
        labels = targets[task]
        labelled = labels != SEGMENT_UNLABELLED
        return int((predicted == labels)[labelled].sum()), int(labelled.sum())
    return int((predicted == targets[task].argmax(dim=1)).sum()), int(predicted.numel())


def pack_target(task: str, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One tensor holding a view's target and mask, so that an Avalanche batch ``(x, y, t)`` can carry it.

    Pixel regression: the target's channels then the mask as one more channel (all ones when there is
    no mask), (C + 1, H, W). segment_semantic: the labels as float, (1, H, W). class_object: the
    distribution, (K,). :func:`unpack_target` inverts it (batched).

    :param task: a key of :data:`TASK_LOSSES`.
    :param target: one view's decoded target (the Taskonomy loader's).
    :param mask: its validity mask, (1, H, W) or (H, W), or None.
    """
    if task == "segment_semantic":
        return target.to(torch.float32).unsqueeze(0)
    if not TASK_LOSSES[task].pixelwise:
        return target.to(torch.float32)
    valid = torch.ones_like(target[:1]) if mask is None else mask.to(target.dtype).reshape(1, *target.shape[-2:])
    return torch.cat([target.to(torch.float32), valid.to(torch.float32)])


def unpack_target(task: str, packed: torch.Tensor) -> dict[str, torch.Tensor]:
    """A batch of :func:`pack_target` tensors as the loader's ``{task: target, task + "_mask": mask}``."""
    if task == "segment_semantic":
        return {task: packed[:, 0].round().to(torch.int64)}
    if not TASK_LOSSES[task].pixelwise:
        return {task: packed}
    return {task: packed[:, :-1], task + "_mask": packed[:, -1:] > 0.5}


class PackedTaskLoss:
    """``loss(prediction, packed)``: the task's loss on a batch of :func:`pack_target` tensors
    (the criterion an Avalanche strategy calls as ``criterion(mb_output, mb_y)``)."""

    def __init__(self, task: str):
        if task not in TASK_LOSSES:
            raise ConfigError(f"unknown iTaskonomy task {task!r}; choose one of {list(TASK_LOSSES)}")
        self.task = task

    def __call__(self, prediction: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        return task_loss(self.task, prediction, unpack_target(self.task, packed))
