"""The command line: user errors are one line on stderr with exit code 2, results are printed."""

import pytest

from continual_side.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr()


def test_missing_data_root_is_one_line_and_exit_code_2(tmp_path, capsys):
    missing = tmp_path / "no-such-cifar"
    code, out = _run(["stream", "--stream", "split_cifar10", "--data-root", str(missing),
                      "--out", str(tmp_path / "runs"), "--no-progress"], capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("continual-side: error: ")
    assert str(missing / "train") in lines[0]
    assert "Traceback" not in out.err


def test_unknown_method_lists_the_registered_ones(tmp_path, capsys):
    code, out = _run(["stream", "--method", "nope", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "unknown method 'nope'" in out.err and "sidetune" in out.err and "ewc" in out.err
    assert not (tmp_path / "demo" / "nope").exists(), "no run folder for a run that never started"


def test_unknown_merge_is_refused_before_training(tmp_path, capsys):
    code, out = _run(["stream", "--sidetune.merge", "average", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 2
    assert "unknown merge 'average'" in out.err and "film" in out.err


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, out = _run(["stream", "--device", "cuda", "--out", str(tmp_path), "--no-progress"], capsys)
    assert code == 2
    assert "CUDA is not available" in out.err and "--device cpu" in out.err


def test_bad_option_value_is_a_usage_error(capsys):
    code, _ = _run(["stream", "--epochs", "four"], capsys)
    assert code == 2


def test_the_console_script_prints_exactly_one_line_on_a_user_error(tmp_path):
    """As a user sees it: a fresh process, nothing on stderr but the error (no warnings, no traceback)."""
    import subprocess
    import sys

    missing = tmp_path / "missing"
    result = subprocess.run(
        [sys.executable, "-c", "from continual_side.cli import main; main()", "stream", "--stream", "split_cifar10",
         "--data-root", str(missing), "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("continual-side: error: ") and str(missing / "train") in result.stderr
