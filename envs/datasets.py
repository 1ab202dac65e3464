"""PointNav episode datasets in habitat-lab's PointNav-v1 format, generated over grid scenes.

Episodes are drawn by habitat-lab's own ``generate_pointnav_episode`` (same-floor check,
geodesic distance limits, aggressive rejection of near-straight episodes with
geodesic/euclidean ratio < 1.1, island radius >= 1.5 m) running on ContinualSideSim, then binned
into easy/medium/hard by geodesic distance and written per split as
``<root>/{split}/{split}.json.gz`` with habitat's own serializer, so habitat's
``PointNavDatasetV1`` loads them unchanged.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from continual_side.errors import ConfigError, ContinualSideError
from continual_side.atomic import atomic_write_bytes
from habitat.config import read_write
from habitat.datasets.pointnav.pointnav_dataset import PointNavDatasetV1
from habitat.datasets.pointnav.pointnav_generator import generate_pointnav_episode
from habitat.tasks.nav.nav import NavigationEpisode

SUCCESS_DISTANCE = 0.2
# Geodesic-distance bins (metres, [low, high)). habitat's generator has none: ours, sized for
# apartments of about 10 x 8 m; the lowest and highest edges are the generator's distance limits.
DIFFICULTY_BINS: dict[str, tuple[float, float]] = {"easy": (1.0, 3.0), "medium": (3.0, 5.0), "hard": (5.0, 30.0)}


class EpisodeFileError(ContinualSideError):
    """An episode file is missing, not gzip'd JSON, or not in habitat's PointNav-v1 format."""


def difficulty(geodesic_distance: float) -> str:
    """The DIFFICULTY_BINS name holding a geodesic distance.

    :raises ValueError: outside every bin.
    """
    for name, (low, high) in DIFFICULTY_BINS.items():
        if low <= geodesic_distance < high:
            return name
    raise ValueError(f"geodesic distance {geodesic_distance} is outside every bin {DIFFICULTY_BINS}")


def load_dataset(dataset_config) -> PointNavDatasetV1:
    """habitat's PointNavDatasetV1 for a ``habitat.dataset`` config, with clear errors.

    :param dataset_config: ``config.habitat.dataset`` (data_path, split, scenes_dir, content_scenes).
    :raises EpisodeFileError: the file is missing, corrupt, or holds no valid episode.
    """
    path = dataset_config.data_path.format(split=dataset_config.split)
    if not os.path.isfile(path):
        raise EpisodeFileError(
            f"episode file {path} does not exist: check habitat.dataset.data_path/split or write one with "
            "envs.datasets.write_pointnav_dataset"
        )
    try:
        dataset = PointNavDatasetV1(dataset_config)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EpisodeFileError(
            f"episode file {path} is not a PointNav-v1 json.gz ({type(exc).__name__}: {exc}): regenerate it"
        ) from exc
    problem = _invalid_episode(dataset.episodes)
    if problem:
        raise EpisodeFileError(f"episode file {path}: {problem}; regenerate it")
    return dataset


def _invalid_episode(episodes: list[NavigationEpisode]) -> str | None:
    """What is wrong with the first bad episode, or None when all are usable."""
    if not episodes:
        return "no episodes (after the content_scenes filter)"
    for episode in episodes:
        start_ok = np.shape(episode.start_position) == (3,) and np.shape(episode.start_rotation) == (4,)
        goals_ok = bool(episode.goals) and all(np.shape(goal.position) == (3,) for goal in episode.goals)
        values = [*np.ravel(episode.start_position), *np.ravel(episode.start_rotation)] if start_ok else []
        if not (start_ok and goals_ok and np.all(np.isfinite(np.asarray(values, dtype=float)))):
            return (
                f"episode {episode.episode_id!r} needs a finite start_position [x, y, z], start_rotation "
                "[x, y, z, w] and at least one goal with a position [x, y, z]"
            )
    return None


@dataclass
class EpisodeGenConfig:
    """Episode drawing: count per scene, balanced over DIFFICULTY_BINS, and habitat's generator
    thresholds (its defaults, with the distance limits spanning the bins).

    :param episodes_per_scene: episodes per scene, split evenly over the difficulties.
    :param geodesic_to_euclid_min_ratio: below this ratio habitat rejects most episodes.
    :param number_retries_per_target: start points tried per goal.
    :param max_samples_per_episode: navigable-point samples allowed per wanted episode before giving up.
    :param success_distance: goal radius written into the episodes.
    :param shortest_paths: also store the shortest-path expert's actions (habitat's shortest_paths).
    :param seed: random seed; each split and scene derives its own from it.
    """

    episodes_per_scene: int = 30
    geodesic_to_euclid_min_ratio: float = 1.1
    number_retries_per_target: int = 10
    max_samples_per_episode: int = 2000
    success_distance: float = SUCCESS_DISTANCE
    shortest_paths: bool = False
    seed: int = 0


class _SampleBudget:
    """The simulator, with sample_navigable_point counted: habitat's generator loops until it
    finds an episode, which on a scene without any would be forever."""

    def __init__(self, sim, budget: int):
        self._sim, self.left = sim, budget

    def __getattr__(self, name):
        return getattr(self._sim, name)

    def sample_navigable_point(self):
        self.left -= 1
        if self.left < 0:
            raise _BudgetExhausted
        return self._sim.sample_navigable_point()


class _BudgetExhausted(Exception):
    pass


def _quotas(total: int) -> dict[str, int]:
    names = list(DIFFICULTY_BINS)
    return {name: total // len(names) + (i < total % len(names)) for i, name in enumerate(names)}


def generate_episodes(scene_id: str, cfg: EpisodeGenConfig, seed: int) -> list[NavigationEpisode]:
    """Episodes on one scene from habitat's generator, balanced over the difficulty bins.

    :param scene_id: ``builtin:<name>`` or a scene .npz path.
    :param cfg: generation settings.
    :param seed: random seed (habitat's generator draws from numpy's global generator, which is
        restored afterwards).
    :raises ConfigError: the scene cannot supply the wanted episodes.
    """
    from envs.habitat_env import make_habitat_config
    from envs.simulator import ContinualSideSim

    config = make_habitat_config(data_path=None, scene=scene_id, seed=seed)
    with read_write(config):
        config.habitat.simulator.agents.main_agent.sim_sensors = {}
    sim = ContinualSideSim(config.habitat.simulator)
    sim.set_field_cache_dir(None)  # most candidate goals are rejected: keep their fields off the disk
    budget = _SampleBudget(sim, cfg.max_samples_per_episode * max(cfg.episodes_per_scene, 1))
    quotas, episodes = _quotas(cfg.episodes_per_scene), []
    counts = dict.fromkeys(quotas, 0)
    saved_state = np.random.get_state()
    np.random.seed(seed)
    try:
        candidates = generate_pointnav_episode(
            budget,
            num_episodes=-1,
            is_gen_shortest_path=False,
            shortest_path_success_distance=cfg.success_distance,
            closest_dist_limit=min(low for low, _ in DIFFICULTY_BINS.values()),
            furthest_dist_limit=max(high for _, high in DIFFICULTY_BINS.values()),
            geodesic_to_euclid_min_ratio=cfg.geodesic_to_euclid_min_ratio,
            number_retries_per_target=cfg.number_retries_per_target,
        )
        for episode in candidates:
            name = difficulty(episode.info["geodesic_distance"])
            if counts[name] < quotas[name]:
                counts[name] += 1
                episodes.append(_tidy(episode, name, cfg.success_distance))
            if counts == quotas:
                break
    except _BudgetExhausted:
        raise ConfigError(
            f"scene {scene_id} gave only {counts} of the wanted {quotas} episodes (difficulty bins "
            f"{DIFFICULTY_BINS}): use a larger scene or fewer episodes_per_scene"
        ) from None
    finally:
        np.random.set_state(saved_state)
    if cfg.shortest_paths:
        from envs.expert import expert_shortest_path

        for episode in episodes:
            episode.shortest_paths = [expert_shortest_path(sim, episode)]
    return episodes


def _tidy(episode: NavigationEpisode, name: str, radius: float) -> NavigationEpisode:
    """Plain-float lists (habitat's JSON form) and the difficulty in info."""
    episode.start_position = [float(v) for v in episode.start_position]
    episode.start_rotation = [float(v) for v in episode.start_rotation]
    for goal in episode.goals:
        goal.position = [float(v) for v in goal.position]
        goal.radius = radius
    episode.info = {"geodesic_distance": float(episode.info["geodesic_distance"]), "difficulty": name}
    return episode


def write_pointnav_dataset(
    root, scenes: dict[str, list[str]], cfg: EpisodeGenConfig = EpisodeGenConfig()
) -> dict[str, Path]:
    """Generate episodes and write ``<root>/{split}/{split}.json.gz`` per split.

    :param root: output directory (a habitat ``data_path`` is then ``<root>/{split}/{split}.json.gz``).
    :param scenes: scene ids per split, e.g. ``{"train": ["builtin:apartment_0"], "val": [...]}``.
    :param cfg: generation settings.
    :returns: the written file per split.
    """
    written = {}
    for split_index, (split, scene_ids) in enumerate(scenes.items()):
        episodes = []
        for scene_index, scene_id in enumerate(scene_ids):
            seed = cfg.seed * 1_000_003 + split_index * 1_009 + scene_index
            episodes.extend(generate_episodes(scene_id, cfg, seed))
        for index, episode in enumerate(episodes):
            episode.episode_id = str(index)
        written[split] = write_episodes(Path(root) / split / f"{split}.json.gz", episodes)
    return written


def write_episodes(path, episodes: list[NavigationEpisode]) -> Path:
    """Write episodes as a PointNav-v1 json.gz with habitat's own serializer, atomically.

    :param path: destination file.
    :param episodes: the episodes.
    """
    dataset = PointNavDatasetV1()
    dataset.episodes = list(episodes)
    payload = gzip.compress(dataset.to_json().encode("utf-8"), mtime=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, payload)
    return path


# The shipped dataset (envs/data/pointnav/v1): disjoint scenes per split, val and test unseen in training.
DEFAULT_SPLIT_SCENES = {
    "train": [f"builtin:apartment_{seed}" for seed in range(16)],
    "val": [f"builtin:apartment_{seed}" for seed in range(16, 20)],
    "test": [f"builtin:apartment_{seed}" for seed in range(20, 24)],
}
DEFAULT_EPISODES_PER_SCENE = {"train": 126, "val": 30, "test": 30}


def write_default_dataset(root) -> dict[str, Path]:
    """Regenerate the shipped dataset (DEFAULT_SPLIT_SCENES, DEFAULT_EPISODES_PER_SCENE, seed 0).

    :param root: output directory, e.g. envs/data/pointnav/v1.
    """
    written = {}
    for split_index, (split, scene_ids) in enumerate(DEFAULT_SPLIT_SCENES.items()):
        cfg = EpisodeGenConfig(episodes_per_scene=DEFAULT_EPISODES_PER_SCENE[split], seed=split_index)
        written.update(write_pointnav_dataset(root, {split: scene_ids}, cfg))
    return written


if __name__ == "__main__":
    import sys

    print(write_default_dataset(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data/pointnav/v1"))
