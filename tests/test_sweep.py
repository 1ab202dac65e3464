"""Sweeps: the grid and its folders, the local and Ray executors giving the same table, reruns that finish only
what is missing (a deleted run, a killed run resumed from its checkpoint) and failing runs reported."""

import os
import re
import shutil

import numpy as np
import pytest

from continual_side import checkpoint, runner
from continual_side.cli import main, parse_sweep
from continual_side.errors import ConfigError
from continual_side.executors import ExecutorConfig
from continual_side.methods import METHODS, TrainConfig, register_method
from continual_side.methods.ewc import EWCOptions
from continual_side.report import aggregate_all
from continual_side.results import EVENTS_FILE, SUMMARY_FILE, RunWriter, is_complete
from continual_side.streams.split_cifar10 import SplitCifar10Options
from continual_side.sweep import SweepConfig, grid_jobs, run_sweep

STREAM = "split_cifar10"


def tiny_sweep(data_root, out, *, methods=("features", "sidetune"), seeds=2, executor=None, grid=None):
    """2 tasks x 2 classes, 8 training and 4 test images per class, ResNet-20, one epoch."""
    return SweepConfig(
        streams=(STREAM,), methods=methods, seeds=seeds, out=str(out), progress=False, grid=grid or {},
        stream_options={STREAM: SplitCifar10Options(data_root=str(data_root), n_tasks=2, images_per_class=8,
                                                    test_images_per_class=4)},
        train=TrainConfig(base="resnet20", epochs=1, batch_size=40), executor=executor or ExecutorConfig())


