"""The itaskonomy stream from a tiny rendered set, and dense runs through the runner: loss matrix, summary,
figures, resume; side-tuning forgets nothing, fine-tuning does."""

import csv
import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from continual_side import runner
from continual_side.errors import ConfigError, DataRootError
from continual_side.methods import TrainConfig
from continual_side.models.dense_losses import ITASKONOMY_ORDER, TASK_LOSSES
from continual_side.perf import PerfConfig, run_perf
from continual_side.report import aggregate
from continual_side.results import (
    DENSE_RUN_FILES,
    LOSS_MATRIX_FILE,
    MATRIX_FILE,
    RunWriter,
    load_run,
    read_acc_matrix,
)
from continual_side.runner import RunConfig
from continual_side.streams import get_stream, itaskonomy, make_stream
from continual_side.streams.itaskonomy import ITaskonomyOptions
from continual_side.streams.taskonomy_data import split_buildings
from envs.taskonomy_render import TaskonomyRenderConfig, render_taskonomy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BUILDINGS = ("apartment_0", "apartment_1", "apartment_2")
SIZE = 32


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """3 buildings x 4 views at 32 px: one train, one val and one test building."""
    out = tmp_path_factory.mktemp("itaskonomy") / "set"
    render_taskonomy(TaskonomyRenderConfig(buildings=BUILDINGS, views_per_building=4, resolution=SIZE, out=out,
                                           workers=1))
    return out


def tiny_options(tiny_set, tmp_path, **changes) -> ITaskonomyOptions:
    return ITaskonomyOptions(data_root=str(tiny_set), image_size=SIZE, decode_cache_dir=str(tmp_path / "decoded"),
                             **changes)


def test_the_stream_has_the_paper_s_tasks_on_one_set_of_images(tiny_set, tmp_path):
    bench = make_stream("itaskonomy", tiny_options(tiny_set, tmp_path))
    assert get_stream("itaskonomy").base == "midlevel"
    assert [e.task_output.domain for e in bench.train_stream] == list(ITASKONOMY_ORDER)
    assert bench.classes_per_task == [[task] for task in ITASKONOMY_ORDER]
    render = json.loads((tiny_set / "render.json").read_text())
    outputs = {e.task_output.domain: e.task_output for e in bench.train_stream}
    assert outputs["segment_semantic"].channels == len(render["semantic_classes"])
    assert outputs["class_object"].channels == len(render["class_object_classes"])
    assert not outputs["class_object"].pixelwise and outputs["depth_zbuffer"].pixelwise
    assert outputs["normal"].channels == TASK_LOSSES["normal"].out_channels == 3

    split = split_buildings(BUILDINGS)
    assert len(split.train) == len(split.test) == 1 and not set(split.train) & set(split.test)
    for stream in (bench.train_stream, bench.test_stream):
        assert {len(e.dataset) for e in stream} == {4}  # one building's 4 views, for every task
    first = [e.dataset[0][0] for e in bench.train_stream]
    assert all(torch.equal(first[0], x) for x in first)  # every task sees the same images
    assert not torch.equal(bench.train_stream[0].dataset[0][0], bench.test_stream[0].dataset[0][0])
    x, packed, task = bench.train_stream[7].dataset[1]  # depth_zbuffer: depth and its mask
    assert x.shape == (3, SIZE, SIZE) and packed.shape == (2, SIZE, SIZE) and packed.dtype == torch.float32
    assert task == 7 and set(packed[1].unique().tolist()) <= {0.0, 1.0}
    assert bench.train_stream[10].dataset[0][1].shape == (len(render["class_object_classes"]),)


