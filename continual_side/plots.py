"""Figures of continual-learning runs, drawn without a display (Agg canvas, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure`; save it with
:func:`continual_side.results.save_figure`, which writes the PNG atomically.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from continual_side.errors import ConfigError
from continual_side.metrics import accuracy_curves, average_accuracy_curve, check_accuracy_matrix, mean_and_std

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


def accuracy_over_stream(R: np.ndarray, task_names: Sequence[str], *, title: str = "Accuracy over the stream") -> Figure:
    """One line per task: its accuracy after each training step, from the step it was learned.

    :param R: T x T accuracy matrix (``R[i, j]`` = accuracy on task j after training on task i).
    :param task_names: one label per task.
    :param title: figure title.
    """
    curves = accuracy_curves(R)
    names = _checked_names(task_names, len(curves))
    figure = _new_figure(7.0 + 0.15 * len(curves), 4.5)
    axes = figure.add_subplot()
    colours = colormaps["tab20" if len(curves) > 10 else "tab10"]
    for task, (name, curve) in enumerate(zip(names, curves)):
        steps = np.arange(task + 1, len(curves) + 1)
        axes.plot(steps, curve, marker="o", markersize=3, color=colours(task % colours.N), label=name)
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
