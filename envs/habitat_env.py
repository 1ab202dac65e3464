"""habitat-lab PointNav environments on ContinualSideSim: config composition and ``habitat.Env``.

The config is habitat-lab's own PointNav benchmark (``benchmark/nav/pointnav/pointnav_base``:
Nav-v0 task (as ContinualSideNav-v0, see envs/task.py), stop / move_forward 0.25 m / turn_left / turn_right 10 degrees, the
PointGoalWithGPSCompass sensor, DistanceToGoal, Success (0.2 m), SPL and DistanceToGoalReward)
plus the Collisions measure, composed from envs/configs/pointnav.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from continual_side.errors import ConfigError
import habitat
from habitat.config import read_write

import envs.simulator  # noqa: F401  (registers ContinualSideSim-v0)
from envs.render import WALL_HEIGHT_M
import envs.task  # noqa: F401  (registers ContinualSideNav-v0)

CONFIG_PATH = Path(__file__).resolve().parent / "configs" / "pointnav.yaml"
DEFAULT_DATA_PATH = str(Path(__file__).resolve().parent / "data" / "pointnav" / "v1" / "{split}" / "{split}.json.gz")


def make_habitat_config(
    *,
    data_path: str | None = DEFAULT_DATA_PATH,
    split: str = "train",
    scene: str | None = None,
    width: int = 128,
    height: int = 128,
    hfov: int = 90,
    camera_height: float = 1.25,
    max_episode_steps: int = 500,
    seed: int = 0,
    overrides: Sequence[str] = (),
):
    """Compose the PointNav config for ContinualSideSim.

    :param data_path: PointNav-v1 episodes, ``{split}`` replaced by `split`; None for no dataset
        (then `scene` must be set and episodes are given to ``habitat.Env`` by hand).
    :param split: dataset split.
    :param scene: scene id for a config without dataset (``builtin:<name>`` or a .npz path).
    :param width: RGB and depth width in pixels.
    :param height: RGB and depth height in pixels.
    :param hfov: horizontal field of view in degrees.
    :param camera_height: camera height above the floor in metres.
    :param max_episode_steps: episode step limit (0: none).
    :param seed: habitat seed (episode order, simulator sampling).
    :param overrides: extra hydra overrides, e.g. ``["habitat.simulator.type=Sim-v0"]``.
    :raises ConfigError: a value out of range.
    """
    if width < 1 or height < 1 or not 0 < hfov < 180 or max_episode_steps < 0:
        raise ConfigError(
            f"need width, height >= 1, 0 < hfov < 180 and max_episode_steps >= 0, got {width}x{height}, "
            f"hfov {hfov}, max_episode_steps {max_episode_steps}"
        )
    if not 0 < camera_height < WALL_HEIGHT_M:
        raise ConfigError(
            f"camera_height {camera_height} m must lie between the floor (0) and the ceiling ({WALL_HEIGHT_M} m)"
        )
    if data_path is None and scene is None:
        raise ConfigError("without a dataset (data_path=None) pass scene='builtin:<name>' or a scene .npz path")
    config = habitat.get_config(str(CONFIG_PATH), overrides=list(overrides))
    with read_write(config):
        hab = config.habitat
        hab.seed = seed
        hab.environment.max_episode_steps = max_episode_steps
        for sensor in hab.simulator.agents.main_agent.sim_sensors.values():
            sensor.width, sensor.height, sensor.hfov = width, height, hfov
            sensor.position = [0.0, float(camera_height), 0.0]
        if scene is not None:
            hab.simulator.scene = scene
        if data_path is None:
            hab.dataset.type = ""
        else:
            hab.dataset.data_path = str(data_path)
            hab.dataset.split = split
    return config


def make_habitat_env(config=None, **config_kwargs) -> habitat.Env:
    """``habitat.Env`` with the Nav task on ContinualSideSim.

    :param config: a composed habitat config; built by make_habitat_config(**config_kwargs) if None.
    :raises envs.datasets.EpisodeFileError: the episode file is missing or corrupt.
    """
    from envs.datasets import load_dataset

    if config is None:
        config = make_habitat_config(**config_kwargs)
    dataset = load_dataset(config.habitat.dataset) if config.habitat.dataset.type else None
    return habitat.Env(config, dataset=dataset)
