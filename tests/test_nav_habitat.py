"""habitat-lab integration: import shim, ContinualSideSim under habitat's Nav task and measures,
PointNav-v1 datasets, the gymnasium env and the shortest-path expert."""

from __future__ import annotations

import gzip
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import envs
from envs import habitat_shim
from envs.datasets import (
    DEFAULT_EPISODES_PER_SCENE,
    DEFAULT_SPLIT_SCENES,
    DIFFICULTY_BINS,
    EpisodeFileError,
    EpisodeGenConfig,
    difficulty,
    write_episodes,
    write_pointnav_dataset,
)
from envs.habitat_env import make_habitat_config, make_habitat_env
from envs.navgrid import FIELD_CACHE_ENV
from envs.scene import SceneFileError, empty_room

from continual_side.errors import ConfigError, ContinualSideError
from habitat.core.registry import registry
from habitat.datasets.pointnav.pointnav_dataset import PointNavDatasetV1
from habitat.tasks.nav.nav import NavigationEpisode, NavigationGoal

REPO = Path(__file__).resolve().parents[1]
SHIM_FILE = REPO / "envs" / "habitat_shim.py"
STOP, FORWARD, LEFT, RIGHT = 0, 1, 2, 3
FACING_PLUS_X = -math.pi / 2  # heading whose forward vector (-sin, 0, -cos) is +x


@pytest.fixture(autouse=True, scope="module")
def _field_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FIELD_CACHE_ENV, str(tmp_path_factory.getbasetemp() / "geodesic"))  # shared by this session
        yield


# --- the import shim ------------------------------------------------------------------------------
EXPECTED_STUBS = [
    "habitat.core.batch_rendering.env_batch_renderer",
    "habitat.sims.habitat_simulator.object_state_machine",
    "habitat.tasks.rearrange",
    "habitat.tasks.rearrange.rearrange_sim",
]
# loads the shim by file path, so envs/__init__ (which installs all stand-ins) stays out of it
_LOAD_SHIM = (
    "import importlib.util, sys\n"
    f"spec = importlib.util.spec_from_file_location('habitat_shim', {str(SHIM_FILE)!r})\n"
    "shim = importlib.util.module_from_spec(spec); spec.loader.exec_module(shim)\n"
)
_USE_NAV_STACK = (
    "import habitat, habitat.gym\n"
    "from habitat.core.registry import registry\n"
    "from habitat.tasks.nav.nav import NavigationTask, IntegratedPointGoalGPSAndCompassSensor, DistanceToGoal, Success, SPL, Collisions\n"
    "assert registry.get_task('Nav-v0') is NavigationTask\n"
    "assert registry.get_sensor('PointGoalWithGPSCompassSensor') is IntegratedPointGoalGPSAndCompassSensor\n"
    "assert [registry.get_measure(n) for n in ('DistanceToGoal', 'Success', 'SPL', 'Collisions')] == [DistanceToGoal, Success, SPL, Collisions]\n"
    "assert registry.get_dataset('PointNav-v1').__name__ == 'PointNavDatasetV1'\n"
    "assert not [m for m in sys.modules if m.split('.')[0] in ('magnum', 'habitat_sim')]\n"
    "print('NAV-STACK-OK')\n"
)


def _python(code: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )


def test_shim_stands_in_for_exactly_the_modules_that_need_habitat_sim():
    """All stand-ins: the nav stack imports; each one left out: habitat fails on magnum/habitat_sim.

    A habitat-lab upgrade that moves these imports makes one of these assertions fail.
    """
    assert sorted(habitat_shim.STUBS) == EXPECTED_STUBS
    runs = {"all": _python(_LOAD_SHIM + "assert shim.install()\n" + _USE_NAV_STACK)}
    for name in EXPECTED_STUBS:
        keep = [n for n in EXPECTED_STUBS if n != name]
        runs[name] = _python(_LOAD_SHIM + f"assert shim.install({keep!r})\n" + _USE_NAV_STACK)
    outputs = {name: (proc.communicate(timeout=120)[0], proc.returncode) for name, proc in runs.items()}
    out, code = outputs.pop("all")
    assert code == 0 and "NAV-STACK-OK" in out, out
    for name, (out, code) in outputs.items():
        assert code != 0, f"stand-in for {name} is no longer needed:\n{out}"
        assert "No module named 'magnum'" in out or "No module named 'habitat_sim'" in out, out


