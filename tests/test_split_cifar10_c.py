"""split_cifar10_c: each task's images carry its own corruption, reproducibly, computed once and cached."""

import numpy as np
import pytest
import torch
from PIL import Image

from continual_side.cli import main
from continual_side.errors import ConfigError
from continual_side.results import load_run
from continual_side.streams import make_stream
from continual_side.streams import split_cifar10_c
from continual_side.streams.split_cifar10_c import CORRUPTIONS, SplitCifar10COptions, corrupt_images


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    """train/ and test/ with 4 classes of 3 random 32 px PNGs each."""
    root = tmp_path_factory.mktemp("tiny_cifar")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b", "c", "d"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


def options(root, cache, **changes) -> SplitCifar10COptions:
    return SplitCifar10COptions(**{"data_root": str(root), "n_tasks": 2, "corruptions": ("gaussian_noise", "frost"),
                                   "severities": (5, 2), "corruption_cache_dir": str(cache), **changes})


def task_images(bench) -> list[torch.Tensor]:
    return [split.images for pair in bench.task_images for split in pair]


def test_each_task_is_corrupted_reproducibly_and_cached_once(tiny_tree, tmp_path, monkeypatch):
    clean = make_stream("split_cifar10", split_cifar10_c.SplitCifar10Options(data_root=str(tiny_tree), n_tasks=2))
    numpy_state = np.random.get_state()[1].copy()
    first = make_stream("split_cifar10_c", options(tiny_tree, tmp_path / "one"))
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # the run's random stream is untouched
    assert first.corruptions == [("gaussian_noise", 5), ("frost", 2)]
    assert len(list((tmp_path / "one").glob("*.npy"))) == 4  # train and test of 2 tasks
    for corrupted, source in zip(task_images(first), task_images(clean)):
        assert corrupted.shape == source.shape and corrupted.dtype == torch.uint8
        assert (corrupted.float() - source.float()).abs().mean() > 5  # visibly corrupted
    assert torch.equal(first.task_images[0][0].targets, clean.task_images[0][0].targets)
    again = make_stream("split_cifar10_c", options(tiny_tree, tmp_path / "two"))  # computed afresh
    assert all(torch.equal(a, b) for a, b in zip(task_images(first), task_images(again)))

    def no_corruption(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(split_cifar10_c, "corrupt_images", no_corruption)
    cached = make_stream("split_cifar10_c", options(tiny_tree, tmp_path / "one"))
    assert all(torch.equal(a, b) for a, b in zip(task_images(first), task_images(cached)))
    x, y, task = cached.train_stream[1].dataset[0]
    assert x.shape == (3, 32, 32) and task == 1


def test_an_unreadable_cache_file_is_recomputed(tiny_tree, tmp_path):
    first = make_stream("split_cifar10_c", options(tiny_tree, tmp_path))
    for path in tmp_path.glob("*.npy"):
        path.write_bytes(b"truncated")
    rebuilt = make_stream("split_cifar10_c", options(tiny_tree, tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(task_images(first), task_images(rebuilt)))


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_offered_corruption_works_here_and_is_deterministic(corruption):
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    once, twice = corrupt_images(images, corruption, 3), corrupt_images(images, corruption, 3)
    assert once.shape == images.shape and torch.equal(once, twice) and not torch.equal(once, images)


@pytest.mark.parametrize(("changes", "message"), [
    ({"corruptions": ("gaussian_noise", "glass_blur")}, "unknown or unavailable corruptions \\['glass_blur'\\]"),
    ({"corruptions": ("gaussian_noise",)}, "1 corruptions for 2 tasks"),
    ({"severities": (6,)}, "severities=\\(6,\\)"),
])
def test_bad_corruption_options_are_config_errors(tiny_tree, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        make_stream("split_cifar10_c", options(tiny_tree, tmp_path, **changes))


def test_the_cli_runs_a_method_on_the_stream(tiny_tree, tmp_path):
    main(["stream", "--stream", "split_cifar10_c", "--data-root", str(tiny_tree), "--n-tasks", "2",
          "--corruptions", "snow", "contrast", "--severities", "1", "--corruption-cache-dir", str(tmp_path / "cache"),
          "--method", "features", "--base", "resnet20", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    assert load_run(tmp_path / "split_cifar10_c" / "features" / "seed-0").summary["trainable_parameters"] > 0
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4
