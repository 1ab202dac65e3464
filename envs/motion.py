"""Agent motion on a NavGrid: forward steps that collide with walls and slide along them.

The step is split into sub-steps of a quarter cell, each checked against the navigable mask, so
the agent can never tunnel through a wall however thin; when a sub-step is blocked the agent tries
its x and z components alone (sliding along axis-aligned walls, like habitat's allow_sliding) and
stops only when both are blocked.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from envs.navgrid import NavGrid


@njit(cache=True)
def _navigable_at(nav, ox, oz, cell, x, z):
    r = int(math.floor((z - oz) / cell))
    c = int(math.floor((x - ox) / cell))
    return 0 <= r < nav.shape[0] and 0 <= c < nav.shape[1] and nav[r, c]


@njit(cache=True)
def _slide(nav, ox, oz, cell, x, z, dx, dz):
    """Move (x, z) by (dx, dz) in sub-steps; returns new x, z and whether anything blocked it.

    x and z must be float32-representable values.
    """
    n = max(1, int(math.ceil(max(abs(dx), abs(dz)) / (0.25 * cell))))
    sx, sz = dx / n, dz / n
    collided = False
    for _ in range(n):
        # candidates rounded to float32 first, as positions are returned in float32
        nx, nz = float(np.float32(x + sx)), float(np.float32(z + sz))
        if _navigable_at(nav, ox, oz, cell, nx, nz):
            x, z = nx, nz
            continue
        collided = True
        if sx != 0.0 and _navigable_at(nav, ox, oz, cell, nx, z):
            x = nx
        elif sz != 0.0 and _navigable_at(nav, ox, oz, cell, x, nz):
            z = nz
        else:
            break
    return x, z, collided


def move_forward(grid: NavGrid, position, heading: float, distance: float = 0.25) -> tuple[np.ndarray, bool]:
    """Step `distance` metres along the agent's forward vector (-sin heading, 0, -cos heading).

    :param grid: navigable space.
    :param position: current [x, y, z].
    :param heading: radians about +y.
    :param distance: metres to move.
    :returns: new position (float32 [x, y, z]) and whether a collision shortened the step.
    """
    dx = -math.sin(heading) * distance
    dz = -math.cos(heading) * distance
    x, z, collided = _slide(
        grid.navigable, grid.origin[0], grid.origin[1], grid.cell_size,
        float(np.float32(position[0])), float(np.float32(position[2])), dx, dz
    )
    return np.array([x, position[1], z], dtype=np.float32), collided
