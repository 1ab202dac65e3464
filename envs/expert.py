"""Shortest-path expert for PointNav on ContinualSideSim (habitat's ShortestPathFollower needs habitat-sim).

It follows the string-pulled geodesic path of envs.navgrid: turn towards the first path corner
until the heading is within half a turn step of it, then move forward; stop once the geodesic
distance to the goal is below the success radius.
"""

from __future__ import annotations

import math

import numpy as np
from habitat.core.simulator import ShortestPathPoint
from habitat.sims.habitat_simulator.actions import HabitatSimActions
from habitat.utils.geometry_utils import quaternion_to_list

from envs.simulator import ContinualSideSim, quaternion_to_heading

STOP, MOVE_FORWARD, TURN_LEFT, TURN_RIGHT = (
    HabitatSimActions.stop,
    HabitatSimActions.move_forward,
    HabitatSimActions.turn_left,
    HabitatSimActions.turn_right,
)
_MIN_WAYPOINT_M = 1e-3


class ShortestPathExpert:
    """Greedy follower of the geodesic shortest path (habitat's ShortestPathFollower API).

    :param sim: the simulator (``habitat.Env.sim``).
    :param goal_radius: stop when the geodesic distance to the goal is below this (metres).
    """

    def __init__(self, sim: ContinualSideSim, goal_radius: float = 0.2):
        self.sim = sim
        self.goal_radius = float(goal_radius)
        self._half_turn = math.radians(float(sim.habitat_config.turn_angle)) / 2

    def get_next_action(self, goal_position) -> int:
        """The next action (HabitatSimActions value == the Nav task's action index) towards a goal.

        :param goal_position: goal [x, y, z], or a list of goals (the geodesically nearest counts).
        """
        goals = np.asarray(goal_position, dtype=np.float64).reshape(-1, 3)
        state = self.sim.get_agent_state()
        grid = self.sim.navgrid
        distances = [grid.geodesic_distance(state.position, goal) for goal in goals]
        nearest = int(np.argmin(distances))
        if distances[nearest] < self.goal_radius or not math.isfinite(distances[nearest]):
            return STOP
        path = grid.shortest_path(state.position, goals[nearest])
        target = next(
            (p for p in path[1:] if math.hypot(p[0] - state.position[0], p[2] - state.position[2]) > _MIN_WAYPOINT_M),
            path[-1],
        )
        wanted = math.atan2(-(target[0] - state.position[0]), -(target[2] - state.position[2]))
        error = (wanted - quaternion_to_heading(state.rotation) + math.pi) % (2 * math.pi) - math.pi
        if abs(error) <= self._half_turn + 1e-6:
            return MOVE_FORWARD
        return TURN_LEFT if error > 0 else TURN_RIGHT


def expert_shortest_path(sim: ContinualSideSim, episode, max_steps: int = 500) -> list[ShortestPathPoint]:
    """The expert's actions from an episode's start, as habitat's ``shortest_paths`` entry (the
    pose before each action, stop excluded, like habitat's get_action_shortest_path).

    :param sim: simulator holding the episode's scene.
    :param episode: a NavigationEpisode.
    :param max_steps: give up after this many actions.
    """
    expert = ShortestPathExpert(sim, goal_radius=episode.goals[0].radius or 0.2)
    sim.set_agent_state(episode.start_position, episode.start_rotation)
    goals = [goal.position for goal in episode.goals]
    path = []
    for _ in range(max_steps):
        action = expert.get_next_action(goals)
        if action == STOP:
            break
        state = sim.get_agent_state()
        path.append(ShortestPathPoint(state.position.tolist(), quaternion_to_list(state.rotation), action))
        sim.step(action)
    return path
