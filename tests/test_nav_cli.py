"""``continual-side nav demo`` and ``nav perf`` through ``continual_side.cli.main``: real numbers on
good input; one line on stderr, exit code 2 and no map or results file on bad input."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from continual_side.cli import main
from envs.datasets import write_episodes
from envs.navgrid import FIELD_CACHE_ENV
from envs.perf import LAYERS, RESULTS_FILE
from envs.scene import WALL, empty_room
from habitat.tasks.nav.nav import NavigationEpisode, NavigationGoal

REPO = Path(__file__).resolve().parents[1]
FACING_PLUS_X = -math.pi / 2


@pytest.fixture(autouse=True, scope="module")
def _field_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FIELD_CACHE_ENV, str(tmp_path_factory.getbasetemp() / "geodesic"))  # shared by this session
        yield


def _user_error(argv, capsys) -> str:
    """Run the CLI expecting a user error; return its one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("continual-side: error: "), captured.err
    assert "Traceback" not in captured.err and "success" not in captured.out
    return lines[0]


def _episode_file(folder: Path, scene: str, start, goal) -> Path:
    episode = NavigationEpisode(
        episode_id="0",
        scene_id=scene,
        start_position=[float(v) for v in start],
        start_rotation=[0.0, math.sin(FACING_PLUS_X / 2), 0.0, math.cos(FACING_PLUS_X / 2)],
        goals=[NavigationGoal(position=[float(v) for v in goal], radius=0.2)],
        info={"geodesic_distance": 2.0, "difficulty": "easy"},
    )
    return write_episodes(folder / "episodes.json.gz", [episode])


DEMO_LINE = re.compile(
    r"(?P<scene>\S+) val episode 0 \(\w+, (?P<geodesic>[\d.]+) m\): success (?P<success>\d), SPL (?P<spl>[\d.]+), "
    r"(?P<steps>\d+) steps, (?P<collisions>\d+) collisions; map (?P<map>\S+)"
)


def _demo(argv: list[str], capsys) -> dict:
    """Run ``nav demo`` through the CLI; its printed result line, parsed."""
    main(["nav", "demo", "--resolution", "16", *argv])
    match = DEMO_LINE.fullmatch(capsys.readouterr().out.strip())
    assert match is not None
    return match.groupdict()


def test_nav_demo_expert_succeeds_and_writes_the_map(tmp_path, capsys):
    result = _demo(["--out", str(tmp_path)], capsys)
    assert result["scene"] == "apartment_16" and result["success"] == "1" and float(result["spl"]) > 0.9
    assert int(result["steps"]) >= float(result["geodesic"]) / 0.25  # 0.25 m per forward step at best
    image = np.asarray(Image.open(result["map"]))
    assert Path(result["map"]) == tmp_path / "apartment_16_val_ep0.png" and image.shape == (320, 400, 3)
    assert (image == (30, 80, 220)).all(axis=2).sum() > 20  # the blue path is drawn


def test_nav_demo_on_a_user_episode_file(tmp_path, capsys):
    scene = tmp_path / "room.npz"
    empty_room(3.0, 3.0).save(scene)
    episodes = _episode_file(tmp_path, str(scene), (0.5, 0, 1.5), (2.5, 0, 1.5))
    result = _demo(["--episodes", str(episodes), "--out", str(tmp_path / "maps")], capsys)
    assert result["geodesic"] == "2.00" and result["spl"] == "1.000"
    assert (result["success"], result["steps"], result["collisions"]) == ("1", "9", "0")  # 8 forward + stop
    assert Path(result["map"]) == tmp_path / "maps" / "room_val_ep0.png"