def without_times(table_markdown):
    """The table with its time-per-run column blanked (the only column that differs between executors)."""
    return re.sub(r"\| (\d+h\d+m|\d+m\d+s) \|$", "| - |", table_markdown, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def local_sweep(cifar10_jpeg, tmp_path_factory):
    """The tiny 2 methods x 2 seeds grid on the local executor, 2 worker processes."""
    out = tmp_path_factory.mktemp("local")
    return out, run_sweep(tiny_sweep(cifar10_jpeg, out, executor=ExecutorConfig(workers=2)))


def test_local_and_ray_executors_give_the_same_table(local_sweep, cifar10_jpeg, tmp_path):
    ray = pytest.importorskip("ray")
    out, local = local_sweep
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(tiny_sweep(cifar10_jpeg, tmp_path, executor=ExecutorConfig(executor="ray")))
    finally:
        ray.shutdown()
    for result in (local, on_ray):
        assert [(r.action, r.error) for r in result.runs] == [("started", None)] * 4
        assert all("=== complete" in r.job.log.read_text() for r in result.runs)
    pids = {re.search(r"\(pid (\d+),", r.job.log.read_text())[1] for r in local.runs}
    assert str(os.getpid()) in pids and len(pids) == 2  # this process trained runs too, the worker the others
    (table,), (ray_table,) = local.tables, on_ray.tables
    assert [row.label for row in table.rows] == ["features", "sidetune"] and table.row("sidetune").seeds == [0, 1]
    markdown = (table.folder / "table.md").read_text()
    assert without_times(markdown) == without_times((ray_table.folder / "table.md").read_text())
    for row, ray_row in zip(table.rows, ray_table.rows, strict=True):
        np.testing.assert_array_equal(row.matrices, ray_row.matrices)
    assert (aggregate_all(out, STREAM)[0].folder / "table.md").read_text() == markdown  # from the folders alone


def test_rerun_after_deleting_a_run_folder_trains_only_that_one(local_sweep, cifar10_jpeg, tmp_path):
    shutil.copytree(local_sweep[0], tmp_path, dirs_exist_ok=True)
    deleted = tmp_path / STREAM / "sidetune" / "seed-1"
    shutil.rmtree(deleted)
    kept = {path: path.stat().st_mtime_ns for path in tmp_path.glob(f"{STREAM}/*/seed-*/{SUMMARY_FILE}")}
    result = run_sweep(tiny_sweep(cifar10_jpeg, tmp_path))
    assert [(r.job.folder, r.action) for r in result.runs if r.action != "skipped"] == [(deleted, "started")]
    assert len(kept) == 3 and all(path.stat().st_mtime_ns == mtime for path, mtime in kept.items())
    assert is_complete(deleted) and result.tables[0].row("sidetune").seeds == [0, 1]


def test_a_run_killed_mid_way_resumes_from_its_checkpoint(cifar10_jpeg, tmp_path, crash_after_checkpoint):
    config = tiny_sweep(cifar10_jpeg, tmp_path, methods=("features",), seeds=1)
    (job,) = grid_jobs(config)
    with crash_after_checkpoint(1):
        runner.run(job.config)
    earlier = (job.folder / EVENTS_FILE).read_text().splitlines()
    assert earlier and not is_complete(job.folder) and (job.folder / checkpoint.CHECKPOINT_FILE).is_file()

    (report,) = run_sweep(config).runs
    assert (report.action, report.error) == ("resumed", None) and is_complete(job.folder)
    events = (job.folder / EVENTS_FILE).read_text().splitlines()
    assert events[: len(earlier)] == earlier and len(events) > len(earlier)  # kept, not restarted
    assert "resume=True" in job.log.read_text()


@pytest.fixture()
def broken_method():
    """A method whose model builder raises; unregistered afterwards, so test order never matters."""
    def no_model(options, train):
        raise RuntimeError("no model today")

    register_method("broken", model=no_model, trained="nothing", trainable=lambda name, task: False)
    yield "broken"
    METHODS.pop("broken")


def test_a_failing_run_is_reported_and_the_others_complete(broken_method, cifar10_jpeg, tmp_path, capsys):
    result = run_sweep(tiny_sweep(cifar10_jpeg, tmp_path, methods=("features", broken_method), seeds=1))
    (failed,) = result.failed
    assert failed.job.config.method == broken_method and failed.error == "RuntimeError: no model today"
    assert "Traceback" in failed.job.log.read_text() and "no model today" in failed.job.log.read_text()
    assert [row.label for row in result.tables[0].rows] == ["features"]

    argv = ["sweep", "--streams", STREAM, "--split-cifar10.data-root", str(cifar10_jpeg), "--split-cifar10.n-tasks",
            "2", "--split-cifar10.images-per-class", "8", "--split-cifar10.test-images-per-class", "4", "--methods",
            "features", broken_method, "--seeds", "1", "--base", "resnet20", "--epochs", "1", "--batch-size", "40",
            "--out", str(tmp_path), "--no-progress"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and "2 runs: 1 skipped, 1 started, 0 resumed, 0 restarted, 1 failed" in captured.out
    assert f"failed: {STREAM}/broken/seed-0: RuntimeError: no model today (log: {failed.job.log})" in captured.err


def test_grid_values_get_their_own_folders_and_are_checked(tmp_path):
    base = dict(streams=("demo",), methods=("ewc", "features"), seeds=1, out=str(tmp_path))
    jobs = grid_jobs(SweepConfig(**base, grid={"ewc.lambda_": ["1e3", "1e4"], "demo.class-order-seed": ["none", "3"]}))
    folders = [str(job.folder.relative_to(tmp_path)) for job in jobs]
    assert folders == [
        "ewc.lambda_=1000.0/demo/ewc/seed-0", "demo/ewc/seed-0", "demo/features/seed-0",
        "demo.class_order_seed=3+ewc.lambda_=1000.0/demo/ewc/seed-0", "demo.class_order_seed=3/demo/ewc/seed-0",
        "demo.class_order_seed=3/demo/features/seed-0"]
    assert [job.config.method_options for job in jobs[:2]] == [EWCOptions(lambda_=1e3), EWCOptions(lambda_=1e4)]
    assert jobs[3].config.stream_options.class_order_seed == 3
    for grid, message in [({"nope.x": ["1"]}, "'nope' is not a registered method or stream"),
                          ({"sidetune.merge": ["film"]}, "'sidetune' is not in this sweep"),
                          ({"ewc.lamda": ["1"]}, "ewc has no option 'lamda'; its options are lambda_"),
                          ({"ewc.lambda_": ["big"]}, "grid value 'big' for ewc.lambda_ is not a valid float"),
                          ({"demo.n_tasks": ["2.5"]}, "grid value '2.5' for demo.n_tasks is not a valid int")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            grid_jobs(SweepConfig(**base, grid=grid))


def test_a_toml_file_sets_the_sweep_and_flags_override_it(tmp_path):
    (tmp_path / "sweep.toml").write_text(
        'streams = ["demo"]\nmethods = ["ewc", "sidetune"]\nseeds = 2\nout = "from-file"\n'
        '[train]\nbase = "resnet20"\nepochs = 1\n[ewc]\nlambda_ = 100\n[demo]\nn_tasks = 2\n'
        '[grid]\n"sidetune.merge" = ["alpha", "film"]\n[executor]\nworkers = 2\n')
    config = parse_sweep(["--config", str(tmp_path / "sweep.toml"), "--seeds", "1", "--grid", "ewc.lambda_=1,2"])
    assert (config.streams, config.methods, config.seeds, config.out) == (("demo",), ("ewc", "sidetune"), 1, "from-file")
    assert (config.train.base, config.train.epochs, config.executor.workers) == ("resnet20", 1, 2)
    assert config.method_options["ewc"] == EWCOptions(lambda_=100) and config.stream_options["demo"].n_tasks == 2
    assert config.grid == {"sidetune.merge": ["alpha", "film"], "ewc.lambda_": ["1", "2"]}
    (tmp_path / "bad.toml").write_text("[ewc]\nlamda = 1\n")
    with pytest.raises(ConfigError, match=r"table \[ewc\]"):
        parse_sweep(["--config", str(tmp_path / "bad.toml")])


def _fake_run(out, method, seed, options, accuracy, n_tasks=2):
    R = np.full((n_tasks, n_tasks), accuracy)
    writer = RunWriter(out, "demo", method, seed)
    writer.write_config({"stream": {"name": "demo", "n_tasks": n_tasks}, "method": {"name": method, **options},
                         "seed": seed, "train": {"epochs": 1}})
    writer.log("eval", after_experience=0, task=0, accuracy=accuracy)
    writer.write_acc_matrix(R, [f"t{j}" for j in range(n_tasks)])
    writer.write_summary(R, wall_time_s=1.0, trainable_parameters=1)


def test_aggregation_splits_rows_by_method_options_and_tables_by_stream_options(tmp_path):
    for seed in (0, 1):
        _fake_run(tmp_path, "ewc", seed, {"lambda_": 1e4}, 0.5 + seed / 10)
        _fake_run(tmp_path / "ewc.lambda_=1000.0", "ewc", seed, {"lambda_": 1e3}, 0.7)
        _fake_run(tmp_path / "demo.n_tasks=5", "ewc", seed, {"lambda_": 1e4}, 0.9, n_tasks=5)
    plain, five_tasks = aggregate_all(tmp_path, "demo")
    assert [row.label for row in plain.rows] == ["ewc lambda_=10000.0", "ewc lambda_=1000.0"]
    assert [row.average_accuracy.mean for row in plain.rows] == pytest.approx([0.55, 0.7])
    assert plain.folder == tmp_path / "demo" / "comparison" and plain.differing_settings == []
    assert "| ewc lambda_=1000.0 | 2 | 70.00 ± 0.00 |" in (plain.folder / "table.md").read_text()
    assert "ewc lambda_=1000.0,2," in (plain.folder / "table.csv").read_text()
    assert [row.label for row in five_tasks.rows] == ["ewc"] and len(five_tasks.task_names) == 5
    assert five_tasks.folder == tmp_path / "demo" / "comparison" / "n_tasks=5"
