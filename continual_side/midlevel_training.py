"""Make the mid-level base and its side: pre-train :class:`MidLevelEncoder` on one domain of a
Taskonomy-layout set, then distill :class:`FCN5` from it.

No Taskonomy encoder fits two CPU cores, so the suite trains its own (``continual-side pretrain``):
the encoder and a :class:`DenseDecoder` learn one domain (curvature by default, the paper's base) on the
train buildings of :func:`split_buildings`, the split the iTaskonomy stream uses, so the buildings it
validates and tests on stay unseen. Then the run measures what pre-training bought: the pre-trained
encoder and the same network at its initialisation are each frozen, a fresh decoder (same
initialisation, same batches) is trained on each one's features for as many epochs, and summary.json
holds both decoders' loss on the test buildings, beside that of a decoder trained on a blank feature
map (the best image-independent prediction).

``continual-side distill`` trains FCN5 to reproduce the encoder's feature map (MSE) on the train
buildings' images, as side-tuning initialises its sides from the base; summary.json holds its test
MSE beside that of the untrained FCN5 and of the train set's mean feature map.

Images are decoded once into memory (decoding PNGs every epoch would cost more than training), and
frozen networks run once over the data: their outputs are cached. Run folders are
``<out>/pretrain/<task>/seed-<n>/`` and ``<out>/distill/fcn5/seed-<n>/``: config.json, metrics.jsonl
(one ``epoch`` event per phase and epoch, with train and val loss), loss_curves.png and summary.json;
the weights (a plain state_dict) go to ``--weights`` or into the run folder.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from continual_side.atomic import atomic_write_bytes, atomic_write_text
from continual_side.errors import ConfigError
from continual_side.methods.common import check_device
from continual_side.models.dense_losses import TASK_LOSSES, task_loss
from continual_side.models.heads import DenseDecoder
from continual_side.models.midlevel import FCN5, MidLevelEncoder, midlevel
from continual_side.results import RunWriter, jsonable, save_figure
from continual_side.streams.taskonomy_data import (
    BuildingSplit, TaskonomyViews, default_root, find_buildings, split_buildings,
)

SUMMARY_FILE = "summary.json"
CURVES_FILE = "loss_curves.png"
_DECODE_BATCH = 50  # views decoded per DataLoader batch (only sets the progress bar's step)

Targets = dict[str, torch.Tensor]
LossOf = Callable[[torch.Tensor, Targets], torch.Tensor]
"""``(prediction, targets) -> scalar loss`` for one batch."""


def pixel_tasks() -> list[str]:
    """The domains a dense decoder can learn: those whose prediction is an image (all but class_object)."""
    return [name for name, spec in TASK_LOSSES.items() if spec.pixelwise]


def _check_training(epochs: int, batch_size: int, lr: float, image_size: int, seed: int, device: str) -> None:
    """The checks both configs share; ConfigError names the option to fix."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer (--{name.replace('_', '-')})")
    if image_size % MidLevelEncoder.feature_stride:
        raise ConfigError(f"image_size={image_size} must be a multiple of {MidLevelEncoder.feature_stride}, the "
                          "encoder's feature stride (--image-size 128 is the default)")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr={lr!r} must be a positive number (--lr)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer (--seed)")
    check_device(device)


@dataclass
class PretrainConfig:
    """Pre-train the mid-level encoder on one domain, then compare it with a randomly initialised one.

    :param data_root: a Taskonomy-layout set; None: the built-in mini-Taskonomy
        (``continual-side taskonomy render`` makes it).
    :param task: the domain to learn (the paper's base learned curvature).
    :param epochs: epochs of pre-training, and of each comparison decoder's training.
    :param batch_size: images per step.
    :param lr: Adam learning rate (higher than the paper's 1e-4 for fine-tuning: this trains from scratch).
    :param image_size: side of the square images the encoder sees (a multiple of 8).
    :param mask_with_depth: leave out of the loss the pixels without depth (nothing in range), as the
        side-tuning reference masks all its pixel losses.
    :param seed: seed of the initialisation and the batch order.
    :param device: cpu or cuda.
    :param out: root of the run folders (``<out>/pretrain/<task>/seed-<n>/``).
    :param overwrite: replace an earlier run in that folder.
    :param weights: where to save the encoder's state_dict; None: ``encoder.pt`` in the run folder.
    """

    data_root: str | None = None
    task: str = "curvature"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 128
    mask_with_depth: bool = True
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    overwrite: bool = False
    weights: str | None = None

    def validated(self) -> PretrainConfig:
        """The config itself, after checking every field.

        :raises ConfigError: naming the option that is wrong and how to fix it.
        """
        if self.task not in pixel_tasks():
            raise ConfigError(f"unknown or non-pixel task {self.task!r} (--task): choose one of {', '.join(pixel_tasks())}")
        _check_training(self.epochs, self.batch_size, self.lr, self.image_size, self.seed, self.device)
        return self


