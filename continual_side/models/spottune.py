"""SpotTune on a ResNet-style backbone (CIFAR ResNet, mid-level encoder or Taskonomy's ResNet-50): per-image
routing between frozen and fine-tuned residual blocks.

Guo, Shi, Kumar, Grauman, Rosing, Feris, "SpotTune: Transfer Learning through Adaptive Fine-tuning",
CVPR 2019, arXiv:1811.08737; released code github.com/gyhui14/spottune.

Every residual block l exists twice: the pre-trained original F_l and a trainable copy F̂_l started from
the same weights. A policy network reads the image and emits two logits per block; the decision
I_l(x) in {0, 1} picks the block's output::

    x_l = (1 - I_l(x)) * F_l(x_{l-1}) + I_l(x) * F̂_l(x_{l-1})        (each block ends in its ReLU)

As in the released code: both paths run in training and the decision selects per sample (so the copies'
BatchNorm statistics come from the whole batch); the policy is
a ResNet of the main network's design with one block per stage (here ResNet-8 from
:class:`CifarResNet`, randomly initialised) emitting 2 x L raw logits; decisions are Gumbel-softmax
samples at temperature 5 with the straight-through estimator; one cross-entropy loss trains copies,
policy and head together.

Where we differ from the released code, on purpose:

* The original path is entirely frozen: no gradient, eval mode, BatchNorm statistics fixed (the released
  code trains the original path's BatchNorm and its stem conv). The stem stays frozen too, and so does the
  backbone's ``tail`` after the last block (the CIFAR ResNet's pooling, the mid-level encoder's
  compression to its 8-channel map), which the head reads as it reads the frozen backbone's feature.
* Evaluation is deterministic (argmax of the logits) unless ``sample_at_eval=True``, which reproduces
  the released code's Gumbel sampling at test time. In evaluation each image runs only the path it is
  routed to, so inference costs one block per block.

The global variant (``global_k``: fine-tune the same k blocks for every input) is our design: the
paper's auxiliary losses for it could not be read offline and the released code has none. Its policy
is input-independent, one learned score per block, so "the same blocks for all inputs" holds by
construction. Training picks the top k of the Gumbel-perturbed scores (Gumbel-top-k: k distinct blocks
sampled from softmax(scores)), straight-through with the gradient of softmax(perturbed scores / 5);
evaluation takes the top k scores. Every step therefore fine-tunes exactly k blocks and no budget loss
is needed (a budget-plus-entropy loss on per-block probabilities, which we tried first, stalled at a
symmetric point under Adam). :meth:`SpotTune.drop_unused_copies` fixes the choice at the end of a task
and deletes the copies no input uses.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import TaskOutput, feature_stride, make_head
from continual_side.models.sidetuned import FrozenBase

GUMBEL_TEMPERATURE = 5.0  # the released code's default
_EPS = 1e-20  # the released code's guard inside the Gumbel logs


def _gumbel_perturbed(logits: torch.Tensor) -> torch.Tensor:
    """logits + Gumbel(0, 1) noise, computed as in the released code."""
    uniform = torch.rand_like(logits)
    return logits - torch.log(-torch.log(uniform + _EPS) + _EPS)


def _straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """The value of `hard` exactly (soft - soft.detach() is exactly 0), with the gradient of `soft`."""
    return hard + (soft - soft.detach())


def gumbel_straight_through(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """One-hot samples of softmax((logits + Gumbel noise) / temperature), with the soft sample's gradient.

    :param logits: (..., n) unnormalised log-probabilities.
    :param temperature: the softmax temperature of the soft sample (its gradient's sharpness).
    :returns: (..., n), exactly one-hot in value.
    """
    soft = F.softmax(_gumbel_perturbed(logits) / temperature, dim=-1)
    return _straight_through(F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype), soft)


def gumbel_top_k(scores: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """A 0/1 mask of k distinct entries sampled from softmax(scores), with a soft straight-through gradient.

    :param scores: (n,) unnormalised log-probabilities.
    :param k: how many entries to pick.
    :param temperature: the softmax temperature of the soft sample.
    :returns: (n,), exactly k ones in value.
    """
    perturbed = _gumbel_perturbed(scores)
    hard = torch.zeros_like(scores).scatter(0, perturbed.topk(k).indices, 1.0)
    return _straight_through(hard, F.softmax(perturbed / temperature, dim=-1))


def _route(x: torch.Tensor, tuned: torch.Tensor, frozen_block: nn.Module, tuned_block: nn.Module) -> torch.Tensor:
    """Each image through one block only: `tuned_block` where `tuned` (B,) is True, else `frozen_block`."""
    if not tuned.any():
        return frozen_block(x)
    if tuned.all():
        return tuned_block(x)
    tuned_rows, frozen_rows = tuned.nonzero().flatten(), (~tuned).nonzero().flatten()
    tuned_out, frozen_out = tuned_block(x[tuned_rows]), frozen_block(x[frozen_rows])
    out = tuned_out.new_empty((x.shape[0], *tuned_out.shape[1:]))
    out[tuned_rows], out[frozen_rows] = tuned_out, frozen_out
    return out


class SpotTune(nn.Module):
    """One task's SpotTune network on a frozen backbone: output = head(tail(routed blocks(x))).

    Trainable (names start with :attr:`trainable_prefixes`): ``finetuned_blocks`` (the copies, their
    BatchNorm statistics update in training), ``policy`` (ResNet-8, per-image variant) or
    ``global_scores`` (global variant) and ``head``. The base is shared, frozen and always in eval mode.

    :attr:`routed_counts` / :attr:`routed_images` count, per block, the images routed to the fine-tuned
    copy since the last :meth:`reset_routing_stats`; :meth:`routed_fraction` is their ratio.

    :param base: the pre-trained network; it is frozen in place and shared, never copied.
    :param output: what the task's head predicts (a class count or a DenseOutput).
    :param temperature: Gumbel-softmax temperature (5 in the released code); may be changed between steps.
    :param sample_at_eval: sample decisions at evaluation too, as the released code does.
    :param global_k: fine-tune the same ``global_k`` blocks for every input (global variant); None routes
        per image. The scores' gradient is damped by the temperature: on a 32-image toy task (ResNet-20,
        Adam) they settled within 80 steps with their own learning rate 0.05 (copies and head 3e-3),
        but not in 40 steps with the shared 3e-3, where evaluation's top k still differed from training's.
    """

    trainable_prefixes = ("finetuned_blocks.", "policy.", "global_scores", "head.")

    def __init__(
        self,
        base: CifarResNet,
        output: TaskOutput,
        temperature: float = GUMBEL_TEMPERATURE,
        sample_at_eval: bool = False,
        global_k: int | None = None,
    ):
        super().__init__()
        self.base = FrozenBase(base)
        blocks = base.residual_blocks()
        self.num_blocks = len(blocks)
        self.finetuned_blocks = nn.ModuleDict(
            {str(index): copy.deepcopy(block).requires_grad_(True) for index, block in enumerate(blocks)}
        )
        self.temperature = temperature
        self.sample_at_eval = sample_at_eval
        self.global_k = global_k
        if global_k is None:
            self.policy = CifarResNet(blocks_per_stage=1, num_classes=2 * self.num_blocks)  # ResNet-8
        else:
            self.global_scores = nn.Parameter(torch.zeros(self.num_blocks))
        self.head = make_head(base.feature_dim, output, stride=feature_stride(base))
        # plain CPU tensors, not buffers: counting is no training, so the model's tensors stay as trained
        self.routed_counts = torch.zeros(self.num_blocks)
        self.routed_images = torch.zeros(())

    @property
    def copies_dropped(self) -> bool:
        """Whether :meth:`drop_unused_copies` has fixed the global choice."""
        return self.global_k is not None and not hasattr(self, "global_scores")

    def decisions(self, x: torch.Tensor) -> torch.Tensor:
        """I_l(x) for every image and block, (B, L): exactly 0/1, differentiable in training.

        :param x: (B, 3, H, W) images.
        """
        batch = x.shape[0]
        if self.copies_dropped:
            kept = torch.tensor([str(index) in self.finetuned_blocks for index in range(self.num_blocks)])
            return kept.to(x.dtype).to(x.device).expand(batch, -1)
        sample = self.training or self.sample_at_eval
        if self.global_k is not None:  # one decision per block, shared by the batch
            if sample:
                return gumbel_top_k(self.global_scores, self.global_k, self.temperature).expand(batch, -1)
            return self._top_k_mask().to(x.device).expand(batch, -1)
        logits = self.policy(x).view(batch, self.num_blocks, 2)
        if sample:
            one_hot = gumbel_straight_through(logits, self.temperature)
        else:
            one_hot = F.one_hot(logits.argmax(-1), 2).to(logits.dtype)
        return one_hot[..., 1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's tail of the routed blocks' output (the base's feature shape); updates the routing counts."""
        decisions = self.decisions(x)
        self.routed_counts += decisions.detach().sum(0).cpu()
        self.routed_images += x.shape[0]
        network = self.base.network
        out = network.stem(x)
        for index, frozen_block in enumerate(network.residual_blocks()):
            key = str(index)
            if key not in self.finetuned_blocks:
                out = frozen_block(out)
            elif self.training:
                choice = decisions[:, index].view(-1, 1, 1, 1)
                out = (1 - choice) * frozen_block(out) + choice * self.finetuned_blocks[key](out)
            else:
                out = _route(out, decisions[:, index] > 0.5, frozen_block, self.finetuned_blocks[key])
        return network.tail(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The task's output: logits (B, classes), or a dense prediction."""
        return self.head(self.features(x))

    def _top_k_mask(self) -> torch.Tensor:
        """1 for the global variant's k highest-scoring blocks, 0 elsewhere, (L,)."""
        scores = self.global_scores.detach()
        return torch.zeros_like(scores).scatter(0, scores.topk(self.global_k).indices, 1.0)

    def drop_unused_copies(self) -> list[int]:
        """Global variant: fix the choice (the top k scores), delete the other copies and the scores.

        Call once at the end of the task's training; the chosen copies stay trainable.

        :returns: the indices of the fine-tuned blocks, ascending.
        :raises RuntimeError: for the per-image variant, or when called twice.
        """
        if self.global_k is None or self.copies_dropped:
            raise RuntimeError("drop_unused_copies is for the global variant, once")
        chosen = self._top_k_mask().nonzero().flatten().tolist()
        for index in range(self.num_blocks):
            if index not in chosen:
                del self.finetuned_blocks[str(index)]
        del self.global_scores
        return chosen

    def routed_fraction(self) -> torch.Tensor:
        """Per block, the fraction of images routed to the fine-tuned copy since the last reset, (L,)."""
        return self.routed_counts / self.routed_images.clamp(min=1)

    def reset_routing_stats(self) -> None:
        """Start counting routed images afresh (e.g. at the start of an evaluation)."""
        self.routed_counts.zero_()
        self.routed_images.zero_()
