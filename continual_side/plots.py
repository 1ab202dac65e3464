"""Figures of continual-learning runs, drawn without a display (Agg canvas, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure`; save it with
:func:`continual_side.results.save_figure`, which writes the PNG atomically.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from continual_side.errors import ConfigError
from continual_side.metrics import (
    accuracy_curves,
    average_accuracy_curve,
    check_accuracy_matrix,
    loss_curves,
    mean_and_std,
)

NOT_TRAINED_COLOUR = "lightgrey"


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _checked_names(task_names: Sequence[str], count: int) -> list[str]:
    names = [str(name) for name in task_names]
    if len(names) != count:
        raise ConfigError(f"need one task name per task ({count}); got {len(names)}: {names}")
    return names


def _steps_axis(axes, count: int) -> None:
    axes.set_xticks(range(1, count + 1))
    axes.set_xlim(0.7, count + 0.3)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("training step (number of tasks learned)")
    axes.grid(alpha=0.3)


def _task_lines(curves: list[np.ndarray], task_names: Sequence[str]) -> tuple[Figure, Any]:
    """A figure with one line per task: curve j drawn from training step j + 1 to the last."""
    names = _checked_names(task_names, len(curves))
    figure = _new_figure(7.0 + 0.15 * len(curves), 4.5)
    axes = figure.add_subplot()
    colours = colormaps["tab20" if len(curves) > 10 else "tab10"]
    for task, (name, curve) in enumerate(zip(names, curves)):
        steps = np.arange(task + 1, len(curves) + 1)
        axes.plot(steps, curve, marker="o", markersize=3, color=colours(task % colours.N), label=name)
    return figure, axes


def accuracy_over_stream(R: np.ndarray, task_names: Sequence[str], *, title: str = "Accuracy over the stream") -> Figure:
    """One line per task: its accuracy after each training step, from the step it was learned.

    :param R: T x T accuracy matrix (``R[i, j]`` = accuracy on task j after training on task i).
    :param task_names: one label per task.
    :param title: figure title.
    """
    curves = accuracy_curves(R)
    figure, axes = _task_lines(curves, task_names)
    _steps_axis(axes, len(curves))
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.legend(title="task", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return figure


def accuracy_matrix_heatmap(R: np.ndarray, task_names: Sequence[str], *, title: str = "Accuracy matrix") -> Figure:
    """Heatmap of R with the value in every trained cell; untrained cells (j > i) greyed out.

    :param R: T x T accuracy matrix.
    :param task_names: one label per task.
    :param title: figure title.
    """
    matrix = check_accuracy_matrix(R)
    count = matrix.shape[0]
    names = _checked_names(task_names, count)
    untrained = ~np.tri(count, dtype=bool)
    side = 3.0 + 0.55 * count
    figure = _new_figure(side + 1.5, side)
    axes = figure.add_subplot()
    colours = colormaps["viridis"].with_extremes(bad=NOT_TRAINED_COLOUR)
    image = axes.imshow(np.ma.masked_array(matrix, mask=untrained), cmap=colours, vmin=0.0, vmax=1.0)
    for i, j in zip(*np.nonzero(~untrained)):
        value = matrix[i, j]
        axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize="small",
                  color="black" if value > 0.6 else "white")
    axes.set_xticks(range(count), names, rotation=45, ha="right")
    axes.set_yticks(range(count), names)
    axes.set_xlabel("evaluated on task")
    axes.set_ylabel("after training on task")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="test accuracy", shrink=0.8)
    axes.legend(handles=[Patch(color=NOT_TRAINED_COLOUR, label="not trained yet")],
                loc="upper right", fontsize="small")
    return figure


def bar_with_error(values_by_method: Mapping[str, Sequence[float]], *,
                   title: str = "Final average accuracy", ylabel: str = "average accuracy") -> Figure:
    """One bar per method: mean over seeds, error bar = sample standard deviation over seeds.

    :param values_by_method: method name -> one value per seed (e.g. final average accuracy).
    :param title: figure title.
    :param ylabel: y-axis label.
    """
    if not values_by_method or any(len(values) == 0 for values in values_by_method.values()):
        raise ConfigError(f"bar_with_error needs at least one value for every method; got {dict(values_by_method)}")
    methods = list(values_by_method)
    stats = [mean_and_std(np.asarray(values_by_method[m], dtype=np.float64)) for m in methods]
    figure = _new_figure(2.0 + 1.0 * len(methods), 4.5)
    axes = figure.add_subplot()
    labels = [f"{method}\n(n={len(values_by_method[method])})" for method in methods]
    axes.bar(labels, [mean for mean, _ in stats], yerr=[std for _, std in stats], capsize=4,
             color=[colormaps["tab10"](k % 10) for k in range(len(methods))],
             label="mean ± std over seeds")
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("method")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.legend(loc="outside lower center", fontsize="small")
    return figure


def method_curves(matrices_by_method: Mapping[str, Sequence[np.ndarray]], *,
                  title: str = "Average accuracy over the stream") -> Figure:
    """Average accuracy over the tasks seen so far after each step, one line per method.

    Line = mean over seeds, shaded band = sample standard deviation over seeds.

    :param matrices_by_method: method name -> one T x T accuracy matrix per seed (same T for all).
    :param title: figure title.
    """
    curves_by_method = {
        method: np.stack([average_accuracy_curve(R) for R in matrices])
        for method, matrices in matrices_by_method.items() if len(matrices)
    }
    lengths = {curves.shape[1] for curves in curves_by_method.values()}
    if len(curves_by_method) != len(matrices_by_method) or len(lengths) != 1:
        raise ConfigError("method_curves needs at least one accuracy matrix per method, all with the same "
                          f"number of tasks; got {[(m, len(v)) for m, v in matrices_by_method.items()]} "
                          f"with task counts {sorted(lengths)}")
    count = lengths.pop()
    figure = _new_figure(7.5, 4.5)
    axes = figure.add_subplot()
    steps = np.arange(1, count + 1)
    for method, curves in curves_by_method.items():
        mean, std = mean_and_std(curves)
        (line,) = axes.plot(steps, mean, marker="o", markersize=3, label=f"{method} (n={curves.shape[0]})")
        axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    _steps_axis(axes, count)
    axes.set_ylabel("average accuracy on tasks seen so far")
    axes.set_title(title)
    axes.legend(loc="best", fontsize="small")
    return figure


def per_task_curves(matrices_by_method: Mapping[str, Sequence[np.ndarray]], task_names: Sequence[str], *,
                    stream: str) -> Figure:
    """One panel per method: each task's accuracy over the stream (mean over seeds, band = sample std).

    These are the side-tuning paper's incremental-learning curves, side by side for every method.

    :param matrices_by_method: each method's accuracy matrices (one per seed).
    :param task_names: one label per task.
    :param stream: stream name for the title.
    """
    count = len(task_names)
    methods = list(matrices_by_method)
    columns = min(3, len(methods))
    lines = math.ceil(len(methods) / columns)
    figure = _new_figure(4.2 * columns + 1.8, 3.4 * lines)
    panels = figure.subplots(lines, columns, sharey=True, squeeze=False).ravel()
    colours = colormaps["tab20" if count > 10 else "tab10"]
    for axes, method in zip(panels, methods):
        matrices = matrices_by_method[method]
        for j, name in enumerate(task_names):
            mean, std = mean_and_std(np.stack([accuracy_curves(R)[j] for R in matrices]))
            steps = np.arange(j + 1, count + 1)
            axes.plot(steps, mean, marker="o", markersize=3, color=colours(j % colours.N), label=name)
            axes.fill_between(steps, mean - std, mean + std, color=colours(j % colours.N), alpha=0.15)
        axes.set_title(f"{method} (n={len(matrices)})")
        axes.set_xticks(range(1, count + 1))
        axes.set_xlim(0.7, count + 0.3)
        axes.set_ylim(0.0, 1.02)
        axes.grid(alpha=0.3)
    for axes in panels[len(methods):]:
        axes.set_visible(False)
    for axes in panels[::columns]:
        axes.set_ylabel("test accuracy")
    for axes in panels[len(methods) - columns:len(methods)]:
        axes.set_xlabel("tasks learned")
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, title="task", loc="outside right center", fontsize="small")
    figure.suptitle(f"Accuracy of each task over the {stream} stream (mean over seeds ± std)")
    return figure


# Dense streams (iTaskonomy): losses, predictions and the methods' comparison ------------------------


def loss_over_stream(L: np.ndarray, task_names: Sequence[str], *, title: str = "Test loss over the stream") -> Figure:
    """One line per task: its test loss after each training step, from the step it was learned.

    Losses of different tasks have different units and sizes, so the axis is logarithmic (linear when
    some loss is 0); a task that forgets shows a line that rises after its own step.

    :param L: T x T loss matrix (``L[i, j]`` = test loss of task j after training on task i).
    :param task_names: one label per task.
    :param title: figure title.
    """
    curves = loss_curves(L)
    figure, axes = _task_lines(curves, task_names)
    if all(curve.min() > 0 for curve in curves):
        axes.set_yscale("log")
    axes.set_xticks(range(1, len(curves) + 1))
    axes.set_xlim(0.7, len(curves) + 0.3)
    axes.set_xlabel("training step (number of tasks learned)")
    axes.set_ylabel("test loss (each task's own loss)")
    axes.grid(alpha=0.3, which="both")
    axes.set_title(title)
    axes.legend(title="task", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return figure


@dataclass(frozen=True)
class DensePrediction:
    """One task's target and prediction for one view, as numpy arrays without the batch axis.

    :param domain: the task (an iTaskonomy domain).
    :param target: the decoded target: (C, H, W) images, (H, W) class indices for segment_semantic,
        (K,) a distribution for class_object.
    :param mask: (1, H, W) valid pixels, or None.
    :param prediction: the task head's output: (C, H, W), or (K,) class scores.
    """

    domain: str
    target: np.ndarray
    mask: np.ndarray | None
    prediction: np.ndarray


_GREY_DOMAINS = ("reshading", "keypoints3d", "keypoints2d", "edge_texture", "edge_occlusion", "depth_zbuffer",
                 "depth_euclidean")
_TOP_CLASSES = 8


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) clipped."""
    return np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0)