@dataclass
class DistillConfig:
    """Distill FCN5 from the mid-level encoder's feature map (MSE), as side-tuning initialises its sides.

    :param data_root: a Taskonomy-layout set; None: the built-in mini-Taskonomy.
    :param encoder_weights: the teacher encoder's state_dict; None: the hub's midlevel-curvature.
    :param epochs: training epochs.
    :param batch_size: images per step.
    :param lr: Adam learning rate.
    :param image_size: side of the square images (a multiple of 8).
    :param seed: seed of FCN5's initialisation and the batch order.
    :param device: cpu or cuda.
    :param out: root of the run folders (``<out>/distill/fcn5/seed-<n>/``).
    :param overwrite: replace an earlier run in that folder.
    :param weights: where to save FCN5's state_dict; None: ``fcn5.pt`` in the run folder.
    """

    data_root: str | None = None
    encoder_weights: str | None = None
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    image_size: int = 128
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    overwrite: bool = False
    weights: str | None = None

    def validated(self) -> DistillConfig:
        """The config itself, after checking every field.

        :raises ConfigError: naming the option that is wrong and how to fix it.
        """
        _check_training(self.epochs, self.batch_size, self.lr, self.image_size, self.seed, self.device)
        return self


@dataclass(frozen=True)
class ViewTensors:
    """Views held in memory: network inputs (N, ...) and per-view targets, as :class:`TaskonomyViews`
    returns them, stacked along the first dimension.

    :param inputs: what the network reads (normalised images, or a frozen network's features).
    :param targets: ``{domain: target, domain + "_mask": mask}`` (or any named per-view tensors).
    """

    inputs: torch.Tensor
    targets: Targets

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, Targets]:
        """The views at ``index``, on ``device``."""
        return self.inputs[index].to(device), {name: value[index].to(device) for name, value in self.targets.items()}


def decode_views(root: Path, buildings: Sequence[str], domains: Sequence[str], *, image_size: int,
                 mask_with_depth: bool, label: str) -> ViewTensors:
    """Decode every view of some buildings once (with a progress bar).

    :param root: the data root.
    :param buildings: buildings to read.
    :param domains: target domains (rgb is always read as the input).
    :param image_size: square side to resize to.
    :param mask_with_depth: see :class:`TaskonomyViews`.
    :param label: what the progress bar calls these views, e.g. "train".
    :raises DataRootError: missing or unreadable data.
    """
    views = TaskonomyViews(root, buildings, domains, image_size=image_size, mask_with_depth=mask_with_depth)
    inputs, targets = [], []
    for images, batch_targets in tqdm(DataLoader(views, batch_size=_DECODE_BATCH), desc=f"decoding {label} views",
                                      unit="batch", leave=False):
        inputs.append(images)
        targets.append(batch_targets)
    return ViewTensors(torch.cat(inputs), {name: torch.cat([t[name] for t in targets]) for name in targets[0]})


@torch.no_grad()
def frozen_outputs(network: nn.Module, data: ViewTensors, batch_size: int, device: torch.device) -> torch.Tensor:
    """A frozen network's outputs (eval mode, no graph) for every view, on the CPU."""
    network.eval()
    return torch.cat([network(data.batch(index, device)[0]).cpu()
                      for index in torch.arange(len(data)).split(batch_size)])


def run_epoch(network: nn.Module, loss_of: LossOf, data: ViewTensors, batch_size: int, device: torch.device,
              optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None) -> float:
    """One pass over ``data``: training in shuffled batches when an optimizer is given, else evaluation.

    :return: the mean over views of their batch's loss (every view counts once).
    """
    training = optimizer is not None
    network.train(training)
    order = torch.randperm(len(data), generator=generator) if training else torch.arange(len(data))
    total = 0.0
    with torch.set_grad_enabled(training):
        for index in order.split(batch_size):
            inputs, targets = data.batch(index, device)
            loss = loss_of(network(inputs), targets)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += loss.item() * len(index)
    return total / len(data)


