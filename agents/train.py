"""``continual-side nav train``: PPO, behaviour cloning or DAgger for one encoder and one seed.

Run folder ``<out>/nav/<algo>-<encoder>/seed-<n>/``: config.json, metrics.jsonl (``eval`` events on
val episodes: success, SPL, distance to goal, collisions, steps; BC/DAgger also ``train_epoch``
events), model.zip (loadable with ``PPO.load``), summary.json (the final val evaluation, written last),
curves.png, and for PPO checkpoints/ (every ``--checkpoint-every`` steps, ``--resume`` continues from
the newest) and tb/ (TensorBoard). Imitation data goes to data/ (shards, see :mod:`agents.imitation`).

PPO defaults follow the side-tuning reference where SB3 allows: lr 1e-4, clip 0.1, entropy 1e-4,
gamma 0.99, GAE 0.95, value-loss coefficient 1e-3, max grad norm 0.5, 4 stacked frames. They differ
in: rollouts of 128 steps x 2 envs, mini-batches of 64 and 4 epochs (the reference: 512 x 6, 24
mini-batches, 8 epochs; pass ``--n-steps 512 --n-envs 6 --batch-size 128 --n-epochs 8``), no recurrent
state, 64x64 images (the reference: 256x256), and no replay buffer (the reference adds one, 1024
steps, with off-policy epochs; SB3's PPO has none).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from tqdm import tqdm

from agents.evaluate import evaluate_episodes, split_episodes, spread
from agents.extractors import EncoderConfig, EncoderMode, nav_policy_kwargs
from agents.imitation import CloningConfig, CloningData, Trajectories, clone, collect, greedy_actor, write_shards
from agents.vec_env import EnvConfig, make_agent_env
from continual_side.atomic import atomic_write_text
from continual_side.errors import ConfigError
from continual_side.results import (CONFIG_FILE, SUMMARY_FILE, RunWriter, differing_settings, jsonable, read_events,
                                    run_folder, save_figure)
from envs.evaluation import summarize

Algo = Literal["ppo", "bc", "dagger"]

MODEL_FILE = "model.zip"
CURVES_PNG = "curves.png"
CHECKPOINT_DIR = "checkpoints"
DATA_DIR = "data"
_CHECKPOINT = re.compile(r"ppo_(\d+)_steps\.zip")
# options that do not change what a run learns: a resumed run may differ in them
NOT_SETTINGS = ("total_steps", "resume", "overwrite", "progress", "tensorboard", "device", "subprocess")


def progress_key(algo: Algo) -> str:
    """The eval events' measure of training progress: environment steps for PPO, expert frames for imitation."""
    return "timesteps" if algo == "ppo" else "expert_frames"


