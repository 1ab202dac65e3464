"""The comparison benchmark: hand-computed aggregates over fake run folders, and a tiny real sweep that resumes."""

import csv
import io
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from continual_side import runner
from continual_side.errors import ConfigError
from continual_side.methods import METHODS, TrainConfig
from continual_side.methods.ewc import EWCOptions
from continual_side.report import aggregate
from continual_side.results import RunFolderError, RunWriter
from continual_side.streams.split_cifar10 import SplitCifar10Options
from continual_side.sweep import BenchConfig, resolve_methods, run_bench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TASKS = ["a+b", "c+d", "e+f"]
U = 0.5  # untrained upper-triangle entries: no metric reads them
# method -> seed -> (accuracy matrix, wall time s, trainable parameters)
FAKE_RUNS = {
    "sidetune": {
        0: ([[0.9, U, U], [0.9, 0.8, U], [0.9, 0.8, 0.7]], 10.0, 1000),
        1: ([[0.8, U, U], [0.8, 0.6, U], [0.8, 0.6, 0.7]], 20.0, 1000),
    },
    "toy": {
        0: ([[0.9, U, U], [0.6, 0.8, U], [0.5, 0.7, 0.9]], 30.0, 2000),
        1: ([[0.8, U, U], [0.8, 0.6, U], [0.7, 0.6, 0.5]], 50.0, 2000),
    },
}
SAMPLE_STD_OF_TWO = math.sqrt(2 * 0.05**2)  # values m +- 0.05, ddof=1
# Hand computation for "toy": average accuracy 0.7, 0.6; forgetting per task seed 0: (0.9-0.5, 0.8-0.7)
# -> 0.25, seed 1: (0.8-0.7, 0.6-0.6) -> 0.05; BWT seed 0: ((0.5-0.9)+(0.7-0.8))/2 = -0.25, seed 1: -0.05.


def _write_fake(out, method, seed, matrix, wall_time, parameters, epochs=4):
    writer = RunWriter(out, "split_cifar10", method, seed)
    writer.write_config({"stream": {"name": "split_cifar10", "n_tasks": 3}, "method": {"name": method}, "seed": seed,
                         "train": {"epochs": epochs, "lr": 1e-3}, "out": str(out), "progress": False})
    writer.log("eval", after_experience=0, task=0, accuracy=matrix[0][0])
    writer.write_acc_matrix(np.array(matrix), TASKS)
    writer.write_summary(np.array(matrix), wall_time_s=wall_time, trainable_parameters=parameters)


@pytest.fixture()
def fake_out(tmp_path):
    for method, seeds in FAKE_RUNS.items():
        for seed, (matrix, wall_time, parameters) in seeds.items():
            _write_fake(tmp_path, method, seed, matrix, wall_time, parameters)
    return tmp_path


def test_aggregate_matches_hand_computation(fake_out):
    table = aggregate(fake_out, "split_cifar10")
    assert [row.method for row in table.rows] == ["sidetune", "toy"]
    side, toy = table.row("sidetune"), table.row("toy")
    assert side.seeds == toy.seeds == [0, 1]
    assert (side.average_accuracy.mean, side.average_accuracy.std, side.average_accuracy.n) == pytest.approx(
        (0.75, SAMPLE_STD_OF_TWO, 2))
    assert (side.forgetting.mean, side.forgetting.std) == (0.0, 0.0)
    assert (side.backward_transfer.mean, side.backward_transfer.std) == (0.0, 0.0)
    assert (toy.average_accuracy.mean, toy.average_accuracy.std) == pytest.approx((0.65, SAMPLE_STD_OF_TWO))
    assert (toy.forgetting.mean, toy.forgetting.std) == pytest.approx((0.15, math.sqrt(2 * 0.1**2)))
    assert (toy.backward_transfer.mean, toy.backward_transfer.std) == pytest.approx((-0.15, math.sqrt(2 * 0.1**2)))
    assert (side.wall_time_s.mean, toy.wall_time_s.mean) == (15.0, 40.0)
    assert (side.trainable_parameters, toy.trainable_parameters) == (1000, 2000)
    assert table.folder == fake_out / "split_cifar10" / "comparison"
    assert table.differing_settings == [] and table.settings["train.epochs"] == 4