def _curvature_colour(curvature: np.ndarray) -> np.ndarray:
    """The two principal curvatures (about [-1, 1]) as red and green around mid grey, blue fixed at 0.5."""
    red_green = 0.5 + 0.5 * np.clip(curvature[:2], -1.0, 1.0)
    return _as_rgb(np.concatenate([red_green, np.full_like(red_green[:1], 0.5)]))


def _draw_dense(axes_pair, item: DensePrediction) -> None:
    """Target in the first axes, prediction in the second, drawn the same way."""
    target_axes, prediction_axes = axes_pair
    target_axes.set_title(f"{item.domain}: target", fontsize="small")
    prediction_axes.set_title("prediction", fontsize="small")
    invalid = None if item.mask is None else ~item.mask.reshape(item.mask.shape[-2:]).astype(bool)
    if item.domain == "class_object":
        predicted = np.exp(item.prediction - item.prediction.max())
        predicted /= predicted.sum()
        top = np.argsort(item.target)[::-1][:_TOP_CLASSES]
        for axes, values in ((target_axes, item.target), (prediction_axes, predicted)):
            axes.bar([str(k) for k in top], values[top], color="tab:blue")
            axes.set_ylim(0.0, 1.0)
            axes.set_xlabel("class", fontsize="x-small")
            axes.tick_params(labelsize="x-small")
        return
    if item.domain == "segment_semantic":
        palette = colormaps["tab20"].with_extremes(under="black")  # index 0, unlabelled, below vmin: black
        classes = item.prediction.shape[0]
        target_axes.imshow(np.where(item.target == 0, -1, item.target), cmap=palette, vmin=0.5, vmax=20.5,
                           interpolation="nearest")
        predicted = item.prediction.argmax(axis=0)
        prediction_axes.imshow(np.where(predicted == 0, -1, predicted), cmap=palette, vmin=0.5, vmax=20.5,
                               interpolation="nearest")
        prediction_axes.set_xlabel(f"{classes} classes, black: unlabelled", fontsize="x-small")
    elif item.domain in _GREY_DOMAINS:
        target = item.target[0].astype(np.float64)
        valid = target if invalid is None else target[~invalid]
        low, high = (np.percentile(valid, [1, 99]) if valid.size else (0.0, 1.0))
        high = high if high > low else low + 1.0
        shown = np.ma.masked_array(target, mask=invalid) if invalid is not None else target
        grey = colormaps["gray"].with_extremes(bad="darkred")
        target_axes.imshow(shown, cmap=grey, vmin=low, vmax=high)
        prediction_axes.imshow(item.prediction[0], cmap=grey, vmin=low, vmax=high)
        if invalid is not None and invalid.any():
            target_axes.set_xlabel("red: no depth (masked)", fontsize="x-small")
    elif item.domain == "normal":
        target_axes.imshow(_as_rgb((item.target + 1.0) / 2.0))
        prediction_axes.imshow(_as_rgb((item.prediction + 1.0) / 2.0))
    elif item.domain == "curvature":
        target_axes.imshow(_curvature_colour(item.target))
        prediction_axes.imshow(_curvature_colour(item.prediction))
    else:  # rgb autoencoding
        target_axes.imshow(_as_rgb(item.target))
        prediction_axes.imshow(_as_rgb(item.prediction))
    for axes in axes_pair:
        axes.set_xticks([])
        axes.set_yticks([])


