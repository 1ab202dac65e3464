"""habitat-lab Simulator backend over the grid scenes, so habitat's Nav task runs without habitat-sim.

Registered as ``ContinualSideSim-v0``. It reads the same simulator config as habitat-sim's
``Sim-v0`` (``forward_step_size``, ``turn_angle``, the agent's ``radius`` and the
``HabitatSimRGBSensor`` / ``HabitatSimDepthSensor`` entries of ``sim_sensors`` with their
width, height, hfov, camera height and depth range), so a config written for one runs on the
other: with habitat-sim installed, ``habitat.simulator.type: Sim-v0`` switches back (the
episodes must then name habitat-sim scenes).

Scene ids (``habitat.simulator.scene`` / an episode's ``scene_id``) are a path to a scene .npz
(envs.scene.Scene.save) or ``builtin:<name>`` for a scene shipped in envs/scenes/.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import quaternion
from gym import spaces

from continual_side.errors import ConfigError
from habitat.config.default import get_agent_config
from habitat.core.registry import registry
from habitat.core.simulator import (
    AgentState,
    DepthSensor,
    Observations,
    RGBSensor,
    SensorSuite,
    Simulator,
)
from habitat.sims.habitat_simulator.actions import HabitatSimActions

from envs.motion import move_forward
from envs.navgrid import NavGrid, field_cache_dir
from envs.render import RGBDRenderer
from envs.scene import Scene, load_builtin_scene

BUILTIN_PREFIX = "builtin:"
RGB_SENSOR_TYPE = "HabitatSimRGBSensor"
DEPTH_SENSOR_TYPE = "HabitatSimDepthSensor"


def load_scene(scene_id: str) -> Scene:
    """Scene named by a habitat scene id: ``builtin:<name>`` or a path to a scene .npz.

    habitat's PointNavDatasetV1 joins ``dataset.scenes_dir`` in front of episode scene ids, so the
    builtin prefix is looked for anywhere in the id.

    :param scene_id: the id.
    :raises envs.scene.SceneFileError: unknown builtin name or a missing/corrupt file.
    """
    _, prefix, name = str(scene_id).rpartition(BUILTIN_PREFIX)
    return load_builtin_scene(name) if prefix else Scene.load(scene_id)


def wrap_angle(angle: float) -> float:
    """The same angle in [-pi, pi), so heading quaternions keep w >= 0 (one sign per rotation)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def heading_to_quaternion(heading: float) -> quaternion.quaternion:
    """Rotation by `heading` radians about +y (habitat's yaw)."""
    return quaternion.quaternion(math.cos(heading / 2), 0.0, math.sin(heading / 2), 0.0)


def quaternion_to_heading(rotation: Any) -> float:
    """Yaw in radians of a numpy-quaternion or an [x, y, z, w] list (habitat's episode format).

    Any tilt is dropped: the heading is the direction the rotated forward vector points in the floor plane.
    """
    if not isinstance(rotation, quaternion.quaternion):
        x, y, z, w = (float(v) for v in rotation)
        if x == 0.0 and z == 0.0:  # a pure yaw, as every episode start is: no vector rotation needed
            return wrap_angle(2.0 * math.atan2(y, w))
        rotation = quaternion.quaternion(w, x, y, z)
    forward = quaternion.rotate_vectors(rotation, np.array([0.0, 0.0, -1.0]))
    return math.atan2(-forward[0], -forward[2])


class _SceneState:
    """A loaded scene, its navigable grid and renderers (one per camera), kept across episodes."""

    def __init__(self, scene: Scene, agent_radius: float, cache_dir: Path | None):
        self.scene = scene
        self.grid = NavGrid(scene, agent_radius=agent_radius, cache_dir=cache_dir)
        self.renderers: dict[tuple, RGBDRenderer] = {}
        self._island_radius: dict[int, float] = {}

    def renderer(self, camera: tuple) -> RGBDRenderer:
        if camera not in self.renderers:
            width, height, hfov, camera_height, max_depth = camera
            self.renderers[camera] = RGBDRenderer(
                self.scene, width=width, height=height, hfov_deg=hfov, camera_height=camera_height, max_depth=max_depth
            )
        return self.renderers[camera]

    def island_radius(self, point) -> float:
        """Largest distance of the point's connected navigable region's cells from their centroid."""
        label = int(self.grid.labels[self.grid._cell(point)]) if self.grid.is_navigable(point) else 0
        if label == 0:
            return 0.0
        if label not in self._island_radius:
            rows, cols = np.nonzero(self.grid.labels == label)
            xz = (np.stack([cols, rows], axis=1) + 0.5) * self.grid.cell_size
            self._island_radius[label] = float(np.max(np.linalg.norm(xz - xz.mean(axis=0), axis=1)))
        return self._island_radius[label]


