"""Navigation agents: the NavEncoder extractor in SB3 policies, the frozen base, save/load, frame
stacking of imitation data, DAgger, a BC learning test, and nav train/eval through the CLI."""

from __future__ import annotations

import csv
import json
import math

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.policies import MultiInputActorCriticPolicy

import agents.train
from agents.cli import main
from agents.diagnostics import policy_entropy
from agents.evaluate import evaluate_episodes, split_episodes
from agents.extractors import (BASE_FEATURES_KEY, ENCODER_MODES, MAP_SIZE, EncoderConfig, NavEncoder, make_base,
                               nav_policy_kwargs)
from agents.imitation import CloningConfig, CloningData, Trajectories, clone, collect, greedy_actor
from agents.train import MODEL_FILE, curves_figure
from agents.vec_env import EnvConfig, make_agent_env, stack_frames
from continual_side.errors import ConfigError
from envs.gym_env import GOAL_KEY
from envs.navgrid import FIELD_CACHE_ENV

SIZE = 32
FRAMES = 4
SMALL = EnvConfig(width=SIZE, height=SIZE, max_episode_steps=60)


@pytest.fixture(autouse=True, scope="module")
def _field_cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FIELD_CACHE_ENV, str(tmp_path_factory.getbasetemp() / "geodesic"))  # shared by this session
        yield


def _space(channels_first: bool, precomputed: bool) -> gymnasium.spaces.Dict:
    def image(channels):
        shape = (channels, SIZE, SIZE) if channels_first else (SIZE, SIZE, channels)
        return gymnasium.spaces.Box(0, 255, shape, np.uint8)

    spaces = {"rgb": image(3 * FRAMES), "depth": image(FRAMES),
              GOAL_KEY: gymnasium.spaces.Box(-30, 30, (3 * FRAMES,), np.float32)}
    if precomputed:
        spaces[BASE_FEATURES_KEY] = gymnasium.spaces.Box(-np.inf, np.inf, (make_base(EncoderConfig().base, False).feature_dim * FRAMES, MAP_SIZE, MAP_SIZE), np.float32)
    return gymnasium.spaces.Dict(spaces)


def _observations(space: gymnasium.spaces.Dict, batch: int = 3) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    return {key: torch.as_tensor(rng.uniform(0, 1, (batch, *sub.shape)).astype(np.float32)) for key, sub in space.items()}


def _policy(space, mode, **encoder) -> MultiInputActorCriticPolicy:
    kwargs = nav_policy_kwargs(EncoderConfig(mode=mode, **encoder))
    return MultiInputActorCriticPolicy(space, gymnasium.spaces.Discrete(3), lambda _: 1e-4, **kwargs)


@pytest.mark.parametrize("mode", ENCODER_MODES)
def test_every_mode_builds_a_policy_and_reads_both_channel_layouts_alike(mode):
    precomputed = mode in ("features", "sidetune")
    chw, hwc = _space(True, precomputed), _space(False, precomputed)
    policy_chw, policy_hwc = _policy(chw, mode), _policy(hwc, mode)
    policy_hwc.load_state_dict(policy_chw.state_dict())
    observations = _observations(chw)
    channel_last = {key: value.permute(0, 2, 3, 1) if key in ("rgb", "depth") else value for key, value in observations.items()}
    extractor = policy_chw.features_extractor
    features = extractor(observations)
    assert features.shape == (3, extractor.features_dim)
    assert torch.equal(features, policy_hwc.features_extractor(channel_last))
    actions, values, _ = policy_chw(observations)
    assert actions.shape == (3,) and values.shape == (3, 1)


@pytest.mark.parametrize("mode", ["features", "sidetune"])
def test_frozen_modes_run_the_base_themselves_without_precomputed_features(mode):
    extractor = NavEncoder(_space(True, precomputed=False), mode=mode)
    assert extractor(_observations(_space(True, False))).shape == (3, extractor.features_dim)
    assert not any(p.requires_grad for p in extractor.base.parameters())


def test_blind_reads_only_the_goal():
    space = _space(True, False)
    extractor = NavEncoder(space, mode="blind")
    observations = _observations(space)
    other = {**observations, "rgb": torch.zeros_like(observations["rgb"]), "depth": torch.ones_like(observations["depth"])}
    assert torch.equal(extractor(observations), extractor(other))


