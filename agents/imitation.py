"""Imitation for PointNav: expert trajectories in shards, behaviour cloning and DAgger on SB3's policy.

The policy trained is SB3's own ``ActorCriticPolicy`` (``MultiInputPolicy`` with a NavEncoder) inside
a ``PPO`` object, so a cloned policy is saved, loaded, evaluated and fine-tuned by PPO (``--init-from``)
exactly like a PPO one. Why not the ``imitation`` package: version 1.0.1 pins stable-baselines3 ~= 2.2
and gymnasium ~= 0.29 (this suite uses SB3 2.x / gymnasium 1.x) and its DAgger rejects Dict
observation spaces.

Data: frames are stored one at a time (images channel-first uint8, the goal, the expert's action, the
action taken, the episode) in ``.npz`` shards; observations are stacked when a batch is drawn
(:func:`agents.vec_env.stack_frames`, identical to the agent env's). Frames do not depend on the
encoder, so one collection serves every encoder. For the frozen-base modes the base's features of
all frames are computed once when the data is loaded (the feature cache's idea), never per epoch.

BC follows the reference: cross-entropy on the expert's actions, Adam lr 2e-4, weight decay 3.8e-7,
batch 64. DAgger (not in the reference): round k acts with the expert with probability beta_k =
beta_decay ** k and with the learner otherwise, the expert labels every visited state, the data is
aggregated and the policy retrained on all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from agents.extractors import BASE_FEATURES_KEY, EncoderConfig, frozen_base_features, make_base
from agents.vec_env import EnvConfig, play_episode, raw_frame, stack_frames, uses_base_features
from continual_side.atomic import atomic_open
from continual_side.errors import ConfigError
from continual_side.models import FrozenBase

FRAME_KEYS = ("rgb", "depth", "pointgoal_with_gps_compass")
SHARD_GLOB = "shard-*.npz"


@dataclass
class Trajectories:
    """Frames of played episodes, in play order.

    :param frames: per observation key, (T, ...) single frames (images channel-first).
    :param expert_action: (T,) the expert's action in each frame's state.
    :param action: (T,) the action taken (the expert's or the learner's).
    :param episode: (T,) a number per played episode, unique within the data set.
    :param episode_id: (T,) the split's episode id.
    """

    frames: dict[str, np.ndarray]
    expert_action: np.ndarray
    action: np.ndarray
    episode: np.ndarray
    episode_id: np.ndarray

    def __len__(self) -> int:
        return len(self.expert_action)

    @property
    def episodes(self) -> int:
        """Played episodes."""
        return len(np.unique(self.episode))

    @classmethod
    def concatenate(cls, parts: list[Trajectories]) -> Trajectories:
        """Parts in order, their episode numbers made unique."""
        episodes, offset = [], 0
        for part in parts:
            episodes.append(part.episode + offset)
            offset += int(part.episode.max()) + 1 if len(part) else 0
        return cls(
            frames={key: np.concatenate([part.frames[key] for part in parts]) for key in parts[0].frames},
            expert_action=np.concatenate([part.expert_action for part in parts]),
            action=np.concatenate([part.action for part in parts]),
            episode=np.concatenate(episodes),
            episode_id=np.concatenate([part.episode_id for part in parts]),
        )

    def save(self, path: Path) -> None:
        """One shard, written atomically."""
        with atomic_open(path) as handle:
            np.savez(handle, expert_action=self.expert_action, action=self.action, episode=self.episode,
                     episode_id=self.episode_id, **{f"frame.{key}": value for key, value in self.frames.items()})

    @classmethod
    def load(cls, folder: Path) -> Trajectories:
        """Every shard in a folder, in name order.

        :raises ConfigError: no shard there.
        """
        paths = sorted(Path(folder).glob(SHARD_GLOB))
        if not paths:
            raise ConfigError(f"no expert data in {folder} (no {SHARD_GLOB} files): collect it first")
        parts = []
        for path in paths:
            with np.load(path) as shard:
                parts.append(cls(frames={key: shard[f"frame.{key}"] for key in FRAME_KEYS},
                                 expert_action=shard["expert_action"], action=shard["action"],
                                 episode=shard["episode"], episode_id=shard["episode_id"]))
        return cls.concatenate(parts)


def collect(vec_env: VecEnv, episode_ids: list[str], *, learner: Callable[[dict], int] | None = None,
            beta: float = 1.0, rng: np.random.Generator | None = None) -> tuple[Trajectories, list[dict]]:
    """Play episodes, acting with the expert (probability beta) or the learner; the expert labels all.

    :param vec_env: a single-env agent env (:func:`agents.vec_env.make_agent_env`, ``n_envs=1``).
    :param episode_ids: episodes to play, once each, in this order.
    :param learner: stacked observation -> action; None plays the expert only.
    :param beta: probability of the expert's action at each step (1: expert only).
    :param rng: draws the expert/learner choice.
    :returns: the frames and each episode's final info.
    """
    if learner is None and beta < 1:
        raise ConfigError("beta below 1 needs a learner to act")
    rng = rng or np.random.default_rng(0)
    frames: dict[str, list] = {key: [] for key in FRAME_KEYS}
    expert_actions, actions, episodes, ids, final_infos = [], [], [], [], []

    for number, episode_id in enumerate(episode_ids):
        def act(observation: dict) -> int:
            expert = int(vec_env.env_method("expert_action", indices=[0])[0])
            for key, value in raw_frame(vec_env).items():
                frames[key].append(value)
            expert_actions.append(expert)
            episodes.append(number)
            ids.append(str(episode_id))
            return expert if learner is None or rng.random() < beta else int(learner(observation))

        info, _ = play_episode(vec_env, episode_id, act, on_step=actions.append)
        final_infos.append(info)
    trajectories = Trajectories(
        frames={key: np.stack(values) for key, values in frames.items()},
        expert_action=np.array(expert_actions, dtype=np.int64), action=np.array(actions, dtype=np.int64),
        episode=np.array(episodes, dtype=np.int64), episode_id=np.array(ids),
    )
    return trajectories, final_infos


def write_shards(trajectories: Trajectories, folder: Path, episodes_per_shard: int, prefix: str = "shard") -> list[Path]:
    """Split trajectories into shards of whole episodes, ``<prefix>-00000.npz``, ...; the name must
    still match ``shard-*.npz`` to be loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    boundaries = np.flatnonzero(np.diff(trajectories.episode)) + 1
    starts = np.concatenate([[0], boundaries])[::episodes_per_shard]
    ends = np.concatenate([starts[1:], [len(trajectories)]])
    paths = []
    for number, (start, end) in enumerate(zip(starts, ends)):
        part = Trajectories({key: value[start:end] for key, value in trajectories.frames.items()},
                            trajectories.expert_action[start:end], trajectories.action[start:end],
                            trajectories.episode[start:end], trajectories.episode_id[start:end])
        path = folder / f"{prefix}-{number:05d}.npz"
        part.save(path)
        paths.append(path)
    return paths