class _CameraSensor:
    """Shared part of the RGB and depth sensors: camera settings from a habitat sensor config."""

    def __init__(self, sim: "ContinualSideSim", config, max_depth: float):
        self._sim = sim
        position, orientation = list(config.position), list(config.orientation)
        if position[0] != 0 or position[2] != 0 or any(orientation) or str(config.noise_model) != "None":
            raise ConfigError(
                f"sensor {config.type}: ContinualSideSim supports a camera at [0, height, 0] looking ahead "
                f"without noise, got position {position}, orientation {orientation}, noise {config.noise_model}"
            )
        self.camera = (int(config.width), int(config.height), float(config.hfov), float(position[1]), float(max_depth))
        super().__init__(config=config)


class GridRGBSensor(_CameraSensor, RGBSensor):
    """RGB camera: (height, width, 3) uint8, as habitat-sim's RGB sensor returns without alpha."""

    def _get_uuid(self, *args: Any, **kwargs: Any) -> str:
        return "rgb"

    def _get_observation_space(self, *args: Any, **kwargs: Any):
        width, height = self.camera[:2]
        return spaces.Box(low=0, high=255, shape=(height, width, 3), dtype=np.uint8)

    def get_observation(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self._sim.frame(self.camera)[0]


class GridDepthSensor(_CameraSensor, DepthSensor):
    """Depth camera: (height, width, 1) float32 metres clipped to [min_depth, max_depth], scaled
    to [0, 1] when normalize_depth is set, as habitat-sim's depth sensor does."""

    def __init__(self, sim: "ContinualSideSim", config, max_depth: float):
        self.min_depth, self.max_depth = float(config.min_depth), float(config.max_depth)
        self.normalize = bool(config.normalize_depth)
        if not 0 <= self.min_depth < self.max_depth:
            raise ConfigError(f"depth sensor needs 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        super().__init__(sim, config, max_depth)

    def _get_uuid(self, *args: Any, **kwargs: Any) -> str:
        return "depth"

    def _get_observation_space(self, *args: Any, **kwargs: Any):
        width, height = self.camera[:2]
        low, high = (0.0, 1.0) if self.normalize else (self.min_depth, self.max_depth)
        return spaces.Box(low=low, high=high, shape=(height, width, 1), dtype=np.float32)

    def get_observation(self, *args: Any, **kwargs: Any) -> np.ndarray:
        depth = self._sim.frame(self.camera)[1]
        # the renderer already clips to [0, its max_depth]: clip again only for a narrower range
        if self.min_depth > 0 or self.max_depth < self.camera[4]:
            depth = np.clip(depth, self.min_depth, self.max_depth)
        if self.normalize:
            return np.multiply(depth - self.min_depth if self.min_depth else depth, 1.0 / (self.max_depth - self.min_depth))
        return depth.copy()


@registry.register_simulator(name="ContinualSideSim-v0")
class ContinualSideSim(Simulator):
    """Grid-world stand-in for habitat-sim: discrete PointNav actions, RGB-D cameras, geodesics.

    :param config: habitat's simulator config (``habitat.simulator``).
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.habitat_config = config
        agent = get_agent_config(config)
        self._agent_radius = float(agent.radius)
        self._forward_step = float(config.forward_step_size)
        self._turn = math.radians(float(config.turn_angle))
        self._scenes: dict[str, _SceneState] = {}
        self._field_cache_dir = field_cache_dir()
        self._rng = np.random.default_rng(config.seed)
        self._position = np.zeros(3, dtype=np.float32)
        self._heading = 0.0
        self._collided = False
        self._observation_id = 0
        self._frames: dict[tuple, tuple[int, np.ndarray, np.ndarray]] = {}
        self._action_space = spaces.Discrete(len(HabitatSimActions))
        self._sensor_suite = SensorSuite(self._make_sensors(agent.sim_sensors))
        self.reconfigure(config)

    # --- configuration ---------------------------------------------------------------------------
    def _make_sensors(self, sensor_configs) -> list:
        configs = list(sensor_configs.values())
        unknown = [c.type for c in configs if c.type not in (RGB_SENSOR_TYPE, DEPTH_SENSOR_TYPE)]
        if unknown:
            raise ConfigError(
                f"ContinualSideSim has no sensor of type {unknown}: use {RGB_SENSOR_TYPE} and/or {DEPTH_SENSOR_TYPE}"
            )
        # a camera renders RGB and depth together: give an RGB sensor the depth range of the depth
        # sensor with the same geometry, so both read one rendered frame
        depth_range: dict[tuple, float] = {}
        for c in configs:
            if c.type == DEPTH_SENSOR_TYPE:
                geometry = (c.width, c.height, c.hfov, c.position[1])
                depth_range[geometry] = max(depth_range.get(geometry, 0.0), float(c.max_depth))
        sensors = []
        for c in configs:
            max_depth = depth_range.get((c.width, c.height, c.hfov, c.position[1]), 10.0)
            kind = GridRGBSensor if c.type == RGB_SENSOR_TYPE else GridDepthSensor
            sensors.append(kind(self, c, max_depth))
        return sensors

    def reconfigure(self, config, episode=None) -> None:
        """Switch to the episode's scene (scenes stay loaded) and take its start state.

        With an episode (``habitat.Env.reconfigure`` passes the current one) the scene id and start
        pose come from it, so the ContinualSideNav-v0 task need not write them into the config;
        without one, from the config (``habitat.simulator.scene`` and the agent's start state).
        Sensors, step size, turn angle and agent radius are read once, when the simulator is built:
        reading an OmegaConf config costs milliseconds.
        """
        self.habitat_config = config
        if episode is not None:
            key = str(episode.scene_id)
            has_start = episode.start_position is not None and episode.start_rotation is not None
            start = (episode.start_position, episode.start_rotation) if has_start else None
        else:
            key = str(config.scene)
            agent = get_agent_config(config)
            start = (agent.start_position, agent.start_rotation) if agent.is_set_start_state else None
        if key not in self._scenes:
            self._scenes[key] = _SceneState(load_scene(key), self._agent_radius, self._field_cache_dir)
        self._state = self._scenes[key]
        self._start = None
        if start is not None:
            self._start = ([float(v) for v in start[0]], [float(v) for v in start[1]])
            self.set_agent_state(*self._start)

    def set_field_cache_dir(self, folder: Path | None) -> None:
        """Keep geodesic distance fields on disk in `folder` (None: memory only), for every scene.

        :param folder: default envs.navgrid.field_cache_dir() ($CONTINUAL_SIDE_NAV_CACHE).
        """
        self._field_cache_dir = folder
        for state in self._scenes.values():
            state.grid.cache_dir = folder

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    # --- habitat Simulator API -----------------------------------------------------------------
    @property
    def sensor_suite(self) -> SensorSuite:
        return self._sensor_suite

    @property
    def action_space(self) -> spaces.Discrete:
        return self._action_space

    @property
    def scene(self) -> Scene:
        return self._state.scene

    @property
    def navgrid(self) -> NavGrid:
        return self._state.grid

    def reset(self) -> Observations:
        """Agent back to the config's start state (or a random navigable pose); first observations."""
        if self._start is not None:
            self.set_agent_state(*self._start)
        else:
            self.set_agent_state(self.sample_navigable_point(), heading_to_quaternion(self._rng.uniform(0, 2 * math.pi)))
        return self._observe()

    def step(self, action, *args, **kwargs) -> Observations:
        """Apply one of HabitatSimActions (stop or None leave the agent where it is)."""
        self._collided = False
        if action == HabitatSimActions.move_forward:
            self._position, self._collided = move_forward(
                self._state.grid, self._position, self._heading, self._forward_step
            )
        elif action == HabitatSimActions.turn_left:
            self._heading = wrap_angle(self._heading + self._turn)
        elif action == HabitatSimActions.turn_right:
            self._heading = wrap_angle(self._heading - self._turn)
        elif action is not None and action != HabitatSimActions.stop:
            raise ValueError(f"unknown action {action!r}: expected one of {list(HabitatSimActions)}")
        return self._observe()

    def step_physics(self, dt: float) -> None:
        """No physics here; habitat's EmbodiedTask.step calls it after every action."""

    def _observe(self) -> Observations:
        """Sensor readings in new arrays (callers keep observations), one render per camera."""
        self._observation_id += 1
        return self._sensor_suite.get_observations()

    def frame(self, camera: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, depth metres) seen by `camera` for the current observation; rendered once."""
        cached = self._frames.get(camera)
        if cached is None or cached[0] != self._observation_id:
            rgb, depth = self._state.renderer(camera).render(self._position, self._heading)
            cached = (self._observation_id, rgb, depth)
            self._frames[camera] = cached
        return cached[1], cached[2]

    @property
    def previous_step_collided(self) -> bool:
        return self._collided

    def get_agent_state(self, agent_id: int = 0) -> AgentState:
        return AgentState(position=self._position.copy(), rotation=heading_to_quaternion(self._heading))

    def set_agent_state(
        self, position: Sequence[float], rotation: Any, agent_id: int = 0, reset_sensors: bool = True
    ) -> bool:
        """Place the agent (no navigability check, as in habitat-sim).

        :param position: [x, y, z].
        :param rotation: numpy-quaternion or [x, y, z, w]; only its yaw is kept.
        """
        self._position = np.asarray(position, dtype=np.float32).reshape(3).copy()
        self._heading = wrap_angle(quaternion_to_heading(rotation))
        self._collided = False
        return True

    def get_observations_at(self, position=None, rotation=None, keep_agent_at_new_pose: bool = False):
        """Observations from another pose; the agent goes back unless keep_agent_at_new_pose."""
        saved = (self._position, self._heading)
        if position is not None:
            self.set_agent_state(position, rotation if rotation is not None else heading_to_quaternion(self._heading))
        observations = self._observe()
        if not keep_agent_at_new_pose:
            self._position, self._heading = saved
        return observations

    def geodesic_distance(self, position_a, position_b, episode=None) -> float:
        """Shortest navigable distance from a to b, or to the nearest of several points b (inf if none)."""
        targets = np.asarray(position_b, dtype=np.float64)
        grid = self._state.grid
        if targets.ndim == 1:
            return grid.geodesic_distance(position_a, targets)
        return min((grid.geodesic_distance(position_a, b) for b in targets), default=math.inf)

    def get_straight_shortest_path_points(self, position_a, position_b) -> list[list[float]]:
        return [p.tolist() for p in self._state.grid.shortest_path(position_a, position_b)]

    def is_navigable(self, point) -> bool:
        return self._state.grid.is_navigable(point)

    def sample_navigable_point(self) -> np.ndarray:
        return self._state.grid.sample_navigable_point(self._rng)

    def island_radius(self, point) -> float:
        """Size of the navigable region holding point (habitat's pointnav generator filters on it)."""
        return self._state.island_radius(point)

    @property
    def up_vector(self) -> np.ndarray:
        return np.array([0.0, 1.0, 0.0])

    @property
    def forward_vector(self) -> np.ndarray:
        return np.array([0.0, 0.0, -1.0])

    def render(self, mode: str = "rgb") -> np.ndarray:
        """The first RGB sensor's current view (habitat's Env.render)."""
        for sensor in self._sensor_suite.sensors.values():
            if isinstance(sensor, GridRGBSensor):
                return sensor.get_observation()
        raise ConfigError("render needs an RGB sensor in habitat.simulator.agents.main_agent.sim_sensors")