def test_the_decode_cache_gives_the_same_tensors_and_is_used(tiny_set, tmp_path, monkeypatch):
    options = tiny_options(tiny_set, tmp_path, tasks=("segment_semantic", "normal"), views_per_building=2)
    decoded = make_stream("itaskonomy", options)
    assert len(list((tmp_path / "decoded").glob("*.pt"))) == 1
    monkeypatch.setattr(itaskonomy, "decode_split", lambda *a, **k: pytest.fail("decoded again"))
    cached = make_stream("itaskonomy", options)
    assert [e.task_output for e in cached.train_stream] == [e.task_output for e in decoded.train_stream]
    for a, b in zip([*decoded.train_stream, *decoded.test_stream], [*cached.train_stream, *cached.test_stream]):
        assert len(a.dataset) == len(b.dataset) == 2
        assert all(torch.equal(x, y) for x, y in zip(a.dataset[1][:2], b.dataset[1][:2]))


def test_bad_data_roots_and_tasks_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DataRootError, match="continual-side taskonomy render"):
        make_stream("itaskonomy", ITaskonomyOptions(data_root=str(tmp_path / "absent")))
    monkeypatch.setattr("continual_side.streams.taskonomy_data.DEFAULT_SET_POINTER", tmp_path / "no-pointer.json")
    with pytest.raises(DataRootError, match="continual-side taskonomy render"):
        make_stream("itaskonomy", ITaskonomyOptions())
    with pytest.raises(ConfigError, match="unknown \\['depth'\\]"):
        make_stream("itaskonomy", ITaskonomyOptions(tasks=("depth",)))
    with pytest.raises(ConfigError, match="repeat a task"):
        make_stream("itaskonomy", ITaskonomyOptions(tasks=("normal", "normal")))


def dense_run(tiny_set, tmp_path, method, out, method_options=None, **options) -> runner.RunOutcome:
    return runner.run(RunConfig(
        stream="itaskonomy", method=method, stream_options=tiny_options(tiny_set, tmp_path, **options),
        method_options=method_options, train=TrainConfig(epochs=1, batch_size=2, eval_batch_size=4),
        out=str(out), progress=False))


def test_side_tuning_forgets_no_task_and_fine_tuning_does(tiny_set, tmp_path):
    """With the packaged mid-level base (midlevel-curvature) and its distilled FCN5 side (fcn5-midlevel)."""
    side = dense_run(tiny_set, tmp_path, "sidetune", tmp_path / "runs")
    fine = dense_run(tiny_set, tmp_path, "finetune", tmp_path / "runs")
    count = len(ITASKONOMY_ORDER)
    for outcome in (side, fine):
        assert outcome.loss_matrix.shape == (count, count)
        assert sorted(p.name for p in outcome.run_dir.iterdir()) == sorted(DENSE_RUN_FILES)
        for name in ("loss_curves.png", "predictions.png"):
            assert (outcome.run_dir / name).read_bytes()[:8] == PNG_MAGIC
        run = load_run(outcome.run_dir)
        assert run.dense and np.array_equal(run.L, outcome.loss_matrix)
        assert json.loads((outcome.run_dir / "config.json").read_text())["config"]["train"]["base"] == "midlevel"
        accuracy_columns = [ITASKONOMY_ORDER.index(t) for t in ("segment_semantic", "class_object")]
        lower = np.tril(np.ones((count, count), dtype=bool))
        assert np.isnan(run.R[:, [j for j in range(count) if j not in accuracy_columns]]).all()
        assert ((run.R[:, accuracy_columns] >= 0) & (run.R[:, accuracy_columns] <= 1))[lower[:, accuracy_columns]].all()
        summary = run.summary
        assert summary["final_loss_per_task"] == pytest.approx(list(outcome.loss_matrix[-1]))
        assert summary["mean_final_loss"] == pytest.approx(outcome.loss_matrix[-1].mean())
        assert summary["accuracy"]["tasks"] == ["segment_semantic", "class_object"]
        assert set(summary["accuracy"]["final_accuracy_per_task"]) == {"segment_semantic", "class_object"}
        epochs = [e for e in run.events if e["event"] == "train_epoch"]
        assert [("accuracy" in e) for e in epochs] == [t in ("segment_semantic", "class_object")
                                                        for t in ITASKONOMY_ORDER]
    assert side.summary["loss_forgetting"] == 0.0 and side.summary["loss_forgetting_per_task"] == [0.0] * (count - 1)
    assert side.summary["accuracy"]["forgetting"] == 0.0
    assert fine.summary["loss_forgetting"] > 0.0
    assert fine.summary["trainable_parameters"] > side.summary["trainable_parameters"] > 0
    table = aggregate(tmp_path / "runs", "itaskonomy")
    assert table.dense and table.row("sidetune").dense.loss_forgetting.mean == 0.0
    assert table.row("finetune").dense.loss_forgetting.mean == fine.summary["loss_forgetting"]


