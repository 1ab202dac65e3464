"""Shared fixtures: the one place tests find ../shared/data."""

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
