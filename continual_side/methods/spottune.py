"""SpotTune (Guo et al., "SpotTune: Transfer Learning through Adaptive Fine-tuning", CVPR 2019,
arXiv:1811.08737; released code github.com/gyhui14/spottune), on the CIFAR ResNet, the mid-level encoder
or Taskonomy's ResNet-50.

Each task gets its own trainable copy of every residual block, its own policy (a ResNet-8 reading the
image and choosing, per block, the frozen original or the fine-tuned copy; Gumbel-softmax at
temperature 5, straight-through) and head, over a frozen backbone shared by all tasks
(:class:`~continual_side.models.spottune.SpotTune`; its docstring lists where we differ from the
released code). Evaluation routes deterministically (argmax) unless ``sample_at_eval``.

The global variant (``global_k``: the same k blocks fine-tuned for every input, our design, see the
model's docstring) drops the copies no input uses at the end of each task's training. Its block scores
need a larger learning rate than the copies (``policy_lr_scale``).

:class:`RoutingRecorder` records, after every evaluation of a task, the fraction of its test images
routed to the fine-tuned copy of each block; it is saved in run checkpoints, and reported through its
``log`` callable when one is set (e.g. the run's ``RunWriter.log``).

Trained per task: ``tasks.<t>.finetuned_blocks``, ``tasks.<t>.policy`` (or ``global_scores``) and
``tasks.<t>.head``; nothing shared, so nothing is forgotten.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from avalanche.training.plugins import SupervisedPlugin

from continual_side.errors import ConfigError
from continual_side.methods.common import PerTaskStrategy, pretrained_base
from continual_side.methods.frozen_backbone import FrozenBackboneModel, task_parts
from continual_side.methods.registry import register_method
from continual_side.models.backbones import CifarResNet
from continual_side.models.spottune import GUMBEL_TEMPERATURE, SpotTune

GLOBAL_SCORES_LR_SCALE = 50.0  # 0.05 at the default lr 1e-3: where the model's author saw the scores settle


@dataclass
class SpotTuneOptions:
    """SpotTune's own options.

    :param global_k: fine-tune the same k blocks for every input (global variant); None: per-image policy.
    :param sample_at_eval: sample the routing at evaluation too, as the released code does (default: argmax).
    :param temperature: Gumbel-softmax temperature (5 in the released code).
    :param policy_lr_scale: the policy's learning rate (the ResNet-8, or the global variant's block scores)
        as a multiple of --lr; None: 1 for the ResNet-8, 50 for the block scores.
    """

    global_k: int | None = None
    sample_at_eval: bool = False
    temperature: float = GUMBEL_TEMPERATURE
    policy_lr_scale: float | None = None


class SpotTuneModel(FrozenBackboneModel):
    """One :class:`SpotTune` network per task over a shared frozen backbone.

    :param backbone: the pre-trained network; frozen in place.
    :param options: SpotTune's options.
    """

    def __init__(self, backbone: CifarResNet, options: SpotTuneOptions) -> None:
        blocks = len(backbone.residual_blocks())
        if options.global_k is not None and not 1 <= options.global_k <= blocks:
            raise ConfigError(f"global_k={options.global_k}: choose 1 to {blocks} blocks, "
                              "or None for the per-image policy")
        if not options.temperature > 0:
            raise ConfigError(f"temperature={options.temperature}: use a positive Gumbel-softmax temperature "
                              "(the released code's is 5)")
        if options.policy_lr_scale is not None and not options.policy_lr_scale > 0:
            raise ConfigError(f"policy_lr_scale={options.policy_lr_scale}: use a positive multiple of --lr, "
                              "or None for the default")
        super().__init__(backbone, lambda network, output: SpotTune(
            network, output, options.temperature, options.sample_at_eval, options.global_k))
        default_scale = 1.0 if options.global_k is None else GLOBAL_SCORES_LR_SCALE
        self.policy_lr_scale = default_scale if options.policy_lr_scale is None else options.policy_lr_scale

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load as usual, after dropping the copies a saved global-variant task had dropped (a checkpoint's
        tasks are rebuilt with every copy)."""
        for key, module in self.tasks.items():
            if module.global_k is None or module.copies_dropped or f"tasks.{key}.global_scores" in state_dict:
                continue
            kept = [index for index in range(module.num_blocks)
                    if f"tasks.{key}.finetuned_blocks.{index}.conv1.weight" in state_dict]
            with torch.no_grad():  # the kept blocks become the top scores, which drop_unused_copies keeps
                module.global_scores.zero_()[kept] = 1.0
            module.drop_unused_copies()
        return super().load_state_dict(state_dict, strict, assign)


def is_policy(name: str) -> bool:
    """Whether a SpotTuneModel parameter belongs to a task's policy (ResNet-8 or block scores)."""
    return ".policy." in name or name.endswith(".global_scores")


class SpotTuneStrategy(PerTaskStrategy):
    """PerTaskStrategy whose fresh Adam per task has the policy in its own group at ``policy_lr_scale`` x lr."""

    def make_optimizer(self, **kwargs):
        lr = self.optimizer.defaults["lr"]
        named = dict(self.model.named_parameters())
        self.optimizer.param_groups.clear()
        self.optimizer.state = defaultdict(dict)
        self.optimizer.add_param_group({"params": [p for n, p in named.items() if not is_policy(n)]})
        policy = [p for n, p in named.items() if is_policy(n)]
        if policy:
            self.optimizer.add_param_group({"params": policy, "lr": lr * self.model.policy_lr_scale})
        self.optimized_param_id = named


class RoutingRecorder(SupervisedPlugin):
    """Per evaluated task, the fraction of its images routed to each block's fine-tuned copy; drops the
    global variant's unused copies after each task's training.

    :attr:`routing` lists ``{"after_experience", "task", "fractions"}`` per evaluation (after_experience
    -1: evaluated before any training).
    """

    def __init__(self) -> None:
        super().__init__()
        self.routing: list[dict] = []
        self.log: Callable[..., None] | None = None

    def after_training_exp(self, strategy, **kwargs):
        for task in strategy.experience.task_labels:
            module = strategy.model.task(task)
            if module.global_k is not None:
                module.drop_unused_copies()

    def before_eval_exp(self, strategy, **kwargs):
        for task in strategy.experience.task_labels:
            strategy.model.task(task).reset_routing_stats()

    def after_eval_exp(self, strategy, **kwargs):
        for task in strategy.experience.task_labels:
            record = {"after_experience": strategy.clock.train_exp_counter - 1, "task": int(task),
                      "fractions": strategy.model.task(task).routed_fraction().tolist()}
            self.routing.append(record)
            if self.log is not None:
                self.log("routing", **record)

    def checkpoint_state(self) -> dict:
        return {"routing": self.routing}

    def restore_state(self, state: dict, strategy) -> None:
        self.routing = list(state["routing"])


register_method(
    "spottune",
    options=SpotTuneOptions,
    model=lambda options, train: SpotTuneModel(pretrained_base(train), options),
    trained="the current task's fine-tuned block copies (the used ones, for the global variant), its policy "
            "and its head",
    trainable=task_parts(SpotTune.trainable_prefixes),
    plugins=lambda options: [RoutingRecorder()],
    strategy=SpotTuneStrategy,
)
