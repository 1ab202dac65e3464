"""Shared fixtures: the one place tests find ../shared/data, and a run stopped right after a checkpoint."""

import contextlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    return Path(os.environ.get("CONTINUAL_SIDE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared data folder (env var CONTINUAL_SIDE_DATA, default ../shared/data).

    Tests must never write here. Skips when the folder is absent.
    """
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"shared data not found at {path}: set CONTINUAL_SIDE_DATA to the shared/data folder")
    return path


@pytest.fixture(scope="session")
def shared_weights(shared_data: Path) -> Path:
    """Folder holding resnet44/resnet20 akamaster weights and the FCN4 side network."""
    return shared_data / "weights"


@pytest.fixture(scope="session")
def cifar10_jpeg(shared_data: Path) -> Path:
    """The CIFAR-10 JPEG image-folder tree with train/ and test/."""
    return shared_data / "cifar10-jpeg"


@pytest.fixture(scope="session", autouse=True)
def _weights_from_shared_data():
    """Let the weights hub find resnet20/44 and FCN4 in the shared folder instead of downloading.

    Tests of the hub's own resolution order override CONTINUAL_SIDE_WEIGHTS with monkeypatch.
    """
    weights = _shared_data_dir() / "weights"
    previous = os.environ.get("CONTINUAL_SIDE_WEIGHTS")
    if weights.is_dir() and previous is None:
        os.environ["CONTINUAL_SIDE_WEIGHTS"] = str(weights)
    yield
    if previous is None:
        os.environ.pop("CONTINUAL_SIDE_WEIGHTS", None)


class Crash(Exception):
    """Stands for the process dying right after a checkpoint was written."""


@pytest.fixture()
def crash_after_checkpoint(monkeypatch):
    """``with crash_after_checkpoint(n): train(...)``: the n-th ``checkpoint.save`` raises ``error`` right after
    writing its file, as if the process were killed there; the block expects it, and saving is real again after."""
    from continual_side import checkpoint

    @contextlib.contextmanager
    def crashing(n: int = 1, error: type[BaseException] = Crash):
        real_save, saved = checkpoint.save, []

        def save_then_crash(*args, **kwargs):
            path = real_save(*args, **kwargs)
            saved.append(path)
            if len(saved) == n:
                raise error
            return path

        monkeypatch.setattr(checkpoint, "save", save_then_crash)
        try:
            with pytest.raises(error):
                yield
        finally:
            monkeypatch.setattr(checkpoint, "save", real_save)

    return crashing