def test_shim_never_shadows_an_installed_habitat_sim(tmp_path):
    (tmp_path / "habitat_sim").mkdir()
    (tmp_path / "habitat_sim" / "__init__.py").write_text("")
    code = _LOAD_SHIM + (
        "assert shim.habitat_sim_installed()\n"
        "assert shim.install() is False and not shim.installed()\n"
        "print('NOT-SHADOWED')\n"
    )
    out, _ = _python(code, env={"PYTHONPATH": str(tmp_path)}).communicate(timeout=60)
    assert "NOT-SHADOWED" in out, out


def test_stand_ins_raise_import_error_when_used():
    from habitat.sims.habitat_simulator import ObjectStateMachine

    with pytest.raises(ImportError, match="needs habitat-sim"):
        ObjectStateMachine()
    assert registry.get_simulator("ContinualSideSim-v0").__name__ == "ContinualSideSim"


# --- hand-made episodes in an empty 3 m x 3 m room ----------------------------------------------------
@pytest.fixture(scope="module")
def room(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("scene") / "room.npz"
    empty_room(3.0, 3.0).save(path)
    return str(path)


def _episode(scene: str, start, heading: float, goal, episode_id: str = "0") -> NavigationEpisode:
    return NavigationEpisode(
        episode_id=episode_id,
        scene_id=scene,
        start_position=[float(v) for v in start],
        start_rotation=[0.0, math.sin(heading / 2), 0.0, math.cos(heading / 2)],
        goals=[NavigationGoal(position=[float(v) for v in goal], radius=0.2)],
        info={"geodesic_distance": 0.0, "difficulty": "easy"},
    )


def _env_with(tmp_path, episodes, **kwargs):
    write_episodes(tmp_path / "train.json.gz", episodes)
    return make_habitat_env(data_path=str(tmp_path / "{split}.json.gz"), width=32, height=32, **kwargs)


def _play(env, actions) -> dict:
    env.reset()
    for action in actions:
        env.step(action)
        if env.episode_over:
            break
    return env.get_metrics()


def test_expert_straight_line_spl_is_one(room, tmp_path):
    env = _env_with(tmp_path, [_episode(room, (0.5, 0, 1.5), FACING_PLUS_X, (2.5, 0, 1.5))])
    env.reset()
    assert env.sim.geodesic_distance([0.5, 0, 1.5], [[2.5, 0, 1.5]]) == pytest.approx(2.0, abs=1e-5)
    expert = envs.ShortestPathExpert(env.sim)
    actions = []
    while not env.episode_over:
        actions.append(expert.get_next_action([[2.5, 0, 1.5]]))
        env.step(actions[-1])
    metrics = env.get_metrics()
    assert env.sim.get_straight_shortest_path_points([0.5, 0, 1.5], [2.5, 0, 1.5]) == [[0.5, 0, 1.5], [2.5, 0, 1.5]]
    assert actions == [FORWARD] * 8 + [STOP]
    assert metrics["success"] == 1.0
    assert metrics["spl"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["collisions"]["count"] == 0


def test_detour_spl_matches_formula(room, tmp_path):
    """l = 2 m straight; the agent walks 0.5 m aside, 2 m across, 0.5 m back: SPL = 2 / 3."""
    env = _env_with(tmp_path, [_episode(room, (0.5, 0, 1.5), FACING_PLUS_X, (2.5, 0, 1.5))])
    detour = [LEFT] * 9 + [FORWARD] * 2 + [RIGHT] * 9 + [FORWARD] * 8 + [RIGHT] * 9 + [FORWARD] * 2 + [STOP]
    metrics = _play(env, detour)
    assert env.sim.get_agent_state().position == pytest.approx([2.5, 0, 1.5], abs=1e-4)
    assert metrics["success"] == 1.0
    assert metrics["distance_to_goal"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["spl"] == pytest.approx(2.0 / 3.0, abs=1e-4)


@pytest.mark.parametrize("goal_x, success", [(1.65, 1.0), (1.75, 0.0)])
def test_stop_within_success_radius_succeeds_and_farther_fails(room, tmp_path, goal_x, success):
    """Four steps reach x = 1.5: 0.15 m from the first goal (success), 0.25 m from the second."""
    env = _env_with(tmp_path, [_episode(room, (0.5, 0, 1.5), FACING_PLUS_X, (goal_x, 0, 1.5))])
    metrics = _play(env, [FORWARD] * 4 + [STOP])
    assert metrics["distance_to_goal"] == pytest.approx(goal_x - 1.5, abs=1e-4)
    assert metrics["success"] == success
    assert metrics["spl"] == pytest.approx(success * 1.0, abs=1e-4)  # l = goal_x - 0.5 > p = 1.0


def test_walls_stop_the_agent_and_count_collisions(room, tmp_path):
    """From x = 2.5 facing the wall at x = 3: one free step, then three blocked ones (the agent's
    0.1 m radius keeps it below x = 2.9)."""
    env = _env_with(tmp_path, [_episode(room, (2.5, 0, 1.5), FACING_PLUS_X, (0.5, 0, 1.5))])
    metrics = _play(env, [FORWARD] * 4)
    x = env.sim.get_agent_state().position[0]
    assert metrics["collisions"]["count"] == 3
    assert 2.8 < x < 2.9


def test_sensors_follow_the_config(room, tmp_path):
    write_episodes(tmp_path / "train.json.gz", [_episode(room, (0.5, 0, 1.5), FACING_PLUS_X, (2.5, 0, 1.5))])
    env = make_habitat_env(data_path=str(tmp_path / "{split}.json.gz"), width=40, height=24, hfov=60)
    obs = env.reset()
    assert obs["rgb"].shape == (24, 40, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (24, 40, 1) and obs["depth"].dtype == np.float32
    # the wall straight ahead is 2.5 m away: normalised depth 2.5 / max_depth 10
    assert obs["depth"][11:13, 19:21].mean() == pytest.approx(0.25, abs=0.01)
    assert obs["pointgoal_with_gps_compass"] == pytest.approx([2.0, 0.0], abs=1e-4)
    state = env.sim.get_agent_state()
    assert state.rotation.y == pytest.approx(math.sin(FACING_PLUS_X / 2))
    env.step(LEFT)
    # turned 10 degrees left: the goal now lies 10 degrees to the right
    assert env.step(STOP)["pointgoal_with_gps_compass"][1] == pytest.approx(-math.radians(10), abs=1e-4)
    assert list(env.sim.up_vector) == [0, 1, 0] and list(env.sim.forward_vector) == [0, 0, -1]
    assert env.sim.is_navigable([1.5, 0, 1.5]) and not env.sim.is_navigable([2.95, 0, 1.5])


def test_unknown_sensor_type_is_a_config_error(room):
    config = make_habitat_config(data_path=None, scene=room)
    from habitat.config import read_write

    with read_write(config):
        config.habitat.simulator.agents.main_agent.sim_sensors.rgb_sensor.type = "HabitatSimSemanticSensor"
    with pytest.raises(ConfigError, match="HabitatSimSemanticSensor"):
        make_habitat_env(config)


# --- episode files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [b"not gzip at all", gzip.compress(b"{not json"), gzip.compress(b'{"episodes": [{"episode_id": "0"}]}'),
     gzip.compress(b'{"episodes": []}')],
    ids=["not-gzip", "not-json", "missing-fields", "no-episodes"],
)
def test_corrupt_episode_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "train.json.gz"
    path.write_bytes(content)
    with pytest.raises(EpisodeFileError, match=str(path)) as raised:
        make_habitat_env(data_path=str(tmp_path / "{split}.json.gz"))
    assert isinstance(raised.value, ContinualSideError)


def test_missing_episode_file_is_a_clear_error(tmp_path):
    with pytest.raises(EpisodeFileError, match="does not exist"):
        make_habitat_env(data_path=str(tmp_path / "{split}.json.gz"))


def test_corrupt_scene_file_is_a_clear_error(tmp_path):
    scene = tmp_path / "broken.npz"
    scene.write_bytes(b"PK garbage")
    with pytest.raises(SceneFileError, match=str(scene)):
        _env_with(tmp_path, [_episode(str(scene), (0.5, 0, 1.5), 0.0, (2.5, 0, 1.5))])


def test_shipped_dataset_loads_with_habitat_and_follows_the_bins():
    scenes_seen = []
    for split, scenes in DEFAULT_SPLIT_SCENES.items():
        config = make_habitat_config(split=split)
        dataset = PointNavDatasetV1(config.habitat.dataset)
        assert len(dataset.episodes) == DEFAULT_EPISODES_PER_SCENE[split] * len(scenes)
        assert {e.scene_id for e in dataset.episodes} == set(scenes)
        scenes_seen += scenes
        for episode in dataset.episodes:
            geodesic, name = episode.info["geodesic_distance"], episode.info["difficulty"]
            low, high = DIFFICULTY_BINS[name]
            assert low <= geodesic < high and difficulty(geodesic) == name
            assert episode.goals[0].radius == 0.2
        per_scene_and_bin = Counter((e.scene_id, e.info["difficulty"]) for e in dataset.episodes)
        assert set(per_scene_and_bin.values()) == {DEFAULT_EPISODES_PER_SCENE[split] // 3}  # stratified per scene
    assert len(scenes_seen) == len(set(scenes_seen)) == 24  # splits share no scene
    assert [len(DEFAULT_SPLIT_SCENES[split]) * DEFAULT_EPISODES_PER_SCENE[split] for split in ("train", "val", "test")] == [2016, 120, 120]


def test_generated_episodes_are_habitat_pointnav_and_deterministic(tmp_path):
    cfg = EpisodeGenConfig(episodes_per_scene=3, shortest_paths=True, seed=4)
    first = write_pointnav_dataset(tmp_path / "a", {"val": ["builtin:apartment_1"]}, cfg)["val"]
    second = write_pointnav_dataset(tmp_path / "b", {"val": ["builtin:apartment_1"]}, cfg)["val"]
    assert first.read_bytes() == second.read_bytes()
    env = make_habitat_env(data_path=str(tmp_path / "a" / "{split}" / "{split}.json.gz"), split="val")
    episodes = env.episodes
    assert sorted(e.info["difficulty"] for e in episodes) == ["easy", "hard", "medium"]
    for episode in episodes:
        env.current_episode = episode
        env.reset()
        start, goal = episode.start_position, episode.goals[0].position
        assert env.sim.geodesic_distance(start, [goal]) == pytest.approx(episode.info["geodesic_distance"], rel=1e-6)
        assert np.linalg.norm(np.subtract(start, goal)) > 0  # and geodesic/euclid filtering is habitat's own
        for point in episode.shortest_paths[0]:  # replaying the stored expert actions reaches the goal
            env.step(point.action)
        env.step(STOP)
        assert env.get_metrics()["success"] == 1.0


def test_scene_without_room_for_episodes_is_a_config_error(tmp_path):
    path = tmp_path / "closet.npz"
    empty_room(1.0, 1.0).save(path)
    cfg = EpisodeGenConfig(episodes_per_scene=3, max_samples_per_episode=20)
    with pytest.raises(ConfigError, match="closet.npz"):
        write_pointnav_dataset(tmp_path / "out", {"train": [str(path)]}, cfg)


# --- the gymnasium env and the expert on the shipped episodes ----------------------------------------
@pytest.fixture(scope="module")
def gym_env():
    env = gymnasium.make("continual_side/PointNav-v0", split="val", width=32, height=32, max_episode_steps=150)
    yield env
    env.close()


def test_same_seed_same_episode_and_observations(gym_env):
    other = gymnasium.make("continual_side/PointNav-v0", split="val", width=32, height=32)
    actions = np.random.default_rng(3).integers(1, 4, 30)
    runs = []
    for env in (gym_env, other):
        obs, _ = env.reset(seed=11)
        trace = [(env.unwrapped.habitat_env.current_episode.episode_id, obs)]
        trace += [env.step(a)[0] for a in actions]
        runs.append(trace)
    assert runs[0][0][0] == runs[1][0][0]
    for a, b in zip(runs[0][1:], runs[1][1:]):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other.close()


def test_random_actions_keep_observations_in_the_space(gym_env):
    space = gym_env.observation_space
    rng = np.random.default_rng(0)
    obs, _ = gym_env.reset(seed=0)
    episodes = 1
    for action in rng.integers(0, 4, 5_000):
        obs, reward, terminated, truncated, info = gym_env.step(action)
        assert space.contains(obs) and math.isfinite(reward)
        assert np.isfinite(obs["depth"]).all() and np.isfinite(obs["pointgoal_with_gps_compass"]).all()
        if terminated or truncated:
            obs, _ = gym_env.reset()
            episodes += 1
    assert episodes > 500  # stop (action 0) ends episodes; the 150-step TimeLimit cuts the rest


def test_habitat_gym_wrapper_runs_on_continual_side_sim():
    from habitat.gym import make_gym_from_config

    env = make_gym_from_config(make_habitat_config(split="val", width=16, height=16))
    obs = env.reset()
    assert obs["rgb"].shape == (16, 16, 3)
    _, reward, done, info = env.step(1)
    assert not done and set(info) >= {"distance_to_goal", "success", "spl", "collisions"}
    env.close()
