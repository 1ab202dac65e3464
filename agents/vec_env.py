"""The agents' view of the PointNav env: one vectorised pipeline for PPO, imitation and evaluation.

``make_agent_env`` builds, bottom to top: ``gymnasium.make("continual_side/PointNav-v0", actions="paper",
goal_format="cos_sin_distance")`` per env, ``Monitor``, :class:`EpisodeRecorder`; ``DummyVecEnv`` or
``SubprocVecEnv``; :class:`~agents.extractors.VecBaseFeatures` for the frozen-base modes (unless
``precompute_base`` is off); ``VecFrameStack`` (4 frames, zeros before an episode's first frame);
``VecTransposeImage`` (images channel-first). Imitation data is stored one frame at a time and
stacked by :func:`stack_frames`, which gives exactly what ``VecFrameStack`` + ``VecTransposeImage``
give (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import gymnasium
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecTransposeImage

import envs
from agents.extractors import BASE_FEATURES_KEY, FROZEN_BASE_MODES, EncoderConfig, VecBaseFeatures
from continual_side.errors import ConfigError

TOPDOWN_KEY = "topdown_map"


@dataclass
class EnvConfig:
    """The env as the agents see it.

    :param width: image width (the paper: 256; 64 keeps CPU training feasible).
    :param height: image height.
    :param frame_stack: frames stacked per observation (the paper: 4).
    :param max_episode_steps: gymnasium's TimeLimit (habitat's default 500).
    :param precompute_base: frozen-base modes get the base's features from the env wrapper
        (computed once per env step) instead of running the base inside the policy.
    """

    width: int = 64
    height: int = 64
    frame_stack: int = 4
    max_episode_steps: int = 500
    precompute_base: bool = True

    def __post_init__(self):
        for name in ("width", "height", "frame_stack", "max_episode_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if min(self.width, self.height) < 16:
            raise ConfigError(f"images of {self.width}x{self.height} are too small for the encoders: use at least 16x16")


class EpisodeRecorder(gymnasium.Wrapper):
    """Keeps the last raw observation (``last_observation``, what imitation stores) and, with
    ``render_mode="rgb_array"``, puts the episode's final top-down map in the last step's info."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.last_observation: dict[str, np.ndarray] | None = None

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self.last_observation = observation
        return observation, info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.last_observation = observation
        if (terminated or truncated) and self.env.render_mode == "rgb_array":
            info[TOPDOWN_KEY] = self.env.render()
        return observation, reward, terminated, truncated, info


def _make_one(env_config: EnvConfig, split: str, seed: int, render: bool) -> gymnasium.Env:
    env = gymnasium.make(
        envs.GYM_ID, split=split, width=env_config.width, height=env_config.height, actions="paper",
        goal_format="cos_sin_distance", seed=seed, max_episode_steps=env_config.max_episode_steps,
        render_mode="rgb_array" if render else None,
    )
    return Monitor(EpisodeRecorder(env))


def uses_base_features(env_config: EnvConfig, encoder: EncoderConfig) -> bool:
    """Whether the agent env adds ``base_features`` for this encoder."""
    return env_config.precompute_base and encoder.mode in FROZEN_BASE_MODES


def make_agent_env(env_config: EnvConfig, encoder: EncoderConfig, *, split: str, n_envs: int = 1, seed: int = 0,
                   subprocess: bool = False, render: bool = False) -> VecEnv:
    """The vectorised env a NavEncoder policy acts in (see the module docstring).

    :param env_config: resolution, frame stack, step limit.
    :param encoder: the policy's encoder (decides whether base features are added).
    :param split: train, val or test.
    :param n_envs: parallel envs; env i plays the split's episodes in the order of seed + i.
    :param seed: seed of the episode orders.
    :param subprocess: SubprocVecEnv (one process per env) instead of DummyVecEnv.
    :param render: record the top-down map of each finished episode in its last info.
    """
    if n_envs < 1:
        raise ConfigError(f"n_envs must be at least 1, got {n_envs}")
    factories = [partial(_make_one, env_config, split, seed + index, render) for index in range(n_envs)]
    vec_env = SubprocVecEnv(factories) if subprocess else DummyVecEnv(factories)
    if uses_base_features(env_config, encoder):
        vec_env = VecBaseFeatures(vec_env, encoder.base, encoder.base_weights)
    orders = {key: "first" if key == BASE_FEATURES_KEY else "last" for key in vec_env.observation_space.spaces}
    return VecTransposeImage(VecFrameStack(vec_env, env_config.frame_stack, channels_order=orders))


def raw_frame(vec_env: VecEnv) -> dict[str, np.ndarray]:
    """The first env's current single-frame observation (before stacking), images channel-first."""
    observation = vec_env.get_attr("last_observation", indices=[0])[0]
    return {key: value.transpose(2, 0, 1) if value.ndim == 3 else value for key, value in observation.items()}


def play_episode(vec_env: VecEnv, episode_id: str, act: Callable[[dict[str, np.ndarray]], int],
                 on_step: Callable[[int], None] | None = None) -> tuple[dict[str, Any], int]:
    """Play one episode, chosen by id, in the first env of a single-env agent env.

    :param vec_env: from :func:`make_agent_env` with ``n_envs=1``.
    :param episode_id: habitat's episode id within the split.
    :param act: stacked observation (batch of 1) -> action.
    :param on_step: called with the chosen action before each step (the state is still the one acted in).
    :returns: the last step's info (habitat's metrics, is_success) and the number of steps.
    """
    if vec_env.num_envs != 1:
        raise ConfigError(f"episodes are played one at a time in a single env, got {vec_env.num_envs} envs")
    vec_env.set_options({"episode_id": episode_id})
    observation = vec_env.reset()
    steps = 0
    while True:
        action = int(act(observation))
        if on_step is not None:
            on_step(action)
        observation, _, dones, infos = vec_env.step(np.array([action]))
        steps += 1
        if dones[0]:
            return infos[0], steps


def stack_frames(frames: dict[str, np.ndarray], episode_index: np.ndarray, indices: np.ndarray,
                 n_stack: int) -> dict[str, np.ndarray]:
    """Stacked observations of some frames, as the agent env gives them.

    :param frames: per key, (T, ...) single frames (images channel-first), in play order.
    :param episode_index: (T,) the episode each frame belongs to.
    :param indices: the frames whose stacked observation is wanted.
    :param n_stack: frames per observation; frames before the episode's first are zeros.
    :returns: per key, (len(indices), n_stack * channels, ...) with the oldest frame first.
    """
    lagged = indices[:, None] - np.arange(n_stack - 1, -1, -1)[None, :]  # (N, n_stack), oldest first
    source = np.clip(lagged, 0, None)
    valid = (lagged >= 0) & (episode_index[source] == episode_index[indices][:, None])
    stacked = {}
    for key, array in frames.items():
        parts = array[source]  # (N, n_stack, C, ...)
        parts = parts * valid.reshape(valid.shape + (1,) * (parts.ndim - 2)).astype(parts.dtype)
        stacked[key] = parts.reshape(len(indices), -1, *array.shape[2:]) if array.ndim > 2 else parts.reshape(len(indices), -1)
    return stacked

