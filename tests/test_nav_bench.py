"""nav bench on the sweep's executors: one run after another and two worker processes give the same table, a rerun
trains only what is missing (a deleted run; runs asked for another evaluation are only evaluated; an interrupted PPO
run resumes from its checkpoint), and a failing run is reported while the other completes."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pytest

import agents.bench
from agents.bench import NavBenchConfig, run_nav_bench
from agents.cli import main
from agents.train import NavTrainConfig
from continual_side.executors import ExecutorConfig
from continual_side.results import SUMMARY_FILE
from envs.navgrid import FIELD_CACHE_ENV

SIZE = 32
ENCODERS = ("blind", "features")


@pytest.fixture(autouse=True, scope="module")
def _field_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FIELD_CACHE_ENV, str(tmp_path_factory.getbasetemp() / "geodesic"))  # shared by this session
        yield


def tiny_bench(out, *, executor=None, episodes=2) -> NavBenchConfig:
    """BC with the blind and the features encoder, one seed, 2 expert episodes, one epoch, 2 val episodes."""
    train = NavTrainConfig(width=SIZE, height=SIZE, max_episode_steps=40, train_episodes=2, bc_epochs=1,
                           eval_episodes=1, tensorboard=False, progress=False, out=str(out))
    return NavBenchConfig(encoders=ENCODERS, algos=("bc",), seeds=1, split="val", episodes=episodes, train=train,
                          executor=executor or ExecutorConfig())


def without_times(table: str) -> str:
    """The table without its last column, the training time (the only one that differs between executors)."""
    return re.sub(r"\| [^|]* \|$", "|", table, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """The tiny bench on two worker processes."""
    out = tmp_path_factory.mktemp("two-workers")
    return out, run_nav_bench(tiny_bench(out, executor=ExecutorConfig(workers=2)))


def test_one_worker_and_two_workers_give_the_same_table(two_workers, tmp_path):
    out, parallel = two_workers
    serial = run_nav_bench(tiny_bench(tmp_path))
    for result in (parallel, serial):
        assert [(report.job.name, report.action, report.error) for report in result.runs] == [
            (f"nav/bc-{encoder}/seed-0", "started", None) for encoder in ENCODERS]
        assert all("=== complete" in report.job.log.read_text() for report in result.runs)
    table = (parallel.folder / "table.md").read_text()
    assert [line.split(" | ")[1] for line in table.splitlines()[2:]] == list(ENCODERS)
    assert without_times(table) == without_times((serial.folder / "table.md").read_text())
    assert all((parallel.folder / name).is_file() for name in ("success.png", "spl.png", "curves.png"))


def test_rerun_trains_only_the_deleted_run_and_evaluates_only_when_asked_for_other_episodes(two_workers, tmp_path):
    shutil.copytree(two_workers[0], tmp_path, dirs_exist_ok=True)
    deleted = tmp_path / "nav" / "bc-features" / "seed-0"
    shutil.rmtree(deleted)
    kept = tmp_path / "nav" / "bc-blind" / "seed-0" / SUMMARY_FILE
    trained_at = kept.stat().st_mtime_ns
    result = run_nav_bench(tiny_bench(tmp_path))
    assert [(report.job.folder, report.action) for report in result.runs] == [
        (kept.parent, "skipped"), (deleted, "started")]
    assert kept.stat().st_mtime_ns == trained_at and (deleted / SUMMARY_FILE).is_file()
    assert len(json.loads((result.folder / "results.json").read_text())["runs"]) == 2

    retrained_at = (deleted / SUMMARY_FILE).stat().st_mtime_ns
    result = run_nav_bench(tiny_bench(tmp_path, episodes=1))  # trained runs, evaluated on other episodes
    assert [report.action for report in result.runs] == ["resumed", "resumed"]
    assert (kept.stat().st_mtime_ns, (deleted / SUMMARY_FILE).stat().st_mtime_ns) == (trained_at, retrained_at)
    assert all(json.loads((report.job.folder / "eval-val" / "summary.json").read_text())["episodes"] == 1
               for report in result.runs)


def test_a_failing_run_is_reported_and_the_other_completes(tmp_path, monkeypatch, capsys):
    train = agents.bench.train

    def train_but_not_features(config):
        if config.encoder == "features":
            raise RuntimeError("no features today")
        return train(config)

    monkeypatch.setattr(agents.bench, "train", train_but_not_features)  # in this process: --workers 1
    result = run_nav_bench(tiny_bench(tmp_path))
    (failed,) = [report for report in result.runs if report.error is not None]
    assert failed.job.name == "nav/bc-features/seed-0" and failed.error == "RuntimeError: no features today"
    assert "Traceback" in failed.job.log.read_text()
    assert "| bc | blind |" in (result.folder / "table.md").read_text()
    assert [row["encoder"] for row in json.loads((result.folder / "results.json").read_text())["runs"]] == ["blind"]

    argv = ["bench", "--encoders", *ENCODERS, "--algos", "bc", "--seeds", "1", "--split", "val", "--episodes", "2",
            "--width", str(SIZE), "--height", str(SIZE), "--max-episode-steps", "40", "--train-episodes", "2",
            "--bc-epochs", "1", "--eval-episodes", "1", "--no-tensorboard", "--no-progress", "--out", str(tmp_path)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 1 and "| bc | blind |" in captured.out
    assert "2 runs: 1 skipped, 1 started, 0 resumed, 0 restarted, 1 failed" in captured.out
    assert f"failed: nav/bc-features/seed-0: RuntimeError: no features today (log: {failed.job.log})" in captured.err


def test_an_interrupted_ppo_run_resumes_from_its_checkpoint(tmp_path):
    config = tiny_bench(tmp_path)
    config = replace(config, encoders=("blind",), algos=("ppo",), train=replace(
        config.train, n_envs=1, n_steps=32, batch_size=32, n_epochs=1, total_steps=64, checkpoint_every=32,
        eval_every=32))
    (report,) = run_nav_bench(config).runs
    run_dir = report.job.folder
    for path in (run_dir / SUMMARY_FILE, run_dir / "checkpoints" / "ppo_64_steps.zip"):
        path.unlink()  # as if killed after its first checkpoint
    (report,) = run_nav_bench(config).runs
    assert (report.action, report.error) == ("resumed", None) and "resume=True" in report.job.log.read_text()
    assert json.loads((run_dir / SUMMARY_FILE).read_text())["timesteps"] == 64
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [event["timesteps"] for event in events if event["event"] == "eval"] == [32, 64]


def test_table_gives_mean_and_std_over_seeds_and_the_dagger_rounds_kept():
    rows = [{"algo": "bc", "encoder": "blind", "success": 0.5, "spl": 0.4, "train_s": 60},
            {"algo": "dagger", "encoder": "features", "success": 0.2, "spl": 0.1, "train_s": 60, "selected_round": 0},
            {"algo": "dagger", "encoder": "features", "success": 0.4, "spl": 0.3, "train_s": 180, "selected_round": 2}]
    lines = agents.bench.table_markdown(rows, "test").splitlines()
    assert lines[2] == "| bc | blind | 50.00 ± 0.00 | 40.00 ± 0.00 | 1 | - | 1.0 |"
    assert lines[3] == "| dagger | features | 30.00 ± 14.14 | 20.00 ± 14.14 | 2 | 0, 2 | 2.0 |"


def test_learning_curves_average_the_seeds_evaluations(tmp_path):
    def run(name, evals, x_key):
        folder = tmp_path / name
        folder.mkdir()
        events = [{"event": "train"}] + [{"event": "eval", x_key: x, "success": s} for x, s in evals]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
        return str(folder)

    rows = [{"algo": "dagger", "encoder": "features", "run_dir": run("d0", [(100, 0.2), (200, 0.6)], "expert_frames")},
            {"algo": "dagger", "encoder": "features", "run_dir": run("d1", [(110, 0.4), (210, 0.8)], "expert_frames")},
            {"algo": "ppo", "encoder": "blind", "run_dir": run("p0", [(10, 0.0), (20, 0.5), (30, 0.9)], "timesteps")},
            {"algo": "ppo", "encoder": "blind", "run_dir": run("p1", [(10, 0.2), (20, 0.3)], "timesteps")}]
    curves = agents.bench.learning_curves(rows)
    x, success = curves["dagger"]["features"]
    assert x.tolist() == [105, 205] and success == pytest.approx([0.3, 0.7])
    x, success = curves["ppo"]["blind"]  # as many evaluations as the shortest seed
    assert x.tolist() == [10, 20] and success == pytest.approx([0.1, 0.4])


def test_aggregate_only_compares_the_complete_runs_and_names_the_others(two_workers, tmp_path, capsys):
    shutil.copytree(two_workers[0], tmp_path, dirs_exist_ok=True)
    unevaluated = tmp_path / "nav" / "bc-features" / "seed-0"
    shutil.rmtree(unevaluated / "eval-val")
    trained_at = (unevaluated / SUMMARY_FILE).stat().st_mtime_ns
    result = run_nav_bench(replace(tiny_bench(tmp_path), aggregate_only=True))
    assert [job.folder for job in result.left_out] == [unevaluated] and not (unevaluated / "eval-val").exists()
    assert (unevaluated / SUMMARY_FILE).stat().st_mtime_ns == trained_at  # nothing trained or evaluated
    table = (result.folder / "table.md").read_text()
    assert [line.split(" | ")[1] for line in table.splitlines()[2:]] == ["blind"]

    main(["bench", "--encoders", *ENCODERS, "--algos", "bc", "--seeds", "1", "--split", "val", "--episodes", "2",
          "--width", str(SIZE), "--height", str(SIZE), "--max-episode-steps", "40", "--train-episodes", "2",
          "--bc-epochs", "1", "--eval-episodes", "1", "--no-tensorboard", "--no-progress", "--out", str(tmp_path),
          "--aggregate-only"])
    assert "left out, not complete: nav/bc-features/seed-0" in capsys.readouterr().out
