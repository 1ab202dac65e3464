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

Trained per task: the current task's column ``tasks.<t>`` (its layers, lateral adapters and output
layer); the base and all earlier columns are fixed.
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
from continual_side.models.sidetuned import FrozenBase

TRAINED_PER_TASK = "the current task's new column: its layers, lateral adapters from earlier columns and output layer"


class Column(nn.Module):
    """One task's column: a first layer on the base feature, then layers with laterals.

    :param in_dim: width of the base feature.
    :param hidden: width of every hidden layer.
    :param hidden_layers: number of hidden layers (at least 1).
    :param n_classes: output width (the task's classes).
    :param n_earlier: number of earlier columns it takes laterals from.
    """

    def __init__(self, in_dim: int, hidden: int, hidden_layers: int, n_classes: int, n_earlier: int) -> None:
        super().__init__()
        self.n_earlier = n_earlier
        self.first = nn.Linear(in_dim, hidden)
        self.hidden = nn.ModuleList(
            PNNColumn(hidden, hidden, n_earlier, adapter="mlp") for _ in range(hidden_layers - 1)
        )
        self.output = PNNColumn(hidden, n_classes, n_earlier, adapter="mlp")


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

    def new_task_module(self, n_classes: int) -> Column:
        return Column(self.base.feature_dim, self.hidden, self.hidden_layers, n_classes, len(self.trained))

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
        hs = [F.relu(c.first(feature)) for c in columns]
        for depth in range(self.hidden_layers - 1):
            # column j reads this layer's input in columns 0..j (PNNColumn: earlier ones, then its own)
            hs = [F.relu(c.hidden[depth](hs[: j + 1])) for j, c in enumerate(columns)]
        return column.output(hs)



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
    trained="the current task's new column: its layers, lateral adapters from earlier columns and output layer",
    trainable=task_modules_only,
)