def test_nav_perf_reports_positive_rates_for_every_layer(tmp_path, capsys):
    main(["nav", "perf", "--resolutions", "16", "--steps", "40", "--warmup", "5", "--reset-episodes", "2",
          "--no-profile", "--no-pin-core", "--out", str(tmp_path)])
    written = json.loads((tmp_path / RESULTS_FILE).read_text())
    rates = written["steps_per_s"]["16x16"]
    assert set(rates) == set(LAYERS) and all(rates[layer]["cpu_steps_per_s"] > 0 for layer in LAYERS)
    assert rates["gym+stop"]["episodes"] >= 1  # random stops end episodes
    assert set(written["reset_ms"]) == {"cold", "disk", "memory"} and min(written["reset_ms"].values()) > 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split() == ["16x16", *(f"{rates[layer]['cpu_steps_per_s']:.0f}" for layer in LAYERS)]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        (["--scene", "kitchen"], "no episode on scene 'kitchen'"),
        (["--split", "holdout"], "holdout"),
        (["--episode", "30"], "episode 30 out of range"),
        (["--camera-height", "3"], "camera_height 3.0 m must lie between the floor (0) and the ceiling (2.5 m)"),
        (["--resolution", "0"], "need width, height >= 1"),
        (["--hfov", "180"], "0 < hfov < 180"),
    ],
    ids=["unknown-scene", "unknown-split", "unknown-episode", "camera-above-ceiling", "zero-resolution", "hfov-180"],
)
def test_nav_demo_bad_option_is_one_line(tmp_path, capsys, options, message):
    line = _user_error(["nav", "demo", "--resolution", "16", *options, "--out", str(tmp_path)], capsys)
    assert message in line
    assert not any(tmp_path.iterdir()), "no map for a demo that failed"


def test_corrupt_scene_file_is_one_line(tmp_path, capsys):
    scene = tmp_path / "broken.npz"
    scene.write_bytes(b"PK\x03\x04 truncated")
    episodes = _episode_file(tmp_path, str(scene), (0.5, 0, 1.5), (2.5, 0, 1.5))
    line = _user_error(["nav", "demo", "--episodes", str(episodes), "--out", str(tmp_path / "maps")], capsys)
    assert f"scene file {scene} is corrupt" in line
    assert not (tmp_path / "maps").exists()


def test_corrupt_episode_file_is_one_line(tmp_path, capsys):
    episodes = tmp_path / "episodes.json.gz"
    episodes.write_bytes(b"\x1f\x8b garbage")
    line = _user_error(["nav", "demo", "--episodes", str(episodes), "--out", str(tmp_path / "maps")], capsys)
    assert f"episode file {episodes} is not a PointNav-v1 json.gz" in line
    assert not (tmp_path / "maps").exists()


def test_unreachable_goal_is_one_line(tmp_path, capsys):
    """A wall across the room: the goal on its far side cannot be reached from the start."""
    scene = empty_room(3.0, 3.0)
    column = scene.world_to_cell(1.5, 0.0)[1]
    scene.occupancy[:, column : column + 2] = WALL
    scene.save(tmp_path / "split_room.npz")
    episodes = _episode_file(tmp_path, str(tmp_path / "split_room.npz"), (0.5, 0, 1.5), (2.5, 0, 1.5))
    line = _user_error(["nav", "demo", "--episodes", str(episodes), "--out", str(tmp_path / "maps")], capsys)
    assert "goal [2.5, 0.0, 1.5] is not navigable from start [0.5, 0.0, 1.5]" in line
    assert not (tmp_path / "maps").exists()


def test_nav_perf_bad_option_is_one_line(tmp_path, capsys):
    line = _user_error(["nav", "perf", "--resolutions", "0", "--out", str(tmp_path)], capsys)
    assert "need resolutions >= 1" in line
    assert not any(tmp_path.iterdir())


def test_nav_demo_prints_nothing_on_stderr(tmp_path):
    """As a user sees it: gym 0.23's banner (gym comes with habitat-lab) and habitat's info lines
    stay off stderr. Run from envs.cli, as continual_side.cli hands ``nav`` to it, to spare the
    subprocess the CL side's imports (continual_side.cli imports no gym itself)."""
    code = "import sys; from envs.cli import main; main(sys.argv[1:])"
    argv = ["demo", "--resolution", "16", "--out", str(tmp_path)]
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "success 1" in result.stdout
    assert result.stderr == ""
