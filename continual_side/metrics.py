"""Continual-learning metrics as pure functions of the accuracy matrix.

``R[i, j]`` is the accuracy (a fraction in [0, 1]) on task ``j`` after training on task ``i``, for a
stream of ``T`` tasks. In a task-incremental stream the head of task ``j`` is untrained before step
``j``, so entries with ``j > i`` are at chance and every metric ignores them, except
:func:`forward_transfer`, which by definition reads ``R[j - 1, j]``.
"""

import numpy as np

from continual_side.errors import ConfigError

MATRIX_MEANING = "R[i, j] = accuracy on task j after training on task i"


def _square_matrix(values: np.ndarray, what: str, meaning: str) -> np.ndarray:
    """``values`` as a non-empty square float64 array, or a ConfigError saying what ``what`` must be."""
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what} must hold numbers ({meaning}); {error}") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ConfigError(f"{what} must be a non-empty square T x T array ({meaning}); got shape {matrix.shape}")
    return matrix


def check_accuracy_matrix(R: np.ndarray, *, upper_diagonal: bool = False) -> np.ndarray:
    """Return ``R`` as a float64 array after checking its shape and the entries the metrics read.

    Raises :class:`ConfigError` naming the first bad entry.

    :param R: accuracy matrix.
    :param upper_diagonal: also check the entries ``R[j - 1, j]`` (read by forward transfer).
    """
    matrix = _square_matrix(R, "accuracy matrix", MATRIX_MEANING)
    read = np.tri(matrix.shape[0], dtype=bool)
    if upper_diagonal:
        read |= np.eye(matrix.shape[0], k=1, dtype=bool)
    for i, j in zip(*np.nonzero(read)):
        value = matrix[i, j]
        if not np.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ConfigError(
                f"accuracy matrix entry R[{i}, {j}] = {value} is not a finite fraction in [0, 1]; "
                "pass accuracies as fractions (not percentages) and evaluate every trained task"
            )
    return matrix


def average_accuracy(R: np.ndarray) -> float:
    """Final average accuracy ``A = (1/T) * sum_j R[T-1, j]``: mean of the last row.

    :param R: T x T accuracy matrix.
    :return: accuracy over all tasks after training on the whole stream.
    """
    return float(np.mean(check_accuracy_matrix(R)[-1]))


def forgetting_per_task(R: np.ndarray) -> np.ndarray:
    """Forgetting of each task but the last (Chaudhry et al. 2018, "Riemannian Walk", eq. 4).

    ``f_j = max_{l in j..T-2} R[l, j] - R[T-1, j]`` for ``j = 0..T-2``: the drop from the best
    accuracy the task ever had before the final step to its final accuracy. It is negative when
    the final accuracy is above every earlier one. Exact: a task whose accuracy never changes
    has ``f_j == 0.0`` exactly (float64 ``x - x``).

    :param R: T x T accuracy matrix.
    :return: array of length ``T - 1`` (empty for ``T = 1``).
    """
    matrix = check_accuracy_matrix(R)
    last = matrix.shape[0] - 1
    best_before_last = [matrix[j:last, j].max() for j in range(last)]
    return np.asarray(best_before_last, dtype=np.float64) - matrix[last, :last]


def forgetting(R: np.ndarray) -> float:
    """Average forgetting ``F = (1/(T-1)) * sum_{j<T-1} f_j`` (Chaudhry et al. 2018).

    See :func:`forgetting_per_task` for ``f_j``. A stream of one task forgets nothing: 0.0.

    :param R: T x T accuracy matrix.
    """
    per_task = forgetting_per_task(R)
    return float(per_task.mean()) if per_task.size else 0.0


def backward_transfer(R: np.ndarray) -> float:
    """Backward transfer ``BWT = (1/(T-1)) * sum_{j<T-1} (R[T-1, j] - R[j, j])``.

    Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning", eq. 3: how
    learning later tasks changed the accuracy of each task from when it was learned; negative
    means forgetting. 0.0 for ``T = 1``.

    :param R: T x T accuracy matrix.
    """
    matrix = check_accuracy_matrix(R)
    last = matrix.shape[0] - 1
    if last == 0:
        return 0.0
    return float(np.mean(matrix[last, :last] - np.diag(matrix)[:last]))


