"""Fixed features: the pre-trained base is frozen and only a head per task is trained (a linear classifier,
or a decoder for a dense task).

The side-tuning paper's "features" baseline (Zhang et al., ECCV 2020, arXiv:1912.13503; the classic
fixed-feature transfer of Razavian et al., "CNN Features off-the-shelf", CVPRW 2014). The base is
wrapped in :class:`FrozenBase` (no gradients, always in eval mode, so its BatchNorm statistics never
move), and a feature cache added to FrozenBase applies here unchanged. Trained per task:
``tasks.<t>`` (the current task's head) only, so the stream cannot forget.
"""

from __future__ import annotations

from continual_side.methods.common import SharedBaseModel, TrainConfig, pretrained_base
from continual_side.methods.registry import NoOptions, register_method, task_modules_only
from continual_side.models.sidetuned import FrozenBase


def fixed_features_model(options: object, train: TrainConfig) -> SharedBaseModel:
    """One head per task on the frozen pre-trained base."""
    return SharedBaseModel(FrozenBase(pretrained_base(train)))


register_method(
    "features",
    options=NoOptions,
    model=fixed_features_model,
    trained="the current task's head",
    trainable=task_modules_only,
)
