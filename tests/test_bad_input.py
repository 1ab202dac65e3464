"""Bad input, as a user meets it on the command line: one clear line, exit code 2, nothing that looks like a result.

Each case names what was wrong in its message; afterwards no run folder holds an accuracy matrix or a
summary. (Navigation inputs are in tests/test_nav_*.py.)
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from continual_side.cli import main
from continual_side.results import MATRIX_FILE, SUMMARY_FILE


def tree(root: Path, classes=("a", "b", "c", "d"), per_class: int = 3) -> Path:
    """A tiny image-folder tree with train/ and test/."""
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * i, 10, 200)).save(root / split / name / f"{i:04d}.png")
    return root


def fail(argv: list[str], capsys) -> str:
    """Run the CLI, check the exit code 2 and the single line on stderr, return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("continual-side: error: "), err
    return lines[0]


def assert_no_result(out: Path) -> None:
    found = [p for name in (MATRIX_FILE, SUMMARY_FILE) for p in out.rglob(name)] if out.exists() else []
    assert not found, f"a failed run left result files: {found}"


def run_on(data: Path, out: Path, *extra: str) -> list[str]:
    return ["stream", "--stream", "split_cifar10", "--data-root", str(data), "--n-tasks", "2", "--base", "resnet20",
            "--epochs", "1", "--batch-size", "4", "--method", "features", "--out", str(out), "--no-progress", *extra]


DATA_CASES = {
    "missing data root": (lambda root: root / "nowhere", "nowhere/train"),
    "class folder missing in test": (
        lambda root: (tree(root), __import__("shutil").rmtree(root / "test" / "d"))[0], "missing class folders ['d']"),
    "extra class folder in test": (
        lambda root: (tree(root), tree(root / "x", classes=("e",)), (root / "x" / "test" / "e").rename(root / "test" / "e"))[0],
        "unexpected class folders ['e']"),
    "corrupt JPEG": (
        lambda root: (tree(root), (root / "train" / "b" / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated"))[0],
        "0001.jpg: not a readable JPEG or PNG image"),
    "non-image file among the images": (
        lambda root: (tree(root), (root / "train" / "a" / "0002.png").write_text("not an image"))[0],
        "0002.png: not a readable JPEG or PNG image"),
    "empty class folder": (
        lambda root: (tree(root), [p.unlink() for p in (root / "train" / "c").iterdir()])[0],
        "class folder has no images"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, tmp_path, capsys):
    make, expected = DATA_CASES[case]
    data = make(tmp_path / "data")
    line = fail(run_on(data, tmp_path / "runs"), capsys)
    assert expected in line
    assert_no_result(tmp_path / "runs")
    assert not (tmp_path / "runs").exists(), "bad data is refused before the run folder is made"


def test_weights_for_the_wrong_architecture(tmp_path, capsys, shared_weights):
    line = fail(run_on(tree(tmp_path / "data"), tmp_path / "runs", "--base", "resnet44", "--base-weights",
                       str(shared_weights / "resnet20-cifar10-akamaster.th")), capsys)
    assert "resnet20-cifar10-akamaster.th" in line and ("missing" in line or "unexpected" in line or "shape" in line)
    assert_no_result(tmp_path / "runs")


def test_a_weights_file_that_needs_pickle(tmp_path, capsys):
    path = tmp_path / "pickled.th"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": argparse.Namespace(x=1)}, handle)  # loads only by unpickling a class
    torch.save({"state_dict": argparse.Namespace(x=1)}, tmp_path / "torch-pickled.th")
    for weights in (path, tmp_path / "torch-pickled.th"):
        line = fail(run_on(tree(tmp_path / "data"), tmp_path / "runs", "--base-weights", str(weights)), capsys)
        assert str(weights) in line
    assert_no_result(tmp_path / "runs")


def test_a_checksum_mismatch(tmp_path, capsys, monkeypatch):
    from continual_side.hub import get_spec

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    (weights_dir / get_spec("resnet20-cifar10").filename).write_bytes(b"not the published file")
    monkeypatch.setenv("CONTINUAL_SIDE_WEIGHTS", str(weights_dir))
    line = fail(run_on(tree(tmp_path / "data"), tmp_path / "runs"), capsys)
    assert "sha256" in line
    assert_no_result(tmp_path / "runs")


@pytest.mark.parametrize("argv, expected", [
    (["--method", "nope"], "unknown method 'nope'; choose one of finetune, "),
    (["--method", "sidetune", "--sidetune.merge", "average"], "unknown merge 'average'"),
    (["--base", "resnet99"], "unknown base 'resnet99'; choose one of resnet44, resnet20"),
    (["--epochs", "0"], "epochs=0 must be a positive integer (--epochs)"),
    (["--batch-size", "-4"], "batch_size=-4 must be a positive integer (--batch-size)"),
    (["--lr", "0"], "lr=0.0 must be a positive number (--lr)"),
    (["--lr", "nan"], "lr=nan must be a positive number (--lr)"),
])
def test_bad_options(argv, expected, tmp_path, capsys):
    line = fail(run_on(tree(tmp_path / "data"), tmp_path / "runs", *argv), capsys)
    assert expected in line
    assert not (tmp_path / "runs").exists()


def test_unknown_stream(tmp_path, capsys):
    line = fail(["stream", "--stream", "mnist", "--out", str(tmp_path)], capsys)
    assert "unknown stream 'mnist'; choose one of " in line and "split_cifar10" in line
    assert not any(tmp_path.iterdir())


def test_resume_without_a_checkpoint(tmp_path, capsys):
    data = tree(tmp_path / "data")
    line = fail(run_on(data, tmp_path / "runs", "--resume"), capsys)
    assert "no checkpoint to resume from" in line and "--overwrite" in line
    assert_no_result(tmp_path / "runs")


def test_resume_with_other_settings(tmp_path, capsys, crash_after_checkpoint):
    data = tree(tmp_path / "data")
    with crash_after_checkpoint(1, KeyboardInterrupt):  # as if stopped right after the first experience
        main(run_on(data, tmp_path / "runs"))
    line = fail(run_on(data, tmp_path / "runs", "--resume", "--lr", "0.5"), capsys)
    assert "other settings (train.lr)" in line
    line = fail(run_on(data, tmp_path / "runs"), capsys)  # neither --resume nor --overwrite
    assert "holds an incomplete run: pass --resume" in line
    assert_no_result(tmp_path / "runs")


def test_option_names_are_the_same_across_commands():
    """--out names the root output folder of every command that writes files."""
    import dataclasses

    from continual_side.cli import DemoConfig, parse_bench, parse_stream
    from continual_side.perf import PerfConfig

    assert "out" in {f.name for f in dataclasses.fields(DemoConfig)} and "out" in {f.name for f in dataclasses.fields(PerfConfig)}
    assert parse_stream(["--out", "x"]).out == parse_bench(["--out", "x"]).out == "x"