def test_csv_markdown_json_and_pngs(fake_out):
    folder = aggregate(fake_out, "split_cifar10").folder
    rows = list(csv.DictReader(io.StringIO((folder / "table.csv").read_text())))
    assert [row["method"] for row in rows] == ["sidetune", "toy"]
    toy = {key: float(value) for key, value in rows[1].items() if key != "method"}
    assert toy == pytest.approx({
        "n_seeds": 2, "average_accuracy_mean": 0.65, "average_accuracy_std": SAMPLE_STD_OF_TWO,
        "forgetting_mean": 0.15, "forgetting_std": math.sqrt(0.02), "bwt_mean": -0.15, "bwt_std": math.sqrt(0.02),
        "trainable_parameters_per_task": 2000, "wall_time_mean_s": 40.0,
    })
    markdown = (folder / "table.md").read_text()
    assert "| sidetune | 2 | 75.00 ± 7.07 | 0.00 ± 0.00 | +0.00 ± 0.00 | 1,000 | 0m15s |" in markdown
    assert "| toy | 2 | 65.00 ± 7.07 | 15.00 ± 14.14 | -15.00 ± 14.14 | 2,000 | 0m40s |" in markdown
    assert "- sidetune: the current task's side network, merge operator and head" in markdown
    document = json.loads((folder / "comparison.json").read_text())
    assert document["rows"][1]["matrices"][0] == FAKE_RUNS["toy"][0][0]
    assert document["rows"][1]["forgetting"]["mean"] == pytest.approx(0.15)
    for name in ("curves.png", "average_accuracy.png", "final_accuracy.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(io.BytesIO(data)) as image:
            image.verify()


def test_one_seed_shows_zero_std_with_n_1_and_lists_differences(fake_out):
    _write_fake(fake_out, "solo", 0, FAKE_RUNS["toy"][0][0], 5.0, 7, epochs=2)
    unfinished = RunWriter(fake_out, "split_cifar10", "solo", 1)
    unfinished.write_config({"method": {"name": "solo"}})
    table = aggregate(fake_out, "split_cifar10", methods=["solo", "toy"])
    solo = table.row("solo")
    assert (solo.average_accuracy.mean, solo.average_accuracy.std, solo.average_accuracy.n) == pytest.approx(
        (0.7, 0.0, 1))
    assert table.unfinished == [unfinished.path]
    assert table.differing_settings == ["train.epochs"]
    markdown = (table.folder / "table.md").read_text()
    assert "| solo | 1 | 70.00 ± 0.00 | 25.00 ± 0.00 | -25.00 ± 0.00 | 7 | 0m05s |" in markdown
    assert "Runs differ in: train.epochs" in markdown


def test_aggregate_only_trains_nothing_and_honours_methods(fake_out, counted_runs):
    table = run_bench(BenchConfig(stream="split_cifar10", out=str(fake_out), aggregate_only=True, progress=False))
    assert [row.method for row in table.rows] == ["sidetune", "toy"]
    only = run_bench(BenchConfig(stream="split_cifar10", methods=("toy",), out=str(fake_out), aggregate_only=True))
    assert [row.method for row in only.rows] == ["toy"]
    assert counted_runs == []


def test_aggregate_without_runs_is_an_error(tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        aggregate(tmp_path, "split_cifar10")


def test_unknown_method_lists_the_registered_ones(tmp_path):
    registered = re.escape(", ".join(METHODS))
    with pytest.raises(ConfigError, match=rf"unknown method\(s\) 'nope'; choose from: {registered} \(or all\)"):
        run_bench(BenchConfig(methods=("sidetune", "nope"), out=str(tmp_path), progress=False))
    assert resolve_methods(("all", "sidetune")) == list(METHODS)
    assert not tmp_path.joinpath("demo").exists()


@pytest.fixture()
def counted_runs(monkeypatch):
    """Count the runs the benchmark trains."""
    calls = []
    real_run = runner.run

    def counting_run(config):
        calls.append((config.method, config.seed))
        return real_run(config)

    monkeypatch.setattr(runner, "run", counting_run)
    return calls


def test_tiny_sweep_writes_runs_and_comparison_and_resumes(cifar10_jpeg, tmp_path, counted_runs):
    config = BenchConfig(
        stream="split_cifar10",
        stream_options=SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=2, images_per_class=8,
                                           test_images_per_class=4),
        train=TrainConfig(base="resnet20", epochs=1, batch_size=40),
        methods=("sidetune",), seeds=2, out=str(tmp_path), progress=False,
    )
    table = run_bench(config)
    stream_dir = tmp_path / "split_cifar10"
    assert counted_runs == [("sidetune", 0), ("sidetune", 1)]
    assert sorted(p.name for p in (stream_dir / "sidetune").iterdir()) == ["seed-0", "seed-0.log", "seed-1",
                                                                           "seed-1.log"]  # each run's output
    assert {"table.md", "table.csv", "comparison.json", "curves.png", "final_accuracy.png"} <= {
        p.name for p in (stream_dir / "comparison").iterdir()}
    side = table.row("sidetune")
    assert side.seeds == [0, 1] and side.forgetting.mean == 0.0 and side.average_accuracy.n == 2
    summary_mtime = (stream_dir / "sidetune" / "seed-0" / "summary.json").stat().st_mtime_ns

    (stream_dir / "sidetune" / "seed-1" / "summary.json").unlink()  # as if stopped during seed 1
    again = run_bench(config)
    assert counted_runs[2:] == [("sidetune", 1)]
    assert (stream_dir / "sidetune" / "seed-0" / "summary.json").stat().st_mtime_ns == summary_mtime
    assert again.row("sidetune").average_accuracy.mean == pytest.approx(side.average_accuracy.mean)

    run_bench(config)
    assert len(counted_runs) == 3
    config.train.epochs = 2
    with pytest.raises(RunFolderError, match=r"other settings \(train.epochs\).*--overwrite"):
        run_bench(config)


def test_a_method_s_own_options_only_matter_to_that_method(fake_out, tmp_path, monkeypatch):
    """The issue's reproduction: a finished sidetune run is reused whatever EWC's lambda is."""
    from continual_side.runner import RunConfig

    record = RunConfig(stream="demo", method="sidetune").record()
    writer = RunWriter(tmp_path, "demo", "sidetune", 0)
    writer.write_config(record)
    writer.log("eval", after_experience=0, task=0, accuracy=1.0)
    writer.write_acc_matrix(np.eye(5), [f"t{i}" for i in range(5)])
    writer.write_summary(np.eye(5), wall_time_s=1.0, trainable_parameters=1)
    monkeypatch.setattr(runner, "run", lambda config: pytest.fail(f"retrained {config.method}"))
    table = run_bench(BenchConfig(stream="demo", methods=("sidetune",), seeds=1, out=str(tmp_path), progress=False,
                                  method_options={}))
    assert table.differing_settings == [] and "ewc" not in json.dumps(record)
    with pytest.raises(ConfigError, match="options given for ewc, which this sweep does not run"):
        run_bench(BenchConfig(stream="demo", methods=("sidetune",), seeds=1, out=str(tmp_path),
                              method_options={"ewc": EWCOptions(lambda_=1.0)}))


def test_a_run_that_named_the_stream_s_base_is_reused_when_the_base_is_left_to_the_stream(tmp_path, monkeypatch):
    """Runs recorded before the base defaulted to the stream's (``"base": "resnet44"``) are the same settings."""
    from continual_side.runner import RunConfig

    named = RunConfig(stream="demo", method="sidetune", train=TrainConfig(base="resnet44")).record()
    assert RunConfig(stream="demo", method="sidetune").record() == named  # None resolved to demo's base
    writer = RunWriter(tmp_path, "demo", "sidetune", 0)
    writer.write_config(named)
    writer.log("eval", after_experience=0, task=0, accuracy=1.0)
    writer.write_acc_matrix(np.eye(5), [f"t{i}" for i in range(5)])
    writer.write_summary(np.eye(5), wall_time_s=1.0, trainable_parameters=1)
    monkeypatch.setattr(runner, "run", lambda config: pytest.fail(f"retrained {config.method}"))
    table = run_bench(BenchConfig(stream="demo", methods=("sidetune",), seeds=1, out=str(tmp_path), progress=False))
    assert table.settings["train.base"] == "resnet44"
    with pytest.raises(RunFolderError, match=r"other settings \(train.base\)"):
        run_bench(BenchConfig(stream="demo", methods=("sidetune",), seeds=1, out=str(tmp_path), progress=False,
                              train=TrainConfig(base="resnet20")))
