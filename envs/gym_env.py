"""gymnasium PointNav env over habitat-lab's ``habitat.Env`` (registered as continual_side/PointNav-v0).

Observations: ``rgb`` (H, W, 3) uint8, ``depth`` (H, W, 1) float32 in [0, 1] (metres / 10),
``pointgoal_with_gps_compass`` (2,) float32 (distance, angle) to the goal. Actions: Discrete(4),
0 stop, 1 move_forward, 2 turn_left, 3 turn_right (habitat's order). Reward as habitat-baselines'
RLTaskEnv: the config's reward measure (decrease of geodesic distance) + slack reward per step
+ success reward on success. ``terminated`` when the agent calls stop, ``truncated`` at the step
limit. ``info`` holds habitat's metrics (distance_to_goal, success, spl, collisions).
"""

from __future__ import annotations

from typing import Any

import gym
import gymnasium
import numpy as np

from continual_side.errors import ConfigError
from envs.expert import ShortestPathExpert
from envs.habitat_env import DEFAULT_DATA_PATH, make_habitat_config, make_habitat_env

OBSERVATION_KEYS = ("rgb", "depth", "pointgoal_with_gps_compass")


ACTION_NAMES = ("stop", "move_forward", "turn_left", "turn_right")


def to_gymnasium_box(space: gym.spaces.Box) -> gymnasium.spaces.Box:
    """The gymnasium equivalent of a gym 0.23 Box (habitat-lab uses gym)."""
    return gymnasium.spaces.Box(low=space.low, high=space.high, shape=space.shape, dtype=space.dtype)


class PointNavEnv(gymnasium.Env):
    """PointNav in habitat-lab's Nav task on ContinualSideSim, as a gymnasium env.

    :param data_path: PointNav-v1 episode files (``{split}`` placeholder); default the shipped ones.
    :param split: dataset split.
    :param width: image width.
    :param height: image height.
    :param hfov: horizontal field of view in degrees.
    :param camera_height: camera height in metres.
    :param max_episode_steps: habitat's step limit (``truncated`` when reached; 0: none). Through
        ``gymnasium.make`` it is 0 and gymnasium's TimeLimit (500, or make's max_episode_steps) truncates.
    :param seed: default seed (episode order), overridden by ``reset(seed=...)``.
    :param render_mode: None or "rgb_array" (the RGB observation).
    :param config: a composed habitat config instead of the arguments above.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        data_path: str = DEFAULT_DATA_PATH,
        split: str = "train",
        width: int = 128,
        height: int = 128,
        hfov: int = 90,
        camera_height: float = 1.25,
        max_episode_steps: int = 500,
        seed: int = 0,
        render_mode: str | None = None,
        config=None,
    ):
        if config is None:
            config = make_habitat_config(
                data_path=data_path, split=split, width=width, height=height, hfov=hfov,
                camera_height=camera_height, max_episode_steps=max_episode_steps, seed=seed,
            )
        self.habitat_env = make_habitat_env(config)
        task_config = config.habitat.task
        self._reward_measure = task_config.reward_measure
        self._success_measure = task_config.success_measure
        self._slack_reward = float(task_config.slack_reward)
        self._success_reward = float(task_config.success_reward)
        self._end_on_success = bool(task_config.end_on_success)
        self._episodes = sorted(self.habitat_env.episodes, key=lambda e: (e.scene_id, e.episode_id))
        self._seed_episode_order(seed)
        spaces = self.habitat_env.observation_space.spaces
        self.observation_space = gymnasium.spaces.Dict({key: to_gymnasium_box(spaces[key]) for key in OBSERVATION_KEYS})
        actions = tuple(self.habitat_env.task.actions)
        if actions != ACTION_NAMES:
            raise ConfigError(f"habitat.task.actions must be {ACTION_NAMES} in this order, got {actions}")
        self.action_space = gymnasium.spaces.Discrete(len(actions))
        self.render_mode = render_mode
        self._expert = ShortestPathExpert(self.habitat_env.sim, goal_radius=config.habitat.task.measurements.success.success_distance)
        self._last_rgb: np.ndarray | None = None

    def _seed_episode_order(self, seed: int) -> None:
        """Episodes in a seeded random order, reshuffled each cycle. habitat's EpisodeIterator
        shuffles with the global `random` module, left unseeded for seed 0, so it is not used."""

        def order(rng: np.random.Generator):
            while True:
                for index in rng.permutation(len(self._episodes)):
                    yield self._episodes[index]

        self.habitat_env.episode_iterator = order(np.random.default_rng(seed))
        self.habitat_env.sim.seed(seed)

    def _observation(self, observations) -> dict[str, np.ndarray]:
        self._last_rgb = observations["rgb"]
        return {key: observations[key] for key in OBSERVATION_KEYS}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Next episode; with `seed`, the episode order restarts from that seed's permutation."""
        super().reset(seed=seed)
        if seed is not None:
            self._seed_episode_order(seed)
        observations = self.habitat_env.reset()
        return self._observation(observations), self._info()

    def step(self, action):
        observations = self.habitat_env.step(int(action))
        measures = self.habitat_env.task.measurements.measures
        success = bool(measures[self._success_measure].get_metric())
        reward = float(measures[self._reward_measure].get_metric()) + self._slack_reward
        if success:
            reward += self._success_reward
        stopped = not self.habitat_env.task.is_episode_active
        terminated = stopped or (self._end_on_success and success)
        truncated = self.habitat_env.episode_over and not terminated
        return self._observation(observations), reward, terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        """habitat's metrics, dict-valued ones (collisions) copied: measures update them in place."""
        return {key: dict(value) if isinstance(value, dict) else value for key, value in self.habitat_env.get_metrics().items()}

    def expert_action(self) -> int:
        """The shortest-path expert's action in the current state (for imitation learning)."""
        return self._expert.get_next_action([goal.position for goal in self.habitat_env.current_episode.goals])

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_rgb
        return None

    def close(self):
        self.habitat_env.close()
