"""Run folders: every file written atomically, summaries equal the metrics, exact round trips."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from PIL import Image

from continual_side import __version__, metrics, plots
from continual_side.errors import ConfigError
from continual_side.results import (
    RUN_FILES,
    RunFolderError,
    RunWriter,
    atomic_write_text,
    load_run,
    run_folder,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["airplane, automobile", "bird/cat", "deer-dog", "frog"]


@dataclasses.dataclass
class ToyConfig:
    lr: float
    data_root: Path
    merge: str = "alpha"


def _matrix() -> np.ndarray:
    """Random float64 accuracies (full-precision values stress the csv round trip), NaN above the diagonal."""
    R = np.random.default_rng(0).random((4, 4))
    R[np.triu_indices(4, k=2)] = np.nan
    return R


@pytest.fixture()
def finished_run(tmp_path):
    writer = RunWriter(tmp_path, "split_cifar10", "side_tuning", 3)
    writer.write_config(ToyConfig(lr=0.01, data_root=Path("/data/cifar")))
    writer.log("train_epoch", experience=0, epoch=0, loss=np.float32(2.5), accuracy=0.25)
    writer.log("train_epoch", experience=0, epoch=1, loss=float("nan"), accuracy=np.float64(0.5))
    writer.log("eval", after_experience=0, task=np.int64(0), accuracy=0.75)
    writer.write_acc_matrix(_matrix(), TASKS)
    summary = writer.write_summary(_matrix(), wall_time_s=12.5, trainable_parameters=np.int64(1234),
                                   extra={"merge": "alpha"})
    return writer, summary


def test_folder_layout_and_no_temp_files(finished_run, tmp_path):
    writer, _ = finished_run
    assert writer.path == tmp_path / "split_cifar10" / "side_tuning" / "seed-3"
    assert sorted(os.listdir(writer.path)) == sorted(RUN_FILES)


def test_summary_equals_metric_functions(finished_run):
    writer, summary = finished_run
    R = _matrix()
    on_disk = json.loads((writer.path / "summary.json").read_text())
    assert on_disk == summary
    assert on_disk["average_accuracy"] == metrics.average_accuracy(R)
    assert on_disk["forgetting"] == metrics.forgetting(R)
    assert on_disk["backward_transfer"] == metrics.backward_transfer(R)
    assert on_disk["forgetting_per_task"] == metrics.forgetting_per_task(R).tolist()
    assert on_disk["final_accuracy_per_task"] == R[-1].tolist()
    assert on_disk["task_names"] == TASKS
    assert (on_disk["num_tasks"], on_disk["wall_time_s"], on_disk["trainable_parameters"]) == (4, 12.5, 1234)
    assert (on_disk["stream"], on_disk["method"], on_disk["seed"]) == ("split_cifar10", "side_tuning", 3)
    assert on_disk["extra"] == {"merge": "alpha"}
    assert on_disk["continual_side_version"] == __version__


def test_load_run_round_trips_exactly(finished_run):
    writer, summary = finished_run
    run = load_run(writer.path)
    np.testing.assert_array_equal(run.R, _matrix())  # bit-exact, NaN in the same places
    assert run.task_names == TASKS
    assert run.summary == summary
    assert run.config == {"lr": 0.01, "data_root": "/data/cifar", "merge": "alpha"}
    assert [event["event"] for event in run.events] == ["train_epoch", "train_epoch", "eval"]


def test_config_json_has_version_and_time(finished_run):
    writer, _ = finished_run
    document = json.loads((writer.path / "config.json").read_text())
    assert document["continual_side_version"] == __version__
    assert document["written_at"].endswith("+00:00")
    assert (writer.path / "config.json").read_text().startswith('{\n  "')  # pretty-printed


def test_metrics_jsonl_one_json_object_per_line(finished_run):
    writer, _ = finished_run
    lines = (writer.path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and all(isinstance(record, dict) for record in records)
    assert records[0] == {"event": "train_epoch", "time": records[0]["time"], "experience": 0, "epoch": 0,
                          "loss": 2.5, "accuracy": 0.25}
    assert records[1]["loss"] is None  # NaN becomes null: the line stays valid JSON
    assert records[2] == {"event": "eval", "time": records[2]["time"], "after_experience": 0, "task": 0,
                          "accuracy": 0.75}


@pytest.mark.parametrize("name", ["accuracy_over_stream.png", "acc_matrix.png"])
def test_pngs_are_real_images(finished_run, name):
    writer, _ = finished_run
    path = writer.path / name
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.load()
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert width >= 400 and height >= 300
    assert len(colours) > 50  # lines, text, heatmap cells: not a blank canvas


def test_existing_run_is_not_overwritten_silently(finished_run, tmp_path):
    writer, _ = finished_run
    with pytest.raises(RunFolderError, match="already holds a run .*overwrite=True"):
        RunWriter(tmp_path, "split_cifar10", "side_tuning", 3)
    RunWriter(tmp_path, "split_cifar10", "side_tuning", 3, overwrite=True)
    assert os.listdir(writer.path) == []


@pytest.mark.parametrize(
    ("stream", "method", "seed", "message"),
    [
        ("../up", "side_tuning", 0, "stream name '../up'"),
        ("split_cifar10", "a/b", 0, "method name 'a/b'"),
        ("split_cifar10", "side_tuning", -1, "seed -1"),
        ("split_cifar10", "side_tuning", 1.5, "seed 1.5"),
    ],
)
def test_bad_run_names_raise_config_error(tmp_path, stream, method, seed, message):
    with pytest.raises(ConfigError, match=message):
        run_folder(tmp_path, stream, method, seed)


def test_summary_input_is_validated(tmp_path):
    writer = RunWriter(tmp_path, "s", "m", 0)
    with pytest.raises(ConfigError, match="one task name per task"):
        writer.write_acc_matrix(_matrix(), TASKS[:3])
    with pytest.raises(ConfigError, match=r"R\[0, 0\] = 2.0"):
        writer.write_summary(np.tri(3) * 2.0, wall_time_s=1.0, trainable_parameters=1)
    with pytest.raises(ConfigError, match="wall_time_s"):
        writer.write_summary(np.tri(3), wall_time_s=float("nan"), trainable_parameters=1)
    assert os.listdir(writer.path) == []


def test_load_run_names_the_missing_file(finished_run):
    writer, _ = finished_run
    (writer.path / "summary.json").unlink()
    with pytest.raises(RunFolderError, match="lacks summary.json"):
        load_run(writer.path)


def test_failed_atomic_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_comparison_figures(tmp_path):
    bars = plots.bar_with_error({"side_tuning": [0.75, 0.25], "finetune": [0.5]})
    (axes,) = bars.axes
    # mean over seeds, sample std: side_tuning 0.5 +- sqrt(2 * 0.25^2 / 1); finetune 0.5 +- 0
    assert [patch.get_height() for patch in axes.patches] == [0.5, 0.5]
    (errorbars,) = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    segments = errorbars.lines[2][0].get_segments()
    assert [segment[1][1] - segment[0][1] for segment in segments] == pytest.approx([2 * 0.25 * 2**0.5, 0.0])

    curves = plots.method_curves({"side_tuning": [np.tri(3), np.tri(3) * 0.5], "finetune": [np.eye(3)]})
    (axes,) = curves.axes
    # side_tuning seen-task averages: [1, 1, 1] and [0.5, 0.5, 0.5]; finetune: [1, 1/2, 1/3]
    np.testing.assert_allclose(axes.lines[0].get_ydata(), [0.75, 0.75, 0.75])
    np.testing.assert_allclose(axes.lines[1].get_ydata(), [1.0, 0.5, 1 / 3])
    for figure, name in ((bars, "bars.png"), (curves, "curves.png")):
        save_figure(figure, tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["bars.png", "curves.png"]
    with pytest.raises(ConfigError, match="same number of tasks"):
        plots.method_curves({"a": [np.tri(3)], "b": [np.tri(4)]})
