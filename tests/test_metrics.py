"""Metrics of the accuracy matrix against hand-computed values.

The matrices use dyadic fractions (0.25, 0.625, ...) so sums and differences are exact in
float64 and most expected values can be compared with ==.
"""

import numpy as np
import pytest

from continual_side.errors import ConfigError
from continual_side.metrics import (
    accuracy_curves,
    average_accuracy,
    average_accuracy_curve,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    forward_transfer,
)

NAN = np.nan

# Forgetting peaks on the diagonal, so F == -BWT here.
R3 = np.array([
    [0.75, NAN, NAN],
    [0.5, 1.0, NAN],
    [0.25, 0.875, 0.625],
])

# Task 0 improves after it was learned (peak at step 1), task 2 ends above its diagonal value.
# The first superdiagonal (0.5, 0.625, 0.25) is read only by forward transfer.
R4 = np.array([
    [0.5, 0.5, NAN, NAN],
    [0.75, 0.5, 0.625, NAN],
    [0.625, 0.75, 0.25, 0.25],
    [0.25, 0.5, 0.5, 1.0],
])


def test_three_tasks_by_hand():
    # ACC = (0.25 + 0.875 + 0.625) / 3 = 1.75 / 3
    assert average_accuracy(R3) == 1.75 / 3
    # f0 = max(0.75, 0.5) - 0.25 = 0.5 ; f1 = max(1.0) - 0.875 = 0.125 ; F = 0.625 / 2 = 0.3125
    np.testing.assert_array_equal(forgetting_per_task(R3), [0.5, 0.125])
    assert forgetting(R3) == 0.3125
    # BWT = ((0.25 - 0.75) + (0.875 - 1.0)) / 2 = -0.625 / 2 = -0.3125
    assert backward_transfer(R3) == -0.3125


def test_four_tasks_by_hand_max_not_on_diagonal():
    # ACC = (0.25 + 0.5 + 0.5 + 1.0) / 4 = 0.5625
    assert average_accuracy(R4) == 0.5625
    # f0 = max(0.5, 0.75, 0.625) - 0.25 = 0.5 ; f1 = max(0.5, 0.75) - 0.5 = 0.25 ;
    # f2 = max(0.25) - 0.5 = -0.25 ; F = 0.5 / 3
    np.testing.assert_array_equal(forgetting_per_task(R4), [0.5, 0.25, -0.25])
    assert forgetting(R4) == pytest.approx(0.5 / 3, abs=1e-15)
    # BWT = ((0.25 - 0.5) + (0.5 - 0.5) + (0.5 - 0.25)) / 3 = 0.0: forgetting and BWT differ
    assert backward_transfer(R4) == 0.0


def test_forward_transfer_with_reference():
    # R[j-1, j] for j = 1..3: 0.5, 0.625, 0.25 ; reference[1:] = 0.5, 0.5, 0.5 (reference[0] unused)
    # FWT = ((0.5 - 0.5) + (0.625 - 0.5) + (0.25 - 0.5)) / 3 = -0.125 / 3
    assert forward_transfer(R4, [0.99, 0.5, 0.5, 0.5]) == pytest.approx(-0.125 / 3, abs=1e-15)
    assert forward_transfer(R4, [0.0, 0.25, 0.25, 0.25]) == pytest.approx(0.625 / 3, abs=1e-15)


def test_forward_transfer_needs_the_superdiagonal_and_a_reference_per_task():
    with pytest.raises(ConfigError, match=r"R\[0, 1\] = nan"):
        forward_transfer(R3, [0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match=r"one accuracy per task, shape \(4,\); got shape \(3,\)"):
        forward_transfer(R4, [0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="reference must be fractions"):
        forward_transfer(R4, [0.5, 50.0, 0.5, 0.5])


def test_side_tuning_matrix_forgets_exactly_nothing():
    # Frozen base + per-task side networks: a task's accuracy never changes after it is learned.
    # Non-dyadic values on purpose: the result must still be exactly 0.0, not float noise.
    learned = np.array([0.1, 0.7, 0.3, 0.9, 0.2 + 0.1])
    R = np.tile(learned, (5, 1))
    R[np.triu_indices(5, k=1)] = 0.1234  # untrained heads: ignored
    per_task = forgetting_per_task(R)
    assert per_task.tolist() == [0.0] * 4
    assert forgetting(R) == 0.0
    assert backward_transfer(R) == 0.0
    assert not np.signbit(forgetting(R))


def test_finetuning_matrix_has_negative_backward_transfer():
    # Naive fine-tuning: each new task drops all earlier tasks to 0.5.
    R = np.array([
        [0.95, NAN, NAN],
        [0.5, 0.96, NAN],
        [0.5, 0.5, 0.97],
    ])
    # BWT = ((0.5 - 0.95) + (0.5 - 0.96)) / 2 = -0.455 ; F = (0.45 + 0.46) / 2 = 0.455
    assert backward_transfer(R) == pytest.approx(-0.455, abs=1e-12)
    assert forgetting(R) == pytest.approx(0.455, abs=1e-12)
    assert backward_transfer(R) < 0


def test_single_task_stream():
    R = np.array([[0.625]])
    assert average_accuracy(R) == 0.625
    assert forgetting(R) == 0.0
    assert forgetting_per_task(R).shape == (0,)
    assert backward_transfer(R) == 0.0
    assert forward_transfer(R, [0.1]) == 0.0


def test_upper_triangle_is_ignored():
    filled = np.where(np.isnan(R3), 0.0, R3)
    for metric in (average_accuracy, forgetting, backward_transfer):
        assert metric(filled) == metric(R3)


def test_accuracy_curves_start_where_each_task_was_learned():
    curves = accuracy_curves(R4)
    assert [curve.tolist() for curve in curves] == [[0.5, 0.75, 0.625, 0.25], [0.5, 0.75, 0.5], [0.25, 0.5], [1.0]]
    # a_i = mean of row i over seen tasks: 0.5 ; (0.75 + 0.5) / 2 ; (0.625 + 0.75 + 0.25) / 3 ; ACC
    np.testing.assert_allclose(average_accuracy_curve(R4), [0.5, 0.625, 1.625 / 3, 0.5625], rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.zeros((2, 3)), r"square T x T .* got shape \(2, 3\)"),
        (np.zeros(3), r"got shape \(3,\)"),
        (np.zeros((0, 0)), r"non-empty"),
        (np.array([[0.5, NAN], [1.5, 0.5]]), r"R\[1, 0\] = 1.5 .* \(not percentages\)"),
        (np.array([[0.5, NAN], [-0.25, 0.5]]), r"R\[1, 0\] = -0.25"),
        (np.array([[0.5, NAN], [0.5, NAN]]), r"R\[1, 1\] = nan"),
        (np.array([[0.5, NAN], [np.inf, 0.5]]), r"R\[1, 0\] = inf"),
        ([["a", "b"], ["c", "d"]], r"must hold numbers"),
    ],
)
def test_invalid_matrix_raises_config_error(matrix, message):
    for metric in (average_accuracy, forgetting, backward_transfer, accuracy_curves):
        with pytest.raises(ConfigError, match=message):
            metric(matrix)