def dense_predictions(image: np.ndarray, items: Sequence[DensePrediction], *,
                      title: str = "Predictions on one test view") -> Figure:
    """The input view, then each task's target and prediction side by side (three tasks per line).

    Depth, reshading, edges and keypoints are grey (target and prediction on the target's 1-99th
    percentile range; pixels without depth dark red), normals as RGB (``(n + 1) / 2``), curvature's two
    channels as red and green, segmentation with a palette (unlabelled black), class_object as bars of
    the target's most likely classes and the predicted probabilities of the same classes, rgb as an image.

    :param image: the input view, (3, H, W) in [0, 1].
    :param items: one per task, in stream order.
    :param title: figure title.
    """
    if not items:
        raise ConfigError("dense_predictions needs at least one task's prediction")
    per_line = 3
    lines = math.ceil(len(items) / per_line)
    figure = _new_figure(2.0 * 2 * per_line, 2.1 * (lines + 1))
    panels = figure.subplots(lines + 1, 2 * per_line, squeeze=False)
    for axes in panels.ravel():
        axes.set_axis_off()
    panels[0, 0].set_axis_on()
    panels[0, 0].imshow(_as_rgb(image))
    panels[0, 0].set_title("input", fontsize="small")
    panels[0, 0].set_xticks([])
    panels[0, 0].set_yticks([])
    for index, item in enumerate(items):
        line, column = 1 + index // per_line, 2 * (index % per_line)
        pair = (panels[line, column], panels[line, column + 1])
        for axes in pair:
            axes.set_axis_on()
        _draw_dense(pair, item)
    figure.suptitle(title)
    return figure


