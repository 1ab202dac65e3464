"""gymnasium PointNav env over habitat-lab's ``habitat.Env`` (registered as continual_side/PointNav-v0).

Observations (a Dict):

- ``rgb``: (H, W, 3) uint8.
- ``depth``: (H, W, 1) uint8 by default, ``metres = value / 255 * max_depth`` (the depth sensor's
  max_depth, 10 m: about 4 cm a level), so SB3 treats it as an image (``VecTransposeImage`` moves
  its channel first, as for RGB); ``depth="float"`` gives habitat's float32 in [0, 1]
  (metres / max_depth) instead.
- ``pointgoal_with_gps_compass``: float32, the goal in the agent's frame. ``goal_format="polar"``
  (habitat's): (distance, angle); ``"cos_sin_distance"`` (the side-tuning paper's agents):
  (cos angle, sin angle, distance). Distances are clipped to MAX_GOAL_DISTANCE_M, so the space is
  bounded.

Actions: ``actions="habitat"``, Discrete(4) in habitat's order 0 stop, 1 move_forward, 2 turn_left,
3 turn_right; ``actions="paper"``, Discrete(3) 0 move_forward, 1 turn_left, 2 turn_right (the
paper's), the episode stopping by itself once the geodesic distance to the goal is below the success
distance. Reward as habitat-baselines' RLTaskEnv: the config's reward measure (decrease of geodesic
distance) + slack reward per step + success reward on success. ``terminated`` when the episode
stops, ``truncated`` at the step limit. ``info`` holds habitat's metrics (distance_to_goal, success,
spl, collisions) and ``is_success`` (what SB3's EvalCallback reads).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import gym
import gymnasium
import numpy as np

from continual_side.errors import ConfigError
from envs.datasets import EpisodeFileError
from envs.expert import ShortestPathExpert
from envs.habitat_env import DEFAULT_DATA_PATH, make_habitat_config, make_habitat_env
from envs.render import topdown_map
from envs.simulator import quaternion_to_heading

GOAL_KEY = "pointgoal_with_gps_compass"
OBSERVATION_KEYS = ("rgb", "depth", GOAL_KEY)
ACTION_NAMES = ("stop", "move_forward", "turn_left", "turn_right")
# the paper's actions, as indices into ACTION_NAMES (habitat's action ids)
PAPER_ACTIONS = (1, 2, 3)
MAX_GOAL_DISTANCE_M = 30.0
DepthFormat = Literal["uint8", "float"]
GoalFormat = Literal["polar", "cos_sin_distance"]
ActionSet = Literal["habitat", "paper"]


def to_gymnasium_box(space: gym.spaces.Box) -> gymnasium.spaces.Box:
    """The gymnasium equivalent of a gym 0.23 Box (habitat-lab uses gym)."""
    return gymnasium.spaces.Box(low=space.low, high=space.high, shape=space.shape, dtype=space.dtype)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _episode_order_key(episode) -> tuple[int, int, str]:
    episode_id = str(episode.episode_id)
    return (0, int(episode_id), "") if episode_id.isdigit() else (1, 0, episode_id)


class PointNavEnv(gymnasium.Env):
    """PointNav in habitat-lab's Nav task on ContinualSideSim, as a gymnasium env.

    :param data_path: PointNav-v1 episode files (``{split}`` placeholder); default the shipped ones.
    :param split: dataset split.
    :param width: image width.
    :param height: image height.
    :param hfov: horizontal field of view in degrees.
    :param camera_height: camera height in metres.
    :param habitat_step_limit: habitat's own step limit (``truncated`` when reached; 0: none).
        ``gymnasium.make`` adds a TimeLimit of 500 steps (or its ``max_episode_steps``) instead.
    :param depth: "uint8" (an image, max_depth / 255 metres a level) or "float" (habitat's [0, 1]).
    :param goal_format: "polar" (distance, angle) or "cos_sin_distance" (cos, sin, distance).
    :param actions: "habitat" (stop, forward, left, right) or "paper" (forward, left, right, with
        automatic stop within the success distance).
    :param seed: default seed (episode order), overridden by ``reset(seed=...)``.
    :param render_mode: None or "rgb_array" (a top-down map with the path so far, agent and goal).
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
        habitat_step_limit: int = 0,
        depth: DepthFormat = "uint8",
        goal_format: GoalFormat = "polar",
        actions: ActionSet = "habitat",
        seed: int = 0,
        render_mode: str | None = None,
        config=None,
    ):
        self._depth_uint8 = _choice("depth", depth, get_args(DepthFormat)) == "uint8"
        self._cos_sin_goal = _choice("goal_format", goal_format, get_args(GoalFormat)) == "cos_sin_distance"
        self._auto_stop = _choice("actions", actions, get_args(ActionSet)) == "paper"
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ConfigError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        if config is None:
            config = make_habitat_config(
                data_path=data_path, split=split, width=width, height=height, hfov=hfov,
                camera_height=camera_height, max_episode_steps=habitat_step_limit, seed=seed,
            )
        self._data_path = config.habitat.dataset.data_path.format(split=config.habitat.dataset.split)
        self.habitat_env = make_habitat_env(config)
        task_config = config.habitat.task
        self._reward_measure = task_config.reward_measure
        self._success_measure = task_config.success_measure
        self._slack_reward = float(task_config.slack_reward)
        self._success_reward = float(task_config.success_reward)
        self._end_on_success = bool(task_config.end_on_success)
        self._success_distance = float(task_config.measurements.success.success_distance)
        # habitat's episode iterator shuffles the dataset's list in place, with the unseeded global
        # `random`: sort by id (numerically where ids are numbers, as in the shipped files)
        self.episodes = sorted(self.habitat_env.episodes, key=_episode_order_key)
        self._episode_by_id = {e.episode_id: e for e in self.episodes}
        self._seed_episode_order(seed)
        if tuple(self.habitat_env.task.actions) != ACTION_NAMES:
            raise ConfigError(f"habitat.task.actions must be {ACTION_NAMES} in this order, got {tuple(self.habitat_env.task.actions)}")
        self._habitat_actions = PAPER_ACTIONS if self._auto_stop else tuple(range(len(ACTION_NAMES)))
        self.action_space = gymnasium.spaces.Discrete(len(self._habitat_actions))
        self.observation_space = self._make_observation_space(self.habitat_env.observation_space.spaces)
        self.render_mode = render_mode
        self._expert = ShortestPathExpert(self.habitat_env.sim, goal_radius=self._success_distance)
        self._path: list[np.ndarray] = []

    def _make_observation_space(self, habitat_spaces) -> gymnasium.spaces.Dict:
        rgb, depth = to_gymnasium_box(habitat_spaces["rgb"]), to_gymnasium_box(habitat_spaces["depth"])
        if self._depth_uint8:
            depth = gymnasium.spaces.Box(0, 255, shape=depth.shape, dtype=np.uint8)
        pi = np.float32(math.pi)
        if self._cos_sin_goal:
            goal = gymnasium.spaces.Box(
                np.array([-1, -1, 0], np.float32), np.array([1, 1, MAX_GOAL_DISTANCE_M], np.float32), dtype=np.float32
            )
        else:
            goal = gymnasium.spaces.Box(np.array([0, -pi], np.float32), np.array([MAX_GOAL_DISTANCE_M, pi], np.float32), dtype=np.float32)
        return gymnasium.spaces.Dict({"rgb": rgb, "depth": depth, GOAL_KEY: goal})

    def _seed_episode_order(self, seed: int) -> None:
        """Episodes in a seeded random order, reshuffled each cycle. habitat's EpisodeIterator
        shuffles with the global `random` module, left unseeded for seed 0, so it is not used."""

        def order(rng: np.random.Generator):
            while True:
                for index in rng.permutation(len(self.episodes)):
                    yield self.episodes[index]

        episodes = order(np.random.default_rng(seed))
        self.habitat_env.episode_iterator = episodes
        self.habitat_env.current_episode = next(episodes)  # the next reset plays it, not habitat's own pick
        self.habitat_env.sim.seed(seed)

    def _observation(self, observations) -> dict[str, np.ndarray]:
        depth = observations["depth"]
        if self._depth_uint8:
            depth = np.multiply(depth, 255.0).round().astype(np.uint8)
        distance, angle = observations[GOAL_KEY]
        distance = min(float(distance), MAX_GOAL_DISTANCE_M)
        if self._cos_sin_goal:
            goal = np.array([math.cos(angle), math.sin(angle), distance], dtype=np.float32)
        else:
            goal = np.array([distance, angle], dtype=np.float32)
        return {"rgb": observations["rgb"], "depth": depth, GOAL_KEY: goal}

    @property
    def current_episode(self):
        """habitat's NavigationEpisode being played."""
        return self.habitat_env.current_episode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Next episode; with `seed`, the episode order restarts from that seed's permutation.

        :param options: ``{"episode_id": id}`` plays that episode of the split (its habitat id)
            instead of the next one; the order after it is unchanged.
        :raises ConfigError: unknown episode id.
        :raises EpisodeFileError: the episode's goal cannot be reached from its start.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._seed_episode_order(seed)
        if options and "episode_id" in options:
            episode_id = str(options["episode_id"])
            if episode_id not in self._episode_by_id:
                raise ConfigError(
                    f"no episode {episode_id!r} in {self._data_path} ({len(self.episodes)} episodes, ids "
                    f"{self.episodes[0].episode_id}..{self.episodes[-1].episode_id})"
                )
            self.habitat_env.current_episode = self._episode_by_id[episode_id]
        observations = self.habitat_env.reset()
        self._check_reachable()
        self._path = [self.habitat_env.sim.get_agent_state().position] if self.render_mode else []
        return self._observation(observations), self._info()

    def _check_reachable(self) -> None:
        distance = self.habitat_env.get_metrics()["distance_to_goal"]
        if not math.isfinite(distance):
            episode = self.current_episode
            raise EpisodeFileError(
                f"episode {episode.episode_id!r} in {self._data_path}: goal {episode.goals[0].position} is not "
                f"navigable from start {episode.start_position} on scene {episode.scene_id}; regenerate the episodes"
            )

    def step(self, action):
        observations = self.habitat_env.step(self._habitat_actions[int(action)])
        reward = self._reward()
        if self._auto_stop and self.habitat_env.task.is_episode_active and self._within_success_distance():
            observations = self.habitat_env.step(ACTION_NAMES.index("stop"))
            reward += self._reward()
        if self.render_mode:
            self._path.append(self.habitat_env.sim.get_agent_state().position)
        stopped = not self.habitat_env.task.is_episode_active
        info = self._info()
        terminated = stopped or (self._end_on_success and info["is_success"])
        truncated = self.habitat_env.episode_over and not terminated
        return self._observation(observations), reward, terminated, truncated, info

    def _within_success_distance(self) -> bool:
        return self.habitat_env.task.measurements.measures["distance_to_goal"].get_metric() < self._success_distance

    def _reward(self) -> float:
        """habitat-baselines' reward for the step just taken."""
        measures = self.habitat_env.task.measurements.measures
        reward = float(measures[self._reward_measure].get_metric()) + self._slack_reward
        if measures[self._success_measure].get_metric():
            reward += self._success_reward
        return reward

    def _info(self) -> dict[str, Any]:
        """habitat's metrics, dict-valued ones (collisions) copied: measures update them in place."""
        info = {key: dict(value) if isinstance(value, dict) else value for key, value in self.habitat_env.get_metrics().items()}
        info["is_success"] = bool(info[self._success_measure])
        return info

    def expert_action(self) -> int:
        """The shortest-path expert's action (in this env's action space) in the current state.

        In the paper's action set the expert never needs stop: the env stops by itself where the
        expert would.
        """
        action = self._expert.get_next_action([goal.position for goal in self.current_episode.goals])
        return self._habitat_actions.index(action)

    def render(self):
        """Top-down map: the scene, the path so far (blue), the agent (red) and the goal (green)."""
        if self.render_mode != "rgb_array":
            return None
        sim = self.habitat_env.sim
        state = sim.get_agent_state()
        return topdown_map(
            sim.scene, path=self._path, agent=(state.position, quaternion_to_heading(state.rotation)),
            goal=self.current_episode.goals[0].position,
        )

    def close(self):
        self.habitat_env.close()