def _base_state(module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def _pretrained_state() -> dict[str, torch.Tensor]:
    return _base_state(make_base(EncoderConfig().base, True))


@pytest.mark.parametrize("mode", ["finetune", "sidetune"])
def test_pretrained_weights_survive_policy_construction_and_ortho_init_would_wipe_them(mode):
    space = _space(True, precomputed=False)
    expected = _pretrained_state()
    extractor = _policy(space, mode).features_extractor
    base = extractor.visual if mode == "finetune" else extractor.base.network
    assert all(torch.equal(value, expected[key]) for key, value in base.state_dict().items())
    wiped = MultiInputActorCriticPolicy(space, gymnasium.spaces.Discrete(3), lambda _: 1e-4,
                                        **{**nav_policy_kwargs(EncoderConfig(mode=mode)), "ortho_init": True})
    wiped_base = wiped.features_extractor.visual if mode == "finetune" else wiped.features_extractor.base.network
    assert not torch.equal(wiped_base.state_dict()["network.conv1.weight"], expected["network.conv1.weight"])


def test_features_trains_no_base_parameter_and_finetune_all_of_them():
    space = _space(True, precomputed=False)
    features = _policy(space, "features").features_extractor
    finetune = _policy(space, "finetune").features_extractor
    sidetune = _policy(space, "sidetune").features_extractor
    assert sum(p.numel() for p in features.base.parameters() if p.requires_grad) == 0
    assert all(p.requires_grad for p in finetune.visual.parameters())
    base_size = sum(p.numel() for p in make_base(EncoderConfig().base, False).parameters())
    assert sum(p.numel() for p in finetune.visual.parameters()) == base_size > 100_000
    assert sum(p.numel() for p in sidetune.base.parameters() if p.requires_grad) == 0
    assert all(p.requires_grad for p in sidetune.side.parameters())


def test_frozen_base_is_bit_identical_after_ppo_is_built_and_after_learn():
    encoder = EncoderConfig(mode="sidetune")
    env = make_agent_env(EnvConfig(width=SIZE, height=SIZE, precompute_base=False), encoder, split="train", n_envs=2)
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=2, policy_kwargs=nav_policy_kwargs(encoder),
                seed=0)
    extractor = model.policy.features_extractor
    expected = _pretrained_state()
    assert all(torch.equal(value, expected[key]) for key, value in extractor.base.network.state_dict().items())
    side_before = _base_state(extractor.side)
    model.policy.set_training_mode(True)
    assert not extractor.base.network.training and not any(m.training for m in extractor.base.network.modules())
    model.learn(64)
    env.close()
    after = extractor.base.network.state_dict()
    assert any(key.endswith("running_mean") for key in after)  # BatchNorm buffers are compared too
    assert all(torch.equal(value, expected[key]) for key, value in after.items())
    assert any(not torch.equal(value, side_before[key]) for key, value in extractor.side.state_dict().items())


@pytest.mark.parametrize("mode", ["sidetune", "finetune"])
def test_save_and_load_give_identical_actions(tmp_path, mode):
    encoder = EncoderConfig(mode=mode)
    env = make_agent_env(SMALL, encoder, split="val", n_envs=2)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, policy_kwargs=nav_policy_kwargs(encoder),
                seed=0)
    model.learn(32)
    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip", env=env)
    for policy in (model.policy, loaded.policy):
        policy.set_training_mode(False)  # as predict does: BatchNorm on running statistics
    observations = env.reset()
    for _ in range(5):
        actions, _ = model.predict(observations, deterministic=True)
        obs_tensor, _ = model.policy.obs_to_tensor(observations)
        with torch.no_grad():
            expected = model.policy.get_distribution(obs_tensor).distribution.probs
            got = loaded.policy.get_distribution(obs_tensor).distribution.probs
        assert torch.equal(expected, got)
        assert np.array_equal(actions, loaded.predict(observations, deterministic=True)[0])
        observations = env.step(actions)[0]
    env.close()


def test_stored_frames_stack_into_exactly_the_agent_envs_observations():
    encoder = EncoderConfig(mode="sidetune")
    env = make_agent_env(SMALL, encoder, split="val")
    seen = []

    def learner(observation):  # acts as the expert, keeping what the agent env gave
        seen.append({key: value[0].copy() for key, value in observation.items()})
        return env.env_method("expert_action", indices=[0])[0]

    ids = [episode.episode_id for episode in split_episodes(env)[:2]]
    trajectories, _ = collect(env, ids, learner=learner, beta=0.0)
    env.close()
    data = CloningData(trajectories, SMALL, encoder)
    stacked = stack_frames(data.frames, trajectories.episode, np.arange(len(trajectories)), SMALL.frame_stack)
    assert len(seen) == len(trajectories) > 2 * SMALL.frame_stack
    assert set(stacked) == set(seen[0]) and BASE_FEATURES_KEY in stacked
    for index, observation in enumerate(seen):
        for key, value in observation.items():
            if key == BASE_FEATURES_KEY:  # the base ran on a batch of 1 in the env, on all frames here: float noise
                np.testing.assert_allclose(stacked[key][index], value, rtol=1e-4, atol=1e-5, err_msg=f"frame {index}")
            else:
                np.testing.assert_array_equal(stacked[key][index], value, err_msg=f"{key} of frame {index}")


