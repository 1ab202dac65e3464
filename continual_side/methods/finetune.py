"""Fine-tuning: the pre-trained base is trained on every task in turn and shared by all of them.

The side-tuning paper's "fine-tuning" baseline (Zhang et al., ECCV 2020, arXiv:1912.13503). Each task
has its own head (a linear classifier, or a decoder for a dense task); the base's weights and BatchNorm
statistics follow the latest task, so the earlier tasks' heads see drifting features: this is the method
that forgets (catastrophic forgetting, McCloskey & Cohen 1989). Trained per task: the shared base (``base``) and the current task's head
``tasks.<t>``; earlier heads are frozen. EWC and LwF are this model plus a regulariser.
"""

from __future__ import annotations

from continual_side.methods.common import SharedBaseModel, TrainConfig, pretrained_base, trainable_features
from continual_side.methods.registry import NoOptions, register_method, shared_base_and_task


def finetuned_base_model(options: object, train: TrainConfig) -> SharedBaseModel:
    """A trainable copy of the pre-trained base shared by all tasks, one head per task."""
    return SharedBaseModel(trainable_features(pretrained_base(train)))


register_method(
    "finetune",
    options=NoOptions,
    model=finetuned_base_model,
    trained="the shared base and the current task's head",
    trainable=shared_base_and_task,
)