def forward_transfer(R: np.ndarray, reference: np.ndarray) -> float:
    """Forward transfer ``FWT = (1/(T-1)) * sum_{j>=1} (R[j-1, j] - reference[j])``.

    Lopez-Paz & Ranzato 2017, eq. 4: accuracy on task ``j`` just *before* training on it, minus
    the accuracy ``reference[j]`` of a reference model on task ``j`` (in the paper a model at
    random initialisation, i.e. about chance). It reads the upper diagonal ``R[j-1, j]`` on
    purpose, so those entries must be real evaluations. ``reference[0]`` is not used. 0.0 for
    ``T = 1``.

    :param R: T x T accuracy matrix.
    :param reference: length-T accuracies of the reference model on each task.
    """
    matrix = check_accuracy_matrix(R, upper_diagonal=True)
    count = matrix.shape[0]
    baseline = np.asarray(reference, dtype=np.float64)
    if baseline.shape != (count,):
        raise ConfigError(f"forward-transfer reference must hold one accuracy per task, shape ({count},); "
                          f"got shape {baseline.shape}")
    if not np.all(np.isfinite(baseline[1:]) & (baseline[1:] >= 0.0) & (baseline[1:] <= 1.0)):
        raise ConfigError(f"forward-transfer reference must be fractions in [0, 1]; got {baseline.tolist()}")
    if count == 1:
        return 0.0
    before_training = np.diag(matrix, k=1)
    return float(np.mean(before_training - baseline[1:]))


def accuracy_curves(R: np.ndarray) -> list[np.ndarray]:
    """Accuracy of each task over the stream, from the step it was learned on.

    ``curves[j] = R[j:, j]``: ``curves[j][k]`` is the accuracy on task ``j`` after training step
    ``j + k``. These are the per-task curves of the side-tuning paper's incremental-learning plots.

    :param R: T x T accuracy matrix.
    :return: list of T arrays, of lengths T, T-1, ..., 1.
    """
    matrix = check_accuracy_matrix(R)
    return [matrix[j:, j].copy() for j in range(matrix.shape[0])]


def average_accuracy_curve(R: np.ndarray) -> np.ndarray:
    """Average accuracy over the tasks seen so far after each step: ``a_i = mean_{j<=i} R[i, j]``.

    Its last value is :func:`average_accuracy`. Used to compare methods over a stream.

    :param R: T x T accuracy matrix.
    :return: array of length T.
    """
    matrix = check_accuracy_matrix(R)
    return np.asarray([matrix[i, : i + 1].mean() for i in range(matrix.shape[0])])