def test_dagger_round_zero_is_the_expert_the_data_grows_the_best_val_round_is_saved_and_ppo_starts_from_it(
        tmp_path, capsys, monkeypatch):
    policies, epochs = [], []  # the policy after each round, and each round's epochs

    def clone_and_keep(model, data, config, rng, on_epoch=None):
        clone(model, data, config, rng, on_epoch)
        policies.append({key: value.clone() for key, value in model.policy.state_dict().items()})
        epochs.append(config.epochs)

    val_success = iter([0.2, 0.6, 0.6])  # round 1 is the best; round 2 ties it and loses (the earlier round wins)
    monkeypatch.setattr(agents.train, "clone", clone_and_keep)
    monkeypatch.setattr(agents.train, "evaluate_on_val",
                        lambda model, env, episodes: {"success": next(val_success), "spl": 0.5, "episodes": 1})
    main(["train", "--algo", "dagger", "--encoder", "features", "--width", str(SIZE), "--height", str(SIZE),
          "--max-episode-steps", "60", "--train-episodes", "3", "--dagger-rounds", "2", "--dagger-episodes", "2",
          "--bc-epochs", "2", "--dagger-epochs", "1", "--eval-episodes", "1", "--no-progress", "--out", str(tmp_path)])
    monkeypatch.undo()
    assert epochs == [2, 1, 1]
    run_dir = tmp_path / "nav" / "dagger-features" / "seed-0"
    saved = PPO.load(run_dir / MODEL_FILE).policy.state_dict()
    assert not all(torch.equal(value, policies[2][key]) for key, value in saved.items())  # the last round differs
    assert all(torch.equal(value, policies[1][key]) for key, value in saved.items())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["selected_round"] == 1 and summary["final_val"]["success"] == 0.6
    assert "(round 1)" in capsys.readouterr().out
    shards = sorted((run_dir / "data").glob("shard-*.npz"))
    assert [path.name.split("-")[1] for path in shards] == ["round00", "round01", "round02"]
    with np.load(shards[0]) as round_zero:
        assert len(round_zero["action"]) > 0 and np.array_equal(round_zero["action"], round_zero["expert_action"])
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    frames = [event["expert_frames"] for event in events if event["event"] == "eval"]
    assert len(frames) == 3 and frames[0] < frames[1] < frames[2]
    assert len(Trajectories.load(run_dir / "data")) == frames[-1]
    assert (run_dir / MODEL_FILE).is_file() and (run_dir / "summary.json").is_file()

    main(["eval", str(run_dir), "--split", "test", "--episodes", "2", "--maps", "2"])
    rows = list(csv.DictReader((run_dir / "eval-test" / "episodes.csv").open()))
    assert len(rows) == 2 and {"success", "spl", "distance_to_goal", "collisions"} <= set(rows[0])
    summary = json.loads((run_dir / "eval-test" / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["split"] == "test"
    assert (run_dir / "eval-test" / "paths.png").stat().st_size > 1000
    assert "test: 2 episodes" in capsys.readouterr().out

    ppo = ["train", "--algo", "ppo", "--width", str(SIZE), "--height", str(SIZE), "--max-episode-steps", "60",
           "--n-envs", "1", "--n-steps", "32", "--batch-size", "32", "--total-steps", "32", "--lr", "0",
           "--eval-episodes", "1", "--no-progress", "--no-tensorboard", "--init-from", str(run_dir), "--out", str(tmp_path)]
    main([*ppo, "--encoder", "features"])  # lr 0: the policy stays the cloned one
    cloned = PPO.load(run_dir / MODEL_FILE).policy.state_dict()
    tuned = PPO.load(tmp_path / "nav" / "ppo-features" / "seed-0" / MODEL_FILE).policy.state_dict()
    assert all(torch.equal(value, cloned[key]) for key, value in tuned.items())
    with pytest.raises(ConfigError, match="another encoder"):
        main([*ppo, "--encoder", "sidetune"])


def test_bc_reaches_80_percent_success_on_its_own_training_episodes():
    torch.manual_seed(0)
    encoder, env_config = EncoderConfig(mode="features"), EnvConfig(width=SIZE, height=SIZE, max_episode_steps=150)
    env = make_agent_env(env_config, encoder, split="train")
    episodes = [episode for episode in split_episodes(env) if episode.info["difficulty"] == "easy"][:6]
    trajectories, infos = collect(env, [episode.episode_id for episode in episodes])
    assert all(info["is_success"] for info in infos)
    model = PPO("MultiInputPolicy", env, policy_kwargs=nav_policy_kwargs(encoder), seed=0)
    untrained, _ = evaluate_episodes(env, greedy_actor(model), episodes)
    clone(model, CloningData(trajectories, env_config, encoder), CloningConfig(epochs=40, batch_size=32, lr=1e-3),
          np.random.default_rng(0))
    results, _ = evaluate_episodes(env, greedy_actor(model), episodes)
    env.close()
    before, after = np.mean([r.success for r in untrained]), np.mean([r.success for r in results])
    assert after >= 0.8 and after - before >= 0.3, (before, after)  # easy episodes: luck alone reaches some


def test_ppo_checkpoints_resumes_and_records_val_success_and_spl(tmp_path):
    argv = ["train", "--algo", "ppo", "--encoder", "blind", "--width", str(SIZE), "--height", str(SIZE),
            "--max-episode-steps", "30", "--n-envs", "1", "--n-steps", "32", "--batch-size", "32", "--n-epochs", "1",
            "--checkpoint-every", "32", "--eval-every", "32", "--eval-episodes", "1", "--no-progress", "--out", str(tmp_path)]
    main([*argv, "--total-steps", "64"])
    run_dir = tmp_path / "nav" / "ppo-blind" / "seed-0"
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["ppo_32_steps.zip", "ppo_64_steps.zip"]
    assert any((run_dir / "tb").rglob("events.out.tfevents.*"))
    main([*argv, "--total-steps", "96", "--resume"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["timesteps"] == 96
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [event["timesteps"] for event in evals if event["event"] == "eval"] == [32, 64, 96]
    assert all(0 <= event["spl"] <= event["success"] + 1e-9 <= 1 + 1e-9 for event in evals)
    assert PPO.load(run_dir / MODEL_FILE).num_timesteps == 96
    # SB3 logs an update's train/entropy_loss when the next rollout ends, so of the updates after steps 32, 64
    # (before the resume) and 96 only the first is logged, at step 64
    entropy = policy_entropy(run_dir)
    assert [step for step, _ in entropy] == [64]
    assert 0.9 * math.log(3) < entropy[0][1] <= math.log(3) + 1e-6  # one update: still near the uniform policy
    with pytest.raises(FileNotFoundError, match="no TensorBoard events"):
        policy_entropy(tmp_path)


def test_bench_trains_evaluates_tabulates_and_reuses_complete_runs(tmp_path, capsys):
    argv = ["bench", "--encoders", "blind", "--algos", "bc", "--seeds", "1", "--split", "val", "--episodes", "2",
            "--width", str(SIZE), "--height", str(SIZE), "--max-episode-steps", "40", "--train-episodes", "2",
            "--bc-epochs", "1", "--eval-episodes", "1", "--no-progress", "--out", str(tmp_path)]
    main(argv)
    folder = tmp_path / "nav" / "bench-val"
    table = (folder / "table.md").read_text()
    assert "| bc | blind |" in table and (folder / "success.png").is_file() and (folder / "spl.png").is_file()
    model = tmp_path / "nav" / "bc-blind" / "seed-0" / MODEL_FILE
    trained_at = model.stat().st_mtime_ns
    main(argv)
    assert model.stat().st_mtime_ns == trained_at  # the complete run is reused, only evaluated again
    runs = json.loads((folder / "results.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["success"] in (0.0, 0.5, 1.0)
    assert "comparison folder" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--base", "vit9000"], "unknown base"),
    (["train", "--algo", "bc", "--resume"], "--resume continues PPO runs"),
    (["train", "--width", "8"], "too small"),
    (["train", "--encoder", "sidetune", "--merge", "concat"], "unknown merge"),
])
def test_bad_options_are_config_errors(argv, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        main([*argv, "--out", str(tmp_path)])


def test_resume_without_a_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        main(["train", "--resume", "--out", str(tmp_path)])


def test_run_curves_star_the_dagger_round_kept_and_nothing_for_ppo():
    evals = [{"event": "eval", "round": r, "expert_frames": 10 * (r + 1), "success": s, "spl": s / 2}
             for r, s in enumerate([0.3, 0.7, 0.5])]
    (line,) = [line for line in curves_figure([*evals, {"event": "select", "round": 1}], "expert_frames", "t").axes[0].lines
               if line.get_label() == "round kept"]
    assert list(line.get_xdata()) == [20] and list(line.get_ydata()) == [0.7]
    ppo = [{"event": "eval", "timesteps": 100, "success": 0.1, "spl": 0.1}]
    assert [line.get_label() for line in curves_figure(ppo, "timesteps", "t").axes[0].lines] == ["success", "spl"]