def dense_comparison(final_losses: Mapping[str, Sequence[np.ndarray]], loss_forgetting: Mapping[str, Sequence[float]],
                     task_names: Sequence[str], *, stream: str) -> Figure:
    """Left: each method's final test loss per task (mean over seeds, band = sample std; log axis).
    Right: each method's loss forgetting (mean over seeds, error bar = sample std).

    :param final_losses: method label -> one array of final losses per task (the last row of L) per seed.
    :param loss_forgetting: method label -> one loss forgetting per seed.
    :param task_names: one label per task.
    :param stream: stream name for the title.
    """
    methods = list(final_losses)
    if not methods or any(len(final_losses[m]) == 0 or len(loss_forgetting.get(m, ())) == 0 for m in methods):
        raise ConfigError("dense_comparison needs final losses and loss forgetting for every method, one per seed")
    count = len(task_names)
    figure = _new_figure(6.0 + 0.4 * count + 1.0 * len(methods), 4.8)
    loss_axes, forgetting_axes = figure.subplots(1, 2, width_ratios=[max(count, 2), max(len(methods), 2)])
    colours = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    positive = True
    for k, method in enumerate(methods):
        losses = np.stack([np.asarray(row, dtype=np.float64) for row in final_losses[method]])
        if losses.shape[1] != count:
            raise ConfigError(f"{method}: {losses.shape[1]} final losses but {count} tasks")
        mean, std = mean_and_std(losses)
        positive &= bool((mean > 0).all())
        loss_axes.plot(range(count), mean, marker="o", markersize=3, color=colours(k % colours.N),
                       label=f"{method} (n={losses.shape[0]})")
        loss_axes.fill_between(range(count), mean - std, mean + std, color=colours(k % colours.N), alpha=0.15)
    if positive:
        loss_axes.set_yscale("log")
    loss_axes.set_xticks(range(count), [str(name) for name in task_names], rotation=45, ha="right")
    loss_axes.set_ylabel("final test loss (each task's own loss)")
    loss_axes.set_title("Final test loss per task")
    loss_axes.grid(alpha=0.3, which="both")
    loss_axes.legend(fontsize="small")
    stats = [mean_and_std(np.asarray(loss_forgetting[m], dtype=np.float64)) for m in methods]
    forgetting_axes.bar([f"{m}\n(n={len(loss_forgetting[m])})" for m in methods], [mean for mean, _ in stats],
                        yerr=[std for _, std in stats], capsize=4,
                        color=[colours(k % colours.N) for k in range(len(methods))])
    forgetting_axes.axhline(0.0, color="black", linewidth=0.8)
    forgetting_axes.set_ylabel("loss forgetting (mean rise of a task's loss)")
    forgetting_axes.set_title("Loss forgetting")
    forgetting_axes.tick_params(axis="x", labelsize="small", rotation=45)
    figure.suptitle(f"Methods over the {stream} stream (mean over seeds ± std)")
    return figure