@dataclass
class NavTrainConfig:
    """Train a PointNav agent (PPO, BC or DAgger) with one visual encoder; writes <out>/nav/<algo>-<encoder>/seed-<n>/.

    :param algo: ppo, bc (behaviour cloning) or dagger.
    :param encoder: blind, scratch, features (frozen base), finetune or sidetune.
    :param base: registered base encoder: midlevel (the mid-level encoder pre-trained on curvature, as the paper's agents), resnet20 or resnet44.
    :param base_weights: the base's weights file; default: the base's pre-trained weights.
    :param side_init: sidetune's side network: distilled, random or base_copy.
    :param merge: sidetune's merge operator.
    :param use_depth: read the depth image besides RGB.
    :param hidden_size: width of the fused visual feature.
    :param width: image width.
    :param height: image height.
    :param frame_stack: frames per observation.
    :param max_episode_steps: step limit per episode.
    :param precompute_base: frozen-base modes: the env wrapper runs the base once per step.
    :param seed: seed of initialisation, episode order and imitation sampling.
    :param total_steps: PPO environment steps.
    :param n_envs: PPO's parallel envs.
    :param subprocess: PPO's envs in subprocesses (SubprocVecEnv) instead of DummyVecEnv.
    :param n_steps: PPO rollout steps per env.
    :param batch_size: PPO mini-batch size.
    :param n_epochs: PPO epochs per rollout.
    :param lr: PPO learning rate.
    :param clip_range: PPO clip range.
    :param ent_coef: PPO entropy coefficient.
    :param vf_coef: PPO value-loss coefficient.
    :param gamma: discount.
    :param gae_lambda: GAE lambda.
    :param max_grad_norm: gradient clipping.
    :param init_from: PPO starts from the policy of this run folder (e.g. a BC run).
    :param checkpoint_every: PPO checkpoint interval in environment steps.
    :param train_episodes: imitation: expert episodes from the train split (evenly spaced over its scenes).
    :param episodes_per_shard: imitation: episodes per data shard.
    :param expert_data: imitation: a folder of shards to train on instead of collecting.
    :param bc_epochs: BC epochs (DAgger: per round).
    :param bc_batch_size: BC batch size (the reference: 64; 16 for finetune and scratch).
    :param bc_lr: BC Adam learning rate.
    :param bc_weight_decay: BC Adam weight decay.
    :param dagger_rounds: DAgger rounds after round 0 (the expert's own episodes).
    :param dagger_episodes: DAgger episodes played per round after round 0.
    :param dagger_beta_decay: DAgger acts with the expert with probability decay ** round.
    :param dagger_epochs: DAgger epochs per round after round 0, on all data, continuing from the round before
        (None: bc_epochs). 5 keeps a DAgger run within about twice BC's time; 20 did not do consistently better on val.
    :param eval_every: PPO environment steps between val evaluations.
    :param eval_episodes: val episodes per evaluation (evenly spaced over the val scenes).
    :param out: root folder of the run folders.
    :param device: torch device.
    :param progress: show a progress bar.
    :param tensorboard: log to TensorBoard in <run>/tb.
    :param overwrite: replace an earlier run in the same folder.
    :param resume: PPO: continue from the newest checkpoint in the run folder.
    """

    algo: Algo = "ppo"
    encoder: EncoderMode = "sidetune"
    base: str = "midlevel"
    base_weights: str | None = None
    side_init: str = "distilled"
    merge: str = "alpha"
    use_depth: bool = True
    hidden_size: int = 256
    width: int = 64
    height: int = 64
    frame_stack: int = 4
    max_episode_steps: int = 500
    precompute_base: bool = True
    seed: int = 0
    total_steps: int = 100_000
    n_envs: int = 2
    subprocess: bool = False
    n_steps: int = 128
    batch_size: int = 64
    n_epochs: int = 4
    lr: float = 1e-4
    clip_range: float = 0.1
    ent_coef: float = 1e-4
    vf_coef: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5
    init_from: str | None = None
    checkpoint_every: int = 10_000
    train_episodes: int = 100
    episodes_per_shard: int = 50
    expert_data: str | None = None
    bc_epochs: int = 20
    bc_batch_size: int = 64
    bc_lr: float = 2e-4
    bc_weight_decay: float = 3.8e-7
    dagger_rounds: int = 4
    dagger_episodes: int = 25
    dagger_beta_decay: float = 0.5
    dagger_epochs: int | None = 5
    eval_every: int = 10_000
    eval_episodes: int = 20
    out: str = "runs"
    device: str = "cpu"
    progress: bool = True
    tensorboard: bool = True
    overwrite: bool = False
    resume: bool = False

    def __post_init__(self):
        for name in ("total_steps", "n_envs", "n_steps", "batch_size", "n_epochs", "checkpoint_every", "train_episodes",
                     "episodes_per_shard", "bc_epochs", "bc_batch_size", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.dagger_epochs is not None and self.dagger_epochs < 1:
            raise ConfigError(f"dagger_epochs must be at least 1, got {self.dagger_epochs}")
        if self.dagger_rounds < 0 or not 0 <= self.dagger_beta_decay <= 1:
            raise ConfigError("dagger_rounds must be >= 0 and dagger_beta_decay within [0, 1]")
        if self.resume and self.algo != "ppo":
            raise ConfigError("--resume continues PPO runs; BC and DAgger runs are short: rerun with --overwrite")
        self.encoder_config()
        self.env_config()

    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig(mode=self.encoder, base=self.base, base_weights=self.base_weights, side_init=self.side_init,
                             merge=self.merge, use_depth=self.use_depth, hidden_size=self.hidden_size)

    def env_config(self) -> EnvConfig:
        return EnvConfig(width=self.width, height=self.height, frame_stack=self.frame_stack,
                         max_episode_steps=self.max_episode_steps, precompute_base=self.precompute_base)

    @property
    def method(self) -> str:
        """The run folder's method name, ``<algo>-<encoder>``."""
        return f"{self.algo}-{self.encoder}"


def run_settings(config: NavTrainConfig) -> dict[str, Any]:
    """The options that change what a run learns (all but :data:`NOT_SETTINGS`): a run folder is resumed or
    reused only with the same ones."""
    return {key: value for key, value in asdict(config).items() if key not in NOT_SETTINGS}


def read_run_config(run_dir: Path) -> NavTrainConfig:
    """The NavTrainConfig a run folder was trained with.

    :raises ConfigError: not a navigation run folder.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a navigation run folder (no {CONFIG_FILE}): point at runs/nav/<algo>-<encoder>/seed-<n>")
    return NavTrainConfig(**json.loads(path.read_text(encoding="utf-8"))["config"])


def load_model(run_dir: Path, env=None, device: str = "cpu") -> PPO:
    """A run folder's model.zip (PPO format, also for BC and DAgger).

    :raises ConfigError: the run has no model yet.
    """
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {MODEL_FILE}: the run has not finished (PPO: --resume it)")
    return PPO.load(path, env=env, device=device)


def trainable_parameters(model: PPO) -> int:
    return sum(p.numel() for p in model.policy.parameters() if p.requires_grad)


class ValEvaluation(BaseCallback):
    """Evaluates the policy on fixed val episodes every ``every`` environment steps; records success
    and SPL in metrics.jsonl (``eval`` events) and TensorBoard (``eval/*``)."""

    def __init__(self, eval_env, episodes: list, every: int, writer: RunWriter):
        super().__init__()
        self.eval_env, self.episodes, self.every, self.writer = eval_env, episodes, every, writer
        self.next_eval = every

    def _on_training_start(self) -> None:
        self.next_eval = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.every
            record = evaluate_on_val(self.model, self.eval_env, self.episodes)
            self.writer.log("eval", timesteps=self.num_timesteps, **record)
            for key in ("success", "spl", "distance_to_goal"):
                self.logger.record(f"eval/{key}", record[key])
        return True


class ProgressBar(BaseCallback):
    """A tqdm bar over environment steps (SB3's own needs ``rich``, not installed here)."""

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.locals["total_timesteps"], initial=self.model.num_timesteps, unit="step",
                        desc="PPO", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def evaluate_on_val(model: PPO, eval_env, episodes: list) -> dict:
    """Means over the episodes (success, spl, distance_to_goal, collisions, steps, episodes)."""
    was_training = model.policy.training
    results, _ = evaluate_episodes(eval_env, greedy_actor(model), episodes)
    model.policy.set_training_mode(was_training)
    return summarize(results)


def curves_figure(events: list[dict], x_key: str, title: str) -> Figure:
    """Val success and SPL over training (x: environment steps or expert frames); DAgger's kept round starred."""
    figure = Figure(figsize=(6, 3.5))
    axis = figure.add_subplot()
    evals = [event for event in events if event["event"] == "eval"]
    x = [event[x_key] for event in evals]
    for key in ("success", "spl"):
        axis.plot(x, [event[key] for event in evals], marker="o", label=key)
    kept_rounds = {event["round"] for event in events if event["event"] == "select"}
    kept = [event for event in evals if event.get("round") in kept_rounds]
    if kept:
        axis.plot([kept[0][x_key]], [kept[0]["success"]], marker="*", markersize=14, linestyle="none",
                  label="round kept")
    axis.set_xlabel(x_key.replace("_", " "))
    axis.set_ylim(0, 1)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest PPO checkpoint in the run folder and its step count; None when there is none."""
    found = [(path, int(match.group(1))) for path in (run_dir / CHECKPOINT_DIR).glob("ppo_*_steps.zip")
             if (match := _CHECKPOINT.fullmatch(path.name))]
    return max(found, key=lambda item: item[1]) if found else None


def _open_run(config: NavTrainConfig) -> tuple[RunWriter, tuple[Path, int] | None]:
    """The run writer, and the checkpoint to resume from (None for a new run)."""
    if not config.resume:
        return RunWriter(config.out, "nav", config.method, config.seed, overwrite=config.overwrite), None
    path = run_folder(config.out, "nav", config.method, config.seed)
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise ConfigError(f"nothing to resume in {path}: no {CHECKPOINT_DIR}/ppo_<steps>_steps.zip (start without --resume)")
    changed = differing_settings(run_settings(read_run_config(path)), run_settings(config))
    if changed:
        raise ConfigError(f"--resume with settings that differ from {path / CONFIG_FILE}: {', '.join(changed)}")
    kept = sum(1 for event in read_events(path) if event.get("timesteps", 0) <= checkpoint[1])
    return RunWriter(config.out, "nav", config.method, config.seed, keep_events=kept), checkpoint


def _initial_policy(config: NavTrainConfig):
    """The policy of the ``--init-from`` run, checked to have this run's encoder and observations."""
    source = read_run_config(Path(config.init_from))
    if (source.encoder_config(), source.env_config()) != (config.encoder_config(), config.env_config()):
        raise ConfigError(f"--init-from {config.init_from} was trained with another encoder or env settings "
                          f"({source.encoder_config()}, {source.env_config()}): use the same ones")
    return load_model(Path(config.init_from), device=config.device).policy


def train_ppo(config: NavTrainConfig, writer: RunWriter, checkpoint: tuple[Path, int] | None) -> PPO:
    """SB3 PPO on the train split, evaluated on val episodes as it goes."""
    encoder, env_config = config.encoder_config(), config.env_config()
    train_env = make_agent_env(env_config, encoder, split="train", n_envs=config.n_envs, seed=config.seed,
                               subprocess=config.subprocess)
    eval_env = make_agent_env(env_config, encoder, split="val", seed=config.seed)
    tensorboard_log = str(writer.path / "tb") if config.tensorboard else None
    if checkpoint is not None:
        model = PPO.load(checkpoint[0], env=train_env, device=config.device, tensorboard_log=tensorboard_log)
    else:
        model = PPO(
            "MultiInputPolicy", train_env, learning_rate=config.lr, n_steps=config.n_steps,
            batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma, gae_lambda=config.gae_lambda,
            clip_range=config.clip_range, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
            max_grad_norm=config.max_grad_norm, policy_kwargs=nav_policy_kwargs(encoder),
            tensorboard_log=tensorboard_log, seed=config.seed, device=config.device,
        )
        if config.init_from:
            model.policy.load_state_dict(_initial_policy(config).state_dict())
    callbacks = [
        CheckpointCallback(save_freq=max(config.checkpoint_every // config.n_envs, 1),
                           save_path=str(writer.path / CHECKPOINT_DIR), name_prefix="ppo"),
        ValEvaluation(eval_env, spread(split_episodes(eval_env), config.eval_episodes), config.eval_every, writer),
    ]
    if config.progress:
        callbacks.append(ProgressBar())
    model.learn(config.total_steps - model.num_timesteps, callback=callbacks, tb_log_name="ppo",
                reset_num_timesteps=checkpoint is None)
    train_env.close()
    eval_env.close()
    return model


def _imitation_model(config: NavTrainConfig, env) -> PPO:
    """A PPO object holding the policy imitation trains (so it saves and loads as PPO)."""
    return PPO("MultiInputPolicy", env, policy_kwargs=nav_policy_kwargs(config.encoder_config()), seed=config.seed,
               device=config.device, n_steps=config.n_steps, batch_size=config.batch_size, learning_rate=config.lr)


def _cloning_config(config: NavTrainConfig, round_index: int = 0) -> CloningConfig:
    epochs = config.bc_epochs if round_index == 0 or config.dagger_epochs is None else config.dagger_epochs
    return CloningConfig(epochs=epochs, batch_size=config.bc_batch_size, lr=config.bc_lr,
                         weight_decay=config.bc_weight_decay)


def train_imitation(config: NavTrainConfig, writer: RunWriter) -> PPO:
    """BC on expert episodes of the train split, then (DAgger) rounds of learner episodes relabelled
    by the expert; the policy is evaluated on val episodes after each round.

    DAgger returns the round's policy with the best val success (then SPL; the earlier round on ties), as
    Ross et al. 2011 (Algorithm 3.1: "return best policy on validation"); the next round's learner is
    always the newest policy. The choice is logged as a ``select`` event.
    """
    encoder, env_config = config.encoder_config(), config.env_config()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    train_env = make_agent_env(env_config, encoder, split="train", seed=config.seed)
    eval_env = make_agent_env(env_config, encoder, split="val", seed=config.seed)
    val_episodes = spread(split_episodes(eval_env), config.eval_episodes)
    model = _imitation_model(config, train_env)
    data_dir = writer.path / DATA_DIR
    if config.expert_data:
        parts = [Trajectories.load(Path(config.expert_data))]
    else:
        expert_ids = [e.episode_id for e in spread(split_episodes(train_env), config.train_episodes)]
        parts = [collect(train_env, expert_ids)[0]]
        write_shards(parts[0], data_dir, config.episodes_per_shard, prefix="shard-round00")
    rounds = config.dagger_rounds if config.algo == "dagger" else 0
    all_ids = [e.episode_id for e in split_episodes(train_env)]
    best: tuple[tuple[float, float], int, dict] | None = None
    for round_index in range(rounds + 1):
        if round_index > 0:
            beta = config.dagger_beta_decay ** round_index
            ids = [all_ids[int(i)] for i in rng.choice(len(all_ids), config.dagger_episodes, replace=False)]
            new, _ = collect(train_env, ids, learner=greedy_actor(model), beta=beta, rng=rng)
            write_shards(new, data_dir, config.episodes_per_shard, prefix=f"shard-round{round_index:02d}")
            parts.append(new)
        trajectories = Trajectories.concatenate(parts)
        data = CloningData(trajectories, env_config, encoder)
        clone(model, data, _cloning_config(config, round_index), rng,
              on_epoch=lambda epoch, loss, accuracy: writer.log("train_epoch", round=round_index, epoch=epoch, loss=loss,
                                                                 accuracy=accuracy))
        scores = evaluate_on_val(model, eval_env, val_episodes)
        writer.log("eval", round=round_index, expert_frames=len(data), episodes_played=trajectories.episodes, **scores)
        if best is None or (scores["success"], scores["spl"]) > best[0]:
            best = ((scores["success"], scores["spl"]), round_index,
                    {key: value.detach().clone() for key, value in model.policy.state_dict().items()})
    model.policy.load_state_dict(best[2])
    writer.log("select", round=best[1], success=best[0][0], spl=best[0][1])
    train_env.close()
    eval_env.close()
    return model


def train(config: NavTrainConfig) -> dict:
    """Train one agent and write its run folder; returns the summary (written last): ``final_val`` holds the val
    scores of the saved policy (imitation: of the selected round, ``selected_round``)."""
    writer, checkpoint = _open_run(config)
    if checkpoint is None:
        writer.write_config(config)
    start = time.perf_counter()
    model = train_ppo(config, writer, checkpoint) if config.algo == "ppo" else train_imitation(config, writer)
    model.save(writer.path / MODEL_FILE)
    events = read_events(writer.path)
    evals = [event for event in events if event["event"] == "eval"]
    selected = next((event["round"] for event in events if event["event"] == "select"), None)
    saved_evals = [event for event in evals if selected is None or event["round"] == selected]  # the saved policy's
    if evals:
        save_figure(curves_figure(events, progress_key(config.algo), f"nav / {config.method} / seed {config.seed} (val)"),
                    writer.path / CURVES_PNG)
    summary = {"algo": config.algo, "encoder": config.encoder, "seed": config.seed, "wall_time_s": time.perf_counter() - start,
               "trainable_parameters": trainable_parameters(model), "timesteps": int(model.num_timesteps),
               "final_val": saved_evals[-1] if saved_evals else None, "selected_round": selected}
    atomic_write_text(writer.path / SUMMARY_FILE, json.dumps(jsonable(summary), indent=2) + "\n")
    return summary
