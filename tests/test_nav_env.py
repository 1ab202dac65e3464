"""The gymnasium PointNav env as RL libraries use it: vectorised, SB3 image spaces, episode choice,
is_success, the paper's actions and goal encoding, top-down rendering, every-episode evaluation."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecTransposeImage

import envs
from continual_side.errors import ConfigError
from envs.datasets import DEFAULT_EPISODES_PER_SCENE, DEFAULT_SPLIT_SCENES
from envs.evaluation import evaluate_every_episode, summarize
from envs.gym_env import GOAL_KEY, MAX_GOAL_DISTANCE_M, PointNavEnv
from envs.navgrid import FIELD_CACHE_ENV
from envs.simulator import quaternion_to_heading

FORWARD = 1
N_VAL = DEFAULT_EPISODES_PER_SCENE["val"] * len(DEFAULT_SPLIT_SCENES["val"])


@pytest.fixture(autouse=True, scope="module")
def _field_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FIELD_CACHE_ENV, str(tmp_path_factory.getbasetemp() / "geodesic"))  # shared by this session
        yield


def make(**kwargs) -> gymnasium.Env:
    return gymnasium.make(envs.GYM_ID, **{"split": "val", "width": 16, "height": 16, **kwargs})


@pytest.fixture(scope="module")
def val_env():
    env = make()
    yield env
    env.close()


def _play_expert(env, episode_id: str) -> tuple[int, dict]:
    env.reset(options={"episode_id": episode_id})
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        steps, done = steps + 1, terminated or truncated
    return steps, info


def test_make_vec_with_two_envs_keeps_gymnasiums_time_limit():
    vec = gymnasium.make_vec(envs.GYM_ID, num_envs=2, split="val", width=16, height=16, max_episode_steps=3)
    observations, _ = vec.reset(seed=0)
    assert observations["rgb"].shape == (2, 16, 16, 3) and observations["depth"].shape == (2, 16, 16, 1)
    for step in range(3):
        _, _, terminated, truncated, _ = vec.step(np.array([FORWARD, FORWARD]))
        assert not terminated.any() and truncated.all() == (step == 2)
    vec.close()


def test_habitat_step_limit_truncates_without_gymnasiums_time_limit():
    env = PointNavEnv(split="val", width=16, height=16, habitat_step_limit=4)
    env.reset(seed=0)
    ends = [env.step(FORWARD)[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]
    env.close()


def test_sb3_subproc_vec_env_steps_and_reaches_the_expert():
    vec = SubprocVecEnv([make] * 2, start_method="fork")
    vec.seed(0)
    observations = vec.reset()
    assert observations["depth"].shape == (2, 16, 16, 1)
    actions = vec.env_method("expert_action")
    assert all(action in (0, 1, 2, 3) for action in actions)
    vec.step(np.array(actions))
    vec.close()


def test_depth_is_an_image_for_sb3_and_the_goal_space_is_bounded(val_env):
    space = val_env.observation_space
    assert is_image_space(space["rgb"]) and is_image_space(space["depth"])
    goal = space[GOAL_KEY]
    assert np.isfinite(goal.low).all() and np.isfinite(goal.high).all() and goal.high[0] == MAX_GOAL_DISTANCE_M
    transposed = VecTransposeImage(DummyVecEnv([make]))
    observations = transposed.reset()
    assert observations["depth"].shape == (1, 1, 16, 16) and observations["rgb"].shape == (1, 3, 16, 16)
    transposed.close()


def test_uint8_depth_and_cos_sin_goal_encode_the_float_and_polar_observations(val_env):
    other = make(depth="float", goal_format="cos_sin_distance")
    episode_id = val_env.unwrapped.episodes[5].episode_id
    first, _ = val_env.reset(options={"episode_id": episode_id})
    second, _ = other.reset(options={"episode_id": episode_id})
    for action in (FORWARD, 2, FORWARD):
        first, second = val_env.step(action)[0], other.step(action)[0]
    assert first["depth"].dtype == np.uint8 and second["depth"].dtype == np.float32
    np.testing.assert_array_equal(first["depth"], np.round(second["depth"] * 255).astype(np.uint8))
    assert 0.05 < second["depth"].mean() < 1.0  # walls within 10 m: not all empty or all max
    distance, angle = first[GOAL_KEY]
    np.testing.assert_allclose(second[GOAL_KEY], [math.cos(angle), math.sin(angle), distance], rtol=1e-6)
    other.close()


def test_reset_option_picks_the_episode_and_an_unknown_id_is_an_error(val_env):
    episode = val_env.unwrapped.episodes[7]
    _, info = val_env.reset(options={"episode_id": episode.episode_id})
    assert val_env.unwrapped.current_episode is episode
    state = val_env.unwrapped.habitat_env.sim.get_agent_state()
    np.testing.assert_allclose(state.position, episode.start_position, atol=1e-6)
    assert info["distance_to_goal"] == pytest.approx(episode.info["geodesic_distance"], rel=1e-5)
    with pytest.raises(ConfigError, match="no episode 'nope'"):
        val_env.reset(options={"episode_id": "nope"})


def test_is_success_is_true_only_when_the_agent_stops_at_the_goal(val_env):
    episode_id = val_env.unwrapped.episodes[0].episode_id
    val_env.reset(options={"episode_id": episode_id})
    _, _, terminated, _, info = val_env.step(0)  # stop at the start, >= 1 m away
    assert terminated and info["is_success"] is False
    steps, info = _play_expert(val_env, episode_id)
    assert info["is_success"] is True and info["success"] == 1.0


def test_paper_actions_stop_by_themselves_within_the_success_distance(val_env):
    paper = make(actions="paper")
    assert paper.action_space == gymnasium.spaces.Discrete(3)
    episode_id = paper.unwrapped.episodes[3].episode_id
    steps_habitat, _ = _play_expert(val_env, episode_id)
    steps_paper, info = _play_expert(paper, episode_id)
    assert info["is_success"] and info["distance_to_goal"] < 0.2
    assert steps_paper == steps_habitat - 1  # the same path without the explicit stop
    paper.reset(options={"episode_id": episode_id})
    sim = paper.unwrapped.habitat_env.sim
    before = quaternion_to_heading(sim.get_agent_state().rotation)
    assert not paper.step(1)[2]  # 1 is turn_left here: 10 degrees, the episode goes on
    turned = quaternion_to_heading(sim.get_agent_state().rotation) - before
    assert math.remainder(turned, 2 * math.pi) == pytest.approx(math.radians(10), abs=1e-5)
    paper.close()


def test_top_down_render_shows_the_path_agent_and_goal():
    env = make(render_mode="rgb_array")
    env.reset(options={"episode_id": env.unwrapped.episodes[0].episode_id})
    for _ in range(12):
        env.step(env.unwrapped.expert_action())
    image = env.render()
    assert image.shape == (320, 400, 3) and image.dtype == np.uint8  # 8 m x 10 m at 5 cm, 2 px per cell
    for colour in ((30, 80, 220), (220, 40, 40), (30, 180, 60)):  # path, agent, goal
        assert (image == colour).all(axis=2).any()
    env.close()


@pytest.mark.parametrize(
    "option, value", [("depth", "png"), ("goal_format", "cartesian"), ("actions", "six")]
)
def test_unknown_option_values_are_config_errors(option, value):
    with pytest.raises(ConfigError, match=f"{option} must be .*got '{value}'"):
        make(**{option: value})


@pytest.mark.parametrize("options", [{}, {"actions": "paper", "goal_format": "cos_sin_distance", "depth": "float"}])
def test_env_checkers_pass(options):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(width=36, height=36, render_mode="rgb_array", **options)
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=False)
    env.close()


def test_expert_succeeds_on_every_val_episode_and_random_spl_is_below_a_tenth(val_env):
    expert = evaluate_every_episode(val_env, lambda observation: val_env.unwrapped.expert_action())
    assert len(expert) == N_VAL and len({result.episode_id for result in expert}) == N_VAL
    assert [result.success for result in expert] == [1.0] * N_VAL
    assert summarize(expert)["spl"] > 0.9
    rng = np.random.default_rng(0)
    random = summarize(evaluate_every_episode(val_env, lambda observation: int(rng.integers(4))))
    assert random["episodes"] == N_VAL and random["spl"] < 0.1
