"""Progressive neural networks on the frozen pre-trained base (Rusu et al., "Progressive Neural
Networks", 2016, arXiv:1606.04671).

Avalanche's ``PNN`` runs MLP columns on flattened pixels; here the columns read the frozen base's
64-d feature instead (the base is a :class:`FrozenBase`, so a feature cache on it applies). Every
task adds one column, built from Avalanche's ``PNNColumn`` (its own weights ``itoh`` plus Rusu's
non-linear lateral adapter ``U relu(V [a_j h_j])`` over the same layer of every earlier column):

    h1_k = relu(W1_k f)                                   f = base(x), 64-d; no laterals (shared input)
    h2_k = relu(itoh2_k h1_k + adapter2_k(h1_0 .. h1_{k-1}))           64 -> 64
    y_k  =      itoh3_k h2_k + adapter3_k(h2_0 .. h2_{k-1})            64 -> classes of task k

(``PNNOptions``: ``hidden=64``, ``hidden_layers=2`` by default). Columns of tasks trained earlier are frozen and only
feed the new one, so earlier tasks' outputs never change. A column's laterals come from the columns
trained before it: a column created during evaluation of a not-yet-trained task is a placeholder
(at chance) and is rebuilt when that task's training starts. Avalanche's own ``PNNLayer`` cannot be
used as is: it adds a column (and freezes the others) also when an unseen task is only evaluated,
which the run loop does for every future task.

On a base whose feature is a map (the mid-level encoder's (B, 8, H/8, W/8)) the columns run per
pixel: every layer and lateral adapter reads the channels at one pixel and no other, i.e. they are 1x1
convolutions with the same weights (computed by treating each pixel as a row, so a vector feature goes
through exactly the same arithmetic as before). For a dense task the column's output layer gives a map
as wide as the base feature (8 channels), which the task's head decodes (``make_head``: a dense decoder,
or pooling and a linear classifier for class_object), as every other method's head decodes the base's
feature; laterals stay between the columns' layers, the head has none. For a class count the output
layer is the classifier, as before.

Trained per task: the current task's column ``tasks.<t>`` (its layers, lateral adapters, output
layer and, for a dense task, head); the base and all earlier columns are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from avalanche.benchmarks.scenarios import CLExperience
from avalanche.models.pnn import PNNColumn
from torch import nn

from continual_side.errors import ConfigError
from continual_side.methods.common import TaskModules, pretrained_base
from continual_side.methods.registry import register_method, task_modules_only
from continual_side.models.backbones import CifarResNet
from continual_side.models.heads import DenseOutput, TaskOutput, feature_stride, make_head
from continual_side.models.sidetuned import FrozenBase

TRAINED_PER_TASK = ("the current task's new column: its layers, lateral adapters from earlier columns and output "
                    "layer (and head, for a dense task)")


class Column(nn.Module):
    """One task's column: a first layer on the base feature, then layers with laterals, then a head.

    :param in_dim: width (channels) of the base feature.
    :param hidden: width of every hidden layer.
    :param hidden_layers: number of hidden layers (at least 1).
    :param output: what the task predicts: a class count (the output layer gives the logits, the head is
        the identity) or a DenseOutput (the output layer gives ``in_dim`` channels that ``head`` decodes).
    :param n_earlier: number of earlier columns it takes laterals from.
    :param stride: input resolution / base feature resolution, for a dense head.
    """

    def __init__(self, in_dim: int, hidden: int, hidden_layers: int, output: TaskOutput, n_earlier: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.n_earlier = n_earlier
        self.first = nn.Linear(in_dim, hidden)
        self.hidden = nn.ModuleList(
            PNNColumn(hidden, hidden, n_earlier, adapter="mlp") for _ in range(hidden_layers - 1)
        )
        dense = isinstance(output, DenseOutput)
        self.output = PNNColumn(hidden, in_dim if dense else output, n_earlier, adapter="mlp")
        self.head = make_head(in_dim, output, stride=stride) if dense else nn.Identity()


def pixels_as_rows(feature: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) map as (B*H*W, C) rows, one per pixel; a (B, C) vector as is."""
    if feature.dim() == 2:
        return feature
    return feature.movedim(1, -1).reshape(-1, feature.shape[1])


def rows_as_pixels(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pixels_as_rows`: rows of any width W as a (B, W, H', W') map with ``like``'s batch and
    grid; the rows as they are when ``like`` is a vector."""
    if like.dim() == 2:
        return rows
    batch, _, height, width = like.shape
    return rows.reshape(batch, height, width, -1).movedim(-1, 1)


class PNNModel(TaskModules):
    """Frozen base, then one :class:`Column` per task with laterals from the earlier columns.

    :param base: the pre-trained base network; wrapped in :class:`FrozenBase`.
    :param hidden: width of the columns' hidden layers.
    :param hidden_layers: hidden layers per column.
    """

    def __init__(self, base: CifarResNet, hidden: int = 64, hidden_layers: int = 2) -> None:
        super().__init__(FrozenBase(base))
        if hidden_layers < 1 or hidden < 1:
            raise ConfigError(f"hidden={hidden}, hidden_layers={hidden_layers}: a column needs at least one "
                              "hidden layer of positive width")
        self.hidden = hidden
        self.hidden_layers = hidden_layers
        self.trained: list[str] = []  # task keys in training order: column k's laterals are trained[:k]

    def new_task_module(self, output: TaskOutput) -> Column:
        return Column(self.base.feature_dim, self.hidden, self.hidden_layers, output, len(self.trained),
                      stride=feature_stride(self.base))

    def adaptation(self, experience: CLExperience) -> None:
        keys = [str(task) for task in experience.task_labels]
        if self.training:
            for key in keys:
                if key in self.tasks and key not in self.trained:
                    del self.tasks[key]  # an evaluation placeholder: rebuild with laterals from every trained column
        super().adaptation(experience)
        if self.training:
            self.trained.extend(key for key in keys if key not in self.trained)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        column = self.task(task_label)
        columns = [self.tasks[key] for key in self.trained[: column.n_earlier]] + [column]
        feature = self.base(x)
        rows = pixels_as_rows(feature)
        hs = [F.relu(c.first(rows)) for c in columns]
        for depth in range(self.hidden_layers - 1):
            # column j reads this layer's input in columns 0..j (PNNColumn: earlier ones, then its own)
            hs = [F.relu(c.hidden[depth](hs[: j + 1])) for j, c in enumerate(columns)]
        return column.head(rows_as_pixels(column.output(hs), feature))


@dataclass
class PNNOptions:
    """PNN's own options.

    :param hidden: width of every column's hidden layers.
    :param hidden_layers: hidden layers per column (at least 1).
    """

    hidden: int = 64
    hidden_layers: int = 2


register_method(
    "pnn",
    options=PNNOptions,
    model=lambda options, train: PNNModel(pretrained_base(train), options.hidden, options.hidden_layers),
    trained=TRAINED_PER_TASK,
    trainable=task_modules_only,
)
