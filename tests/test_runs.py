"""Runs that survive: byte-identical results for a seed, and a run killed mid-way resumes to the same result."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from continual_side.checkpoint import CHECKPOINT_FILE
from continual_side.cli import main
from continual_side.methods import METHODS
from continual_side.results import MATRIX_FILE, SUMMARY_FILE, load_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stream_args(cifar10_jpeg, out, *extra, n_tasks=3, images=12):
    return ["stream", "--stream", "split_cifar10", "--data-root", str(cifar10_jpeg), "--n-tasks", str(n_tasks),
            "--classes-per-task", "2", "--images-per-class", str(images), "--test-images-per-class", "6",
            "--base", "resnet20", "--epochs", "1", "--batch-size", "8", "--out", str(out), "--no-progress", *extra]


def matrix_bytes(out, method, seed=0) -> bytes:
    return (out / "split_cifar10" / method / f"seed-{seed}" / MATRIX_FILE).read_bytes()


def summary_without_timings(out, method, seed=0) -> dict:
    summary = load_run(out / "split_cifar10" / method / f"seed-{seed}").summary
    return {key: value for key, value in summary.items() if key not in ("wall_time_s", "written_at")}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_same_seed_gives_a_byte_identical_accuracy_matrix(method, cifar10_jpeg, tmp_path):
    for out in ("a", "b"):
        main(stream_args(cifar10_jpeg, tmp_path / out, "--method", method))
    assert matrix_bytes(tmp_path / "a", method) == matrix_bytes(tmp_path / "b", method)
    assert summary_without_timings(tmp_path / "a", method) == summary_without_timings(tmp_path / "b", method)
    # a run that trains nothing would pass the above: each task's training must be recorded
    result = load_run(tmp_path / "a" / "split_cifar10" / method / "seed-0")
    assert result.summary["trainable_parameters"] > 0
    assert [e["experience"] for e in result.events if e["event"] == "train_epoch"] == [0, 1, 2]


@pytest.mark.parametrize("method", ["sidetune", "features", "pnn"])
def test_the_feature_cache_changes_no_result(method, cifar10_jpeg, tmp_path):
    main(stream_args(cifar10_jpeg, tmp_path / "on", "--method", method, "--feature-cache", "memory"))
    main(stream_args(cifar10_jpeg, tmp_path / "off", "--method", method, "--feature-cache", "off"))
    assert matrix_bytes(tmp_path / "on", method) == matrix_bytes(tmp_path / "off", method)


def test_other_seeds_give_other_results(cifar10_jpeg, tmp_path):
    """Guards the test above: the byte comparison can fail."""
    main(stream_args(cifar10_jpeg, tmp_path, "--method", "finetune", "--seed", "0"))
    main(stream_args(cifar10_jpeg, tmp_path, "--method", "finetune", "--seed", "1"))
    assert matrix_bytes(tmp_path, "finetune", 0) != matrix_bytes(tmp_path, "finetune", 1)


@pytest.mark.parametrize("method", ["ewc", "lwf", "pnn", "sidetune"])
def test_a_run_resumed_after_a_crash_equals_an_uninterrupted_one(method, cifar10_jpeg, tmp_path,
                                                                crash_after_checkpoint):
    main(stream_args(cifar10_jpeg, tmp_path / "whole", "--method", method, n_tasks=4))
    with crash_after_checkpoint(2):
        main(stream_args(cifar10_jpeg, tmp_path / "crashed", "--method", method, n_tasks=4))
    main(stream_args(cifar10_jpeg, tmp_path / "crashed", "--method", method, "--resume", n_tasks=4))
    assert matrix_bytes(tmp_path / "crashed", method) == matrix_bytes(tmp_path / "whole", method)


def _start(cifar10_jpeg, out, method) -> subprocess.Popen:
    code = "from continual_side.cli import main; main()"
    args = stream_args(cifar10_jpeg, out, "--method", method, n_tasks=5, images=24)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture()
def one_thread():
    """Results are bit-identical only at one torch thread count: the killed subprocess and this process use 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_run_killed_at_a_random_point_resumes_to_the_uninterrupted_result(cifar10_jpeg, tmp_path, one_thread):
    method = "ewc"  # a plugin with state (anchors and Fisher diagonals) that must survive the kill
    main(stream_args(cifar10_jpeg, tmp_path / "whole", "--method", method, n_tasks=5, images=24))
    folder = tmp_path / "killed" / "split_cifar10" / method / "seed-0"
    process = _start(cifar10_jpeg, tmp_path / "killed", method)
    deadline = time.monotonic() + 600
    while not (folder / CHECKPOINT_FILE).is_file():  # the first experience has finished
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (folder / SUMMARY_FILE).exists()

    with pytest.raises(SystemExit) as refused:  # an incomplete run is not silently restarted
        main(stream_args(cifar10_jpeg, tmp_path / "killed", "--method", method, n_tasks=5, images=24))
    assert refused.value.code == 2
    main(stream_args(cifar10_jpeg, tmp_path / "killed", "--method", method, "--resume", n_tasks=5, images=24))
    assert matrix_bytes(tmp_path / "killed", method) == matrix_bytes(tmp_path / "whole", method)
    assert summary_without_timings(tmp_path / "killed", method) == summary_without_timings(tmp_path / "whole", method)
    events = load_run(folder).events
    assert [(e["after_experience"], e["task"]) for e in events if e["event"] == "eval"] == [
        (i, j) for i in range(5) for j in range(5)]  # no row twice, none missing
    assert not (folder / CHECKPOINT_FILE).exists()
