"""Speed of the agents per encoder mode, in one run so the ratios share the machine's load.

- PPO: environment steps per second of ``PPO.learn`` (after one untimed rollout and update), split
  into rollout time (env steps + policy forward, + the frozen base for precomputed modes) and update
  time (SB3's ``train``).
- BC: seconds to prepare the data (the frozen base's features of every frame, once) and seconds per
  epoch (the mean of the epochs after the first).

Run: ``python -m agents.perf --size 64 --out runs/nav-perf/agents.json`` (not yet a ``nav perf --agents``
flag: ``nav perf`` belongs to the envs package's CLI).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from stable_baselines3 import PPO

from agents.evaluate import split_episodes, spread
from agents.extractors import ENCODER_MODES, EncoderConfig, nav_policy_kwargs
from agents.imitation import CloningConfig, CloningData, clone, collect
from agents.vec_env import EnvConfig, make_agent_env
from continual_side.atomic import atomic_write_text


@dataclass
class AgentPerfConfig:
    """PPO steps/s and BC epoch time for every encoder mode.

    :param modes: encoder modes to time.
    :param base: the registered base of the encoders.
    :param size: square image size.
    :param n_envs: PPO's envs (DummyVecEnv).
    :param n_steps: PPO rollout steps per env.
    :param batch_size: PPO and BC mini-batch size.
    :param n_epochs: PPO epochs per rollout.
    :param rollouts: timed PPO rollouts (+ updates) per mode.
    :param bc_episodes: expert episodes for the BC timing.
    :param bc_epochs: BC epochs per mode (the first is not counted).
    :param out: JSON file the results go into.
    """

    modes: tuple[str, ...] = ENCODER_MODES
    base: str = "midlevel"
    size: int = 64
    n_envs: int = 2
    n_steps: int = 128
    batch_size: int = 64
    n_epochs: int = 4
    rollouts: int = 2
    bc_episodes: int = 10
    bc_epochs: int = 3
    out: Path = Path("runs/nav-perf/agents.json")


def time_ppo(config: AgentPerfConfig, mode: str) -> dict:
    """PPO steps/s and the rollout / update split for one mode."""
    encoder, env_config = EncoderConfig(mode=mode, base=config.base), EnvConfig(width=config.size, height=config.size)
    env = make_agent_env(env_config, encoder, split="train", n_envs=config.n_envs)
    model = PPO("MultiInputPolicy", env, n_steps=config.n_steps, batch_size=config.batch_size,
                n_epochs=config.n_epochs, policy_kwargs=nav_policy_kwargs(encoder), seed=0)
    rollout = config.n_steps * config.n_envs
    model.learn(rollout)  # warm-up: first resets, lazy initialisation
    update_seconds = []
    train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        update_seconds.append(time.perf_counter() - start)

    model.train = timed_train
    start = time.perf_counter()
    model.learn(rollout * config.rollouts, reset_num_timesteps=False)
    total = time.perf_counter() - start
    env.close()
    return {"steps_per_s": rollout * config.rollouts / total, "update_share": sum(update_seconds) / total}


def time_bc(config: AgentPerfConfig, mode: str, trajectories) -> dict:
    """BC data preparation and epoch seconds for one mode."""
    encoder, env_config = EncoderConfig(mode=mode, base=config.base), EnvConfig(width=config.size, height=config.size)
    env = make_agent_env(env_config, encoder, split="train")
    model = PPO("MultiInputPolicy", env, policy_kwargs=nav_policy_kwargs(encoder), seed=0)
    start = time.perf_counter()
    data = CloningData(trajectories, env_config, encoder)
    prepare = time.perf_counter() - start
    stamps = [time.perf_counter()]
    clone(model, data, CloningConfig(epochs=config.bc_epochs, batch_size=config.batch_size), np.random.default_rng(0),
          on_epoch=lambda *_: stamps.append(time.perf_counter()))
    env.close()
    epochs = np.diff(stamps)
    return {"prepare_s": prepare, "first_epoch_s": float(epochs[0]), "epoch_s": float(epochs[1:].mean()),
            "frames": len(data)}


def run_agent_perf(config: AgentPerfConfig) -> dict:
    """Time every mode; write and return ``{mode: {ppo: ..., bc: ...}}`` plus the ratios the issue asks for."""
    torch.set_num_threads(1)
    env = make_agent_env(EnvConfig(width=config.size, height=config.size), EncoderConfig(mode="blind"), split="train")
    ids = [episode.episode_id for episode in spread(split_episodes(env), config.bc_episodes)]
    trajectories, _ = collect(env, ids)
    env.close()
    results = {mode: {"ppo": time_ppo(config, mode), "bc": time_bc(config, mode, trajectories)} for mode in config.modes}
    if {"finetune", "features", "sidetune"} <= set(results):
        finetune = results["finetune"]
        results["ratios"] = {
            f"{mode}_over_finetune": {
                "ppo_steps_per_s": results[mode]["ppo"]["steps_per_s"] / finetune["ppo"]["steps_per_s"],
                "bc_epoch_s": results[mode]["bc"]["epoch_s"] / finetune["bc"]["epoch_s"],
            } for mode in ("features", "sidetune")
        }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config.out, json.dumps({"config": {**vars(config), "out": str(config.out)}, "results": results},
                                             indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(run_agent_perf(tyro.cli(AgentPerfConfig)), indent=2))