def test_a_dense_run_resumed_after_a_crash_equals_an_uninterrupted_one(tiny_set, tmp_path, crash_after_checkpoint):
    tasks = ("curvature", "segment_semantic", "class_object", "rgb")
    whole = dense_run(tiny_set, tmp_path, "finetune", tmp_path / "whole", tasks=tasks)
    with crash_after_checkpoint(2):
        dense_run(tiny_set, tmp_path, "finetune", tmp_path / "crashed", tasks=tasks)
    config = RunConfig(stream="itaskonomy", method="finetune", stream_options=tiny_options(tiny_set, tmp_path, tasks=tasks),
                       train=TrainConfig(epochs=1, batch_size=2, eval_batch_size=4), out=str(tmp_path / "crashed"),
                       progress=False)
    resumed = runner.run(replace(config, resume=True))
    for name in (LOSS_MATRIX_FILE, MATRIX_FILE):
        assert (resumed.run_dir / name).read_bytes() == (whole.run_dir / name).read_bytes()
    assert read_acc_matrix(resumed.run_dir / LOSS_MATRIX_FILE)[0] == list(tasks)


DENSE_TASKS = ["curvature", "segment_semantic", "class_object"]
N = float("nan")
# method -> seed -> loss matrix (accuracy: segment_semantic 0.5 + seed / 10, class_object 0.25 for every run)
FAKE_DENSE = {
    "sidetune": {0: [[1.0, 9, 9], [1.0, 2.0, 9], [1.0, 2.0, 3.0]], 1: [[2.0, 9, 9], [2.0, 4.0, 9], [2.0, 4.0, 6.0]]},
    "finetune": {0: [[1.0, 9, 9], [1.5, 2.0, 9], [2.0, 3.0, 1.0]], 1: [[1.0, 9, 9], [1.0, 2.0, 9], [1.0, 2.0, 3.0]]},
}
# hand computation: sidetune mean final loss 2 and 4 -> 3 ± sqrt(2); loss forgetting 0 and 0.
# finetune seed 0: final (2, 3, 1) -> 2; forgetting curvature 2 - min(1, 1.5) = 1, segment 3 - 2 = 1 -> 1;
# seed 1: mean 2, forgetting 0 -> mean final loss 2 ± 0, loss forgetting 0.5 ± sqrt(0.5).


def _write_dense_fake(out, method, seed, losses):
    writer = RunWriter(out, "itaskonomy", method, seed)
    writer.write_config({"stream": {"name": "itaskonomy"}, "method": {"name": method}, "seed": seed,
                         "train": {"epochs": 1}, "out": str(out), "progress": False})
    writer.log("eval", after_experience=0, task=0, loss=losses[0][0])
    accuracy = np.array([[N, 0.5 + seed / 10, 0.25]] * 3)
    writer.write_loss_matrix(np.array(losses), DENSE_TASKS)
    writer.write_acc_matrix(accuracy, DENSE_TASKS, accuracy_tasks=[1, 2])
    writer.write_dense_summary(np.array(losses), accuracy, [1, 2], wall_time_s=10.0 * (seed + 1),
                               trainable_parameters=100)