def mean_and_std(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation over axis 0 (std 0 for a single sample)."""
    ddof = 1 if samples.shape[0] > 1 else 0
    return samples.mean(axis=0), samples.std(axis=0, ddof=ddof)


# Loss matrices: dense tasks (iTaskonomy) ------------------------------------------------------------
#
# ``L[i, j]`` is the test loss on task ``j`` after training on task ``i``. Losses of different tasks
# have different units, so they are compared per task (rises, curves), never averaged into one score
# across tasks. Entries with ``j > i`` (task not trained yet) are never read.

LOSS_MATRIX_MEANING = "L[i, j] = test loss on task j after training on task i"


def check_loss_matrix(L: np.ndarray) -> np.ndarray:
    """Return ``L`` as a float64 array after checking its shape and that the entries read are losses.

    Raises :class:`ConfigError` naming the first entry on or below the diagonal that is not a finite,
    non-negative number.

    :param L: T x T loss matrix.
    """
    matrix = _square_matrix(L, "loss matrix", LOSS_MATRIX_MEANING)
    for i, j in zip(*np.tril_indices(matrix.shape[0])):
        if not np.isfinite(matrix[i, j]) or matrix[i, j] < 0.0:
            raise ConfigError(
                f"loss matrix entry L[{i}, {j}] = {matrix[i, j]} is not a finite non-negative loss; "
                "evaluate every trained task after each training step"
            )
    return matrix


def loss_forgetting_per_task(L: np.ndarray) -> np.ndarray:
    """Forgetting of each task but the last, on its loss: Chaudhry et al.'s formula for losses.

    ``g_j = L[T-1, j] - min_{l in j..T-2} L[l, j]`` for ``j = 0..T-2``: how far the final loss has
    risen above the lowest loss the task had before the final step. It is
    :func:`forgetting_per_task` with the accuracy ``R`` replaced by ``-L`` (lower loss is better), so
    both read the same steps. It equals ``L[T-1, j] - L[j, j]`` when the loss was lowest right after
    training on task ``j``, and is negative when the final loss is below every earlier one. Exact: a
    task whose loss never changes (side-tuning's frozen base and per-task sides) has ``g_j == 0.0``.

    :param L: T x T loss matrix.
    :return: array of length ``T - 1`` (empty for ``T = 1``).
    """
    matrix = check_loss_matrix(L)
    last = matrix.shape[0] - 1
    lowest_before_last = [matrix[j:last, j].min() for j in range(last)]
    return matrix[last, :last] - np.asarray(lowest_before_last, dtype=np.float64)


def loss_forgetting(L: np.ndarray) -> float:
    """Average loss forgetting ``(1/(T-1)) * sum_{j<T-1} g_j`` (see :func:`loss_forgetting_per_task`).

    An average of loss rises in each task's own units: compare it between methods on one stream, not
    between streams. A stream of one task forgets nothing: 0.0.

    :param L: T x T loss matrix.
    """
    per_task = loss_forgetting_per_task(L)
    return float(per_task.mean()) if per_task.size else 0.0


def loss_curves(L: np.ndarray) -> list[np.ndarray]:
    """Loss of each task over the stream, from the step it was learned on: ``curves[j] = L[j:, j]``.

    :param L: T x T loss matrix.
    :return: list of T arrays, of lengths T, T-1, ..., 1.
    """
    matrix = check_loss_matrix(L)
    return [matrix[j:, j].copy() for j in range(matrix.shape[0])]


def accuracy_summary(R: np.ndarray, tasks: list[int]) -> dict[str, float]:
    """Accuracy metrics of the classification-like tasks of a stream whose other tasks have no accuracy.

    Only the columns ``tasks`` of ``R`` are read (on and below the diagonal); the other columns may
    hold anything, e.g. NaN for the regression tasks of iTaskonomy. Per task ``j``: its final accuracy
    ``R[T-1, j]`` and, for ``j < T-1``, its forgetting as :func:`forgetting_per_task`.

    :param R: T x T accuracy matrix (fractions in [0, 1]).
    :param tasks: the distinct indices of the classification-like tasks.
    :return: a flat dict of floats: ``"average_accuracy"`` (mean final accuracy over ``tasks``),
        ``"forgetting"`` (mean forgetting over those before the last task; 0.0 if none),
        ``"accuracy[j]"`` per task and ``"forgetting[j]"`` per task before the last.
    """
    try:
        matrix = np.array(R, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"accuracy matrix must hold numbers ({MATRIX_MEANING}); {error}") from None
    if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]:  # any other shape: check_accuracy_matrix says so
        count = matrix.shape[0]
        if not tasks or len(set(tasks)) != len(tasks) or not all(0 <= j < count for j in tasks):
            raise ConfigError(f"tasks {list(tasks)} must be distinct task indices in 0..{count - 1}, at least one")
        matrix[:, [j for j in range(count) if j not in tasks]] = 0.0  # unread: keep the checks quiet
    matrix = check_accuracy_matrix(matrix)
    last = matrix.shape[0] - 1
    per_task_forgetting = forgetting_per_task(matrix)
    summary = {f"accuracy[{j}]": float(matrix[last, j]) for j in tasks}
    summary.update({f"forgetting[{j}]": float(per_task_forgetting[j]) for j in tasks if j < last})
    forgotten = [per_task_forgetting[j] for j in tasks if j < last]
    summary["average_accuracy"] = float(np.mean(matrix[last, tasks]))
    summary["forgetting"] = float(np.mean(forgotten)) if forgotten else 0.0
    return summary