class CloningData:
    """Stacked observations and expert actions for the policy, drawn in batches.

    :param trajectories: the frames.
    :param env_config: frame stack (and whether base features are precomputed).
    :param encoder: the policy's encoder; frozen-base modes get the base's features of every frame once.
    """

    def __init__(self, trajectories: Trajectories, env_config: EnvConfig, encoder: EncoderConfig):
        self.frames = dict(trajectories.frames)
        if uses_base_features(env_config, encoder):
            base = FrozenBase(make_base(encoder.base, encoder.base_weights or True))
            self.frames[BASE_FEATURES_KEY] = frozen_base_features(base, self.frames["rgb"].transpose(0, 2, 3, 1))
        self.episode = trajectories.episode
        self.expert_action = trajectories.expert_action
        self.n_stack = env_config.frame_stack

    def __len__(self) -> int:
        return len(self.expert_action)

    def batch(self, indices: np.ndarray, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Stacked observations (as the agent env gives them) and expert actions of some frames."""
        observations = stack_frames(self.frames, self.episode, indices, self.n_stack)
        tensors = {key: torch.as_tensor(value, device=device) for key, value in observations.items()}
        return tensors, torch.as_tensor(self.expert_action[indices], device=device)


@dataclass
class CloningConfig:
    """Behaviour cloning's optimisation (the reference's settings).

    :param epochs: passes over the data.
    :param batch_size: frames per step (the reference: 64; 16 for fine-tuning and scratch).
    :param lr: Adam learning rate.
    :param weight_decay: Adam weight decay.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 3.8e-7


def clone(model: PPO, data: CloningData, config: CloningConfig, rng: np.random.Generator,
          on_epoch: Callable[[int, float, float], None] | None = None) -> None:
    """Train ``model.policy`` to imitate the expert: minimise -log pi(expert action | observation).

    :param model: a PPO model whose policy is trained (its own optimizer is left alone).
    :param data: the cloning data.
    :param config: epochs, batch size, Adam settings.
    :param rng: shuffles the frames.
    :param on_epoch: called with (epoch, mean loss, frame accuracy) after each epoch.
    """
    policy = model.policy
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=config.lr,
                                 weight_decay=config.weight_decay)
    for epoch in range(config.epochs):
        policy.set_training_mode(True)
        order = rng.permutation(len(data))
        losses, correct = [], 0
        for start in range(0, len(order), config.batch_size):
            observations, actions = data.batch(order[start:start + config.batch_size], policy.device)
            distribution = policy.get_distribution(observations)
            loss = -distribution.log_prob(actions).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(actions))
            correct += int((distribution.distribution.probs.argmax(dim=1) == actions).sum())
        policy.set_training_mode(False)
        if on_epoch is not None:
            on_epoch(epoch, sum(losses) / len(data), correct / len(data))


def greedy_actor(model: PPO) -> Callable[[dict], int]:
    """Stacked observation (batch of 1) -> the policy's most likely action."""
    return lambda observation: int(model.predict(observation, deterministic=True)[0][0])