def test_the_comparison_of_dense_runs_matches_hand_computation(tmp_path):
    for method, seeds in FAKE_DENSE.items():
        for seed, losses in seeds.items():
            _write_dense_fake(tmp_path, method, seed, losses)
    table = aggregate(tmp_path, "itaskonomy")
    assert table.dense and [row.label for row in table.rows] == ["finetune", "sidetune"]
    side, fine = table.row("sidetune").dense, table.row("finetune").dense
    assert (side.mean_final_loss.mean, side.mean_final_loss.std) == pytest.approx((3.0, math.sqrt(2)))
    assert (side.loss_forgetting.mean, side.loss_forgetting.std) == (0.0, 0.0)
    assert (fine.mean_final_loss.mean, fine.mean_final_loss.std) == pytest.approx((2.0, 0.0))
    assert (fine.loss_forgetting.mean, fine.loss_forgetting.std) == pytest.approx((0.5, math.sqrt(0.5)))
    assert list(side.accuracy) == ["segment_semantic", "class_object"]
    assert (side.accuracy["segment_semantic"].mean, side.accuracy["class_object"].std) == pytest.approx((0.55, 0.0))
    assert [stat.mean for stat in fine.final_loss_per_task] == pytest.approx([1.5, 2.5, 2.0])

    folder = table.folder
    rows = list(csv.DictReader(io.StringIO((folder / "table.csv").read_text())))
    assert [row["method"] for row in rows] == ["finetune", "sidetune"]
    assert float(rows[1]["mean_final_loss_mean"]) == pytest.approx(3.0)
    assert float(rows[0]["loss_forgetting_std"]) == pytest.approx(math.sqrt(0.5))
    assert float(rows[1]["segment_semantic_accuracy_mean"]) == pytest.approx(0.55)
    markdown = (folder / "table.md").read_text()
    assert "| method | n | mean final test loss | loss forgetting | segment_semantic accuracy (%) | " \
           "class_object accuracy (%) | trainable parameters per task | time per run |" in markdown
    assert "| sidetune | 2 | 3.0000 ± 1.4142 | +0.0000 ± 0.0000 | 55.00 ± 7.07 | 25.00 ± 0.00 | 100 | 0m15s |" in markdown
    assert (folder / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((folder / "comparison.json").read_text())["rows"][1]["dense"]["loss_forgetting"]["mean"] == 0.0


def test_perf_measures_side_and_fine_tuning_on_the_first_dense_task(tiny_set, tmp_path):
    report = run_perf(PerfConfig(train=TrainConfig(epochs=2, batch_size=2), variants=("naive", "finetune", "sidetune"),
                                 out=str(tmp_path / "perf")), "itaskonomy", tiny_options(tiny_set, tmp_path))
    assert report["config"]["train"]["base"] == "midlevel" and report["same_batches"]
    variants = report["variants"]
    assert all(r["images_per_epoch"] == 4 for r in variants.values())
    assert variants["naive"]["trainable_parameters"] == variants["finetune"]["trainable_parameters"]
    assert 0 < report["ratios_vs_finetune"]["sidetune"]["trainable_parameters"] < 1
    assert all(r["epoch_cpu_s"] > 0 for r in variants.values())
    assert report["ratios_vs_finetune"]["sidetune"]["epoch_cpu_s"] == pytest.approx(
        variants["sidetune"]["epoch_cpu_s"] / variants["finetune"]["epoch_cpu_s"])
    assert "sidetune/finetune epoch_s" in {check["ratio"] for check in report["targets"]}


@pytest.mark.parametrize("command", ["stream", "bench", "perf", "sweep"])
def test_every_command_takes_the_stream_s_options(command, capsys):
    from continual_side.cli import main

    flag = "--streams" if command == "sweep" else "--stream"
    with pytest.raises(SystemExit) as done:
        main([command, flag, "itaskonomy", "--help"])
    assert done.value.code == 0
    assert "views-per-building" in capsys.readouterr().out