def fit(network: nn.Module, loss_of: LossOf, train: ViewTensors, val: ViewTensors, *, epochs: int, batch_size: int,
        lr: float, seed: int, device: torch.device, writer: RunWriter, phase: str) -> list[float]:
    """Train ``network``'s parameters with Adam, logging an ``epoch`` event (train and val loss) per epoch.

    :param phase: the events' ``phase`` field and the progress bar's label.
    :param seed: seed of the batch order (the same for every phase given the same seed).
    :return: the val loss after each epoch.
    """
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    val_losses = []
    with tqdm(range(1, epochs + 1), desc=phase, unit="epoch") as bar:
        for epoch in bar:
            start = time.monotonic()
            train_loss = run_epoch(network, loss_of, train, batch_size, device, optimizer, generator)
            val_losses.append(run_epoch(network, loss_of, val, batch_size, device))
            writer.log("epoch", phase=phase, epoch=epoch, train_loss=train_loss, val_loss=val_losses[-1],
                       seconds=time.monotonic() - start)
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_losses[-1]:.4g}")
    return val_losses


class BlankFeatures(nn.Module):
    """An encoder that ignores the image: a zero feature map of the mid-level encoder's shape. A decoder
    trained on it learns the best image-independent prediction, the floor an encoder must beat."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] // MidLevelEncoder.feature_stride, x.shape[-1] // MidLevelEncoder.feature_stride)
        return x.new_zeros(x.shape[0], MidLevelEncoder.feature_dim, *size)


def loss_curves(curves: dict[str, list[float]], title: str) -> Figure:
    """Val loss per epoch, one line per phase (log scale: the phases' losses differ by orders of magnitude)."""
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss on the val buildings")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def save_state_dict(network: nn.Module, path: Path) -> str:
    """Write ``network``'s state_dict (CPU tensors only, loadable with weights_only=True) atomically.

    :return: the file's sha256.
    """
    buffer = io.BytesIO()
    torch.save({name: value.detach().cpu() for name, value in network.state_dict().items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _data_split(data_root: str | None) -> tuple[Path, BuildingSplit]:
    root = Path(data_root) if data_root is not None else default_root()
    return root, split_buildings(find_buildings(root))


def _write_summary(writer: RunWriter, summary: dict) -> dict:
    document = jsonable(summary)
    atomic_write_text(writer.path / SUMMARY_FILE, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return document


def pretrain(config: PretrainConfig) -> dict:
    """Pre-train, compare with the encoder at its initialisation, save the encoder; see the module docstring.

    :return: the summary written to summary.json.
    :raises ConfigError: a bad setting.
    :raises DataRootError: missing or unreadable data.
    """
    config.validated()
    device = check_device(config.device)
    start = time.monotonic()
    root, split = _data_split(config.data_root)
    writer = RunWriter(config.out, "pretrain", config.task, config.seed, overwrite=config.overwrite)
    writer.write_config({**jsonable(config), "data_root": str(root), "split": split})
    data = {name: decode_views(root, getattr(split, name), [config.task], image_size=config.image_size,
                               mask_with_depth=config.mask_with_depth, label=name)
            for name in ("train", "val", "test")}
    decoded = time.monotonic()

    def loss_of(prediction: torch.Tensor, targets: Targets) -> torch.Tensor:
        return task_loss(config.task, prediction, targets)

    def new_decoder() -> DenseDecoder:
        return DenseDecoder(MidLevelEncoder.feature_dim, TASK_LOSSES[config.task].out_channels,
                            MidLevelEncoder.feature_stride)

    torch.manual_seed(config.seed)
    encoder = MidLevelEncoder()
    initial_encoder = copy.deepcopy(encoder)
    network = nn.Sequential(encoder, new_decoder()).to(device)
    curves = {"pre-training": fit(network, loss_of, data["train"], data["val"], epochs=config.epochs,
                                  batch_size=config.batch_size, lr=config.lr, seed=config.seed, device=device,
                                  writer=writer, phase="pre-training")}
    pretraining_test = run_epoch(network, loss_of, data["test"], config.batch_size, device)
    pretrained = time.monotonic()
    weights = Path(config.weights) if config.weights else writer.path / "encoder.pt"
    sha256 = save_state_dict(encoder, weights)

    probe_test = {}
    for name, frozen in (("pretrained", encoder), ("random", initial_encoder.to(device)), ("blank", BlankFeatures())):
        features = {split_name: ViewTensors(frozen_outputs(frozen, views, config.batch_size, device), views.targets)
                    for split_name, views in data.items()}
        torch.manual_seed(config.seed + 1)  # every comparison decoder starts from the same weights
        decoder = new_decoder().to(device)
        phase = f"decoder on the {name} encoder"
        curves[phase] = fit(decoder, loss_of, features["train"], features["val"], epochs=config.epochs,
                            batch_size=config.batch_size, lr=config.lr, seed=config.seed, device=device,
                            writer=writer, phase=phase)
        probe_test[name] = run_epoch(decoder, loss_of, features["test"], config.batch_size, device)
    save_figure(loss_curves(curves, f"{config.task}: pre-training and frozen-encoder decoders"),
                writer.path / CURVES_FILE)
    return _write_summary(writer, {
        "task": config.task,
        "loss": TASK_LOSSES[config.task].loss.__name__,
        "views": {name: len(views) for name, views in data.items()},
        "buildings": split,
        "pretraining_test_loss": pretraining_test,
        "frozen_pretrained_test_loss": probe_test["pretrained"],
        "frozen_random_test_loss": probe_test["random"],
        "blank_feature_test_loss": probe_test["blank"],
        "decoding_seconds": decoded - start,
        "pretraining_seconds": pretrained - decoded,
        "comparison_seconds": time.monotonic() - pretrained,
        "wall_time_s": time.monotonic() - start,
        "weights": str(weights),
        "weights_sha256": sha256,
    })


def distill(config: DistillConfig) -> dict:
    """Distill FCN5 from the encoder's feature map and save it; see the module docstring.

    :return: the summary written to summary.json.
    :raises ConfigError: a bad setting.
    :raises WeightsError: the teacher's weights cannot be found or do not fit.
    :raises DataRootError: missing or unreadable data.
    """
    config.validated()
    device = check_device(config.device)
    start = time.monotonic()
    teacher = midlevel(weights=config.encoder_weights or True).to(device)
    root, split = _data_split(config.data_root)
    writer = RunWriter(config.out, "distill", "fcn5", config.seed, overwrite=config.overwrite)
    writer.write_config({**jsonable(config), "data_root": str(root), "split": split})
    data = {}
    for name in ("train", "val", "test"):
        images = decode_views(root, getattr(split, name), [], image_size=config.image_size, mask_with_depth=False,
                              label=name)
        data[name] = ViewTensors(images.inputs, {"features": frozen_outputs(teacher, images, config.batch_size, device)})

    def loss_of(prediction: torch.Tensor, targets: Targets) -> torch.Tensor:
        return F.mse_loss(prediction, targets["features"])

    torch.manual_seed(config.seed)
    side = FCN5().to(device)
    untrained_test = run_epoch(side, loss_of, data["test"], config.batch_size, device)
    curves = {"distillation": fit(side, loss_of, data["train"], data["val"], epochs=config.epochs,
                                  batch_size=config.batch_size, lr=config.lr, seed=config.seed, device=device,
                                  writer=writer, phase="distillation")}
    weights = Path(config.weights) if config.weights else writer.path / "fcn5.pt"
    sha256 = save_state_dict(side, weights)
    save_figure(loss_curves(curves, "FCN5 distilled from the mid-level encoder (MSE)"), writer.path / CURVES_FILE)
    mean_map = data["train"].targets["features"].mean(dim=0)
    return _write_summary(writer, {
        "teacher": config.encoder_weights or "hub: midlevel-curvature",
        "views": {name: len(views) for name, views in data.items()},
        "buildings": split,
        "distilled_test_mse": run_epoch(side, loss_of, data["test"], config.batch_size, device),
        "untrained_test_mse": untrained_test,
        "mean_map_test_mse": F.mse_loss(mean_map.expand_as(data["test"].targets["features"]),
                                        data["test"].targets["features"]).item(),
        "wall_time_s": time.monotonic() - start,
        "weights": str(weights),
        "weights_sha256": sha256,
    })
