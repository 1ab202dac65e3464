"""Navigable space of a scene and geodesic (shortest navigable path) distances.

Distances come from an any-angle Dijkstra over the grid (Theta*, run to exhaustion from the goal):
each cell keeps a parent it can see in a straight navigable line, so distances are Euclidean in
open space instead of the 8-connected overestimate, and the parent chain is an already
string-pulled path. Fields are cached per goal cell because habitat's DistanceToGoal measure asks
for the geodesic distance on every step: in memory (least recently used first out) and, since
episodes are a finite set whose goals come back, on disk (one compressed file of parent indices
per goal, written atomically, about 2.5 kB for a 10 m x 8 m apartment), so a goal's field is
computed once per machine instead of once per process (about 11 ms against 0.5 ms to read back).
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numba import njit

from continual_side.atomic import atomic_open
from continual_side.errors import ConfigError
from envs.scene import FREE, Scene

# the shipped train split has 126 goals per scene: keep them all (128 kB each, 16 MB per scene)
FIELD_CACHE_SIZE = 128
FIELD_CACHE_ENV = "CONTINUAL_SIDE_NAV_CACHE"
DEFAULT_FIELD_CACHE_DIR = Path("~/.cache/continual_side/geodesic")
# part of every cached file's key: bump when the field algorithm changes
FIELD_FORMAT_VERSION = 1
_SQRT2 = math.sqrt(2.0)


@njit(cache=True)
def _navigable_mask(occupancy, radius_cells):
    """Free cells whose centre is farther than radius_cells (in cells) from every obstacle square.

    Cells outside the grid count as obstacles.
    """
    rows, cols = occupancy.shape
    reach = int(math.ceil(radius_cells + 0.5))
    nav = np.zeros((rows, cols), dtype=np.bool_)
    for r in range(rows):
        for c in range(cols):
            if occupancy[r, c] != FREE:
                continue
            ok = True
            for dr in range(-reach, reach + 1):
                gap_r = max(abs(dr) - 0.5, 0.0)
                for dc in range(-reach, reach + 1):
                    gap_c = max(abs(dc) - 0.5, 0.0)
                    if gap_r * gap_r + gap_c * gap_c > radius_cells * radius_cells:
                        continue
                    rr, cc = r + dr, c + dc
                    if rr < 0 or rr >= rows or cc < 0 or cc >= cols or occupancy[rr, cc] != FREE:
                        ok = False
                        break
                if not ok:
                    break
            nav[r, c] = ok
    return nav


@njit(cache=True)
def _components(nav):
    """Label 4-connected components of navigable cells (0 = not navigable); returns labels, sizes."""
    rows, cols = nav.shape
    labels = np.zeros((rows, cols), dtype=np.int32)
    stack = np.empty(rows * cols, dtype=np.int64)
    sizes = [0]
    label = 0
    for start in range(rows * cols):
        r0, c0 = start // cols, start % cols
        if not nav[r0, c0] or labels[r0, c0] != 0:
            continue
        label += 1
        labels[r0, c0] = label
        top = 0
        stack[0] = start
        size = 0
        while top >= 0:
            cell = stack[top]
            top -= 1
            size += 1
            r, c = cell // cols, cell % cols
            for k in range(4):
                rr = r + (1 if k == 0 else -1 if k == 1 else 0)
                cc = c + (1 if k == 2 else -1 if k == 3 else 0)
                if 0 <= rr < rows and 0 <= cc < cols and nav[rr, cc] and labels[rr, cc] == 0:
                    labels[rr, cc] = label
                    top += 1
                    stack[top] = rr * cols + cc
        sizes.append(size)
    return labels, np.array(sizes, dtype=np.int64)


@njit(cache=True)
def segment_clear(nav, r0, c0, r1, c1):
    """Whether the segment between grid points (r0, c0) and (r1, c1) (units: cells, cell (i, j) spans
    [i, i+1) x [j, j+1)) crosses only navigable cells; a segment through a cell corner needs both
    side cells navigable."""
    rows, cols = nav.shape
    r, c = int(math.floor(r0)), int(math.floor(c0))
    r_end, c_end = int(math.floor(r1)), int(math.floor(c1))
    if r < 0 or r >= rows or c < 0 or c >= cols or not nav[r, c]:
        return False
    dr, dc = r1 - r0, c1 - c0
    step_r = 1 if dr > 0 else -1
    step_c = 1 if dc > 0 else -1
    inf = 1e30
    t_dr = abs(1.0 / dr) if dr != 0 else inf
    t_dc = abs(1.0 / dc) if dc != 0 else inf
    t_r = ((r + 1 - r0) if dr > 0 else (r0 - r)) * t_dr if dr != 0 else inf
    t_c = ((c + 1 - c0) if dc > 0 else (c0 - c)) * t_dc if dc != 0 else inf
    n = abs(r_end - r) + abs(c_end - c)
    while n > 0:
        if abs(t_r - t_c) < 1e-9:
            if not (0 <= r + step_r < rows and nav[r + step_r, c]):
                return False
            if not (0 <= c + step_c < cols and nav[r, c + step_c]):
                return False
            r += step_r
            c += step_c
            t_r += t_dr
            t_c += t_dc
            n -= 2
        elif t_r < t_c:
            r += step_r
            t_r += t_dr
            n -= 1
        else:
            c += step_c
            t_c += t_dc
            n -= 1
        if r < 0 or r >= rows or c < 0 or c >= cols or not nav[r, c]:
            return False
    return True


@njit(cache=True)
def _heap_push(keys, vals, size, key, val):
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@njit(cache=True)
def _heap_pop(keys, vals, size):
    key, val = keys[0], vals[0]
    size -= 1
    keys[0], vals[0] = keys[size], vals[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        i = child
    return key, val, size


@njit(cache=True)
def _theta_star_field(nav, goal_r, goal_c):
    """Any-angle Dijkstra from the goal cell: distance (in cells) from every cell centre to the goal
    cell centre and the parent cell (flat index, -1 unreachable) that each cell sees directly."""
    rows, cols = nav.shape
    n = rows * cols
    dist = np.full(n, np.inf, dtype=np.float64)
    parent = np.full(n, -1, dtype=np.int64)
    closed = np.zeros(n, dtype=np.bool_)
    keys = np.empty(8 * n + 1, dtype=np.float64)
    vals = np.empty(8 * n + 1, dtype=np.int64)
    goal = goal_r * cols + goal_c
    dist[goal] = 0.0
    parent[goal] = goal
    size = _heap_push(keys, vals, 0, 0.0, goal)
    while size > 0:
        key, cell, size = _heap_pop(keys, vals, size)
        if closed[cell] or key > dist[cell]:
            continue
        closed[cell] = True
        r, c = cell // cols, cell % cols
        p = parent[cell]
        pr, pc = p // cols, p % cols
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                if dr == 0 and dc == 0:
                    continue
                rr, cc = r + dr, c + dc
                if rr < 0 or rr >= rows or cc < 0 or cc >= cols or not nav[rr, cc]:
                    continue
                if dr != 0 and dc != 0 and not (nav[r, cc] and nav[rr, c]):
                    continue  # no corner cutting
                nb = rr * cols + cc
                if closed[nb]:
                    continue
                if segment_clear(nav, pr + 0.5, pc + 0.5, rr + 0.5, cc + 0.5):
                    cand = dist[p] + math.sqrt((rr - pr) ** 2 + (cc - pc) ** 2)
                    via = p
                else:
                    cand = dist[cell] + (_SQRT2 if dr != 0 and dc != 0 else 1.0)
                    via = cell
                if cand < dist[nb]:
                    dist[nb] = cand
                    parent[nb] = via
                    size = _heap_push(keys, vals, size, cand, nb)
    return dist, parent


@njit(cache=True)
def _distances_along_parents(parent, cols):
    """Distance (in cells) of every cell to the goal along its parent chain: the same sums, in the
    same order, as _theta_star_field's, so equal to its distances bit for bit (inf unreachable)."""
    n = parent.size
    dist = np.full(n, np.inf, dtype=np.float64)
    chain = np.empty(n, dtype=np.int64)
    for start in range(n):
        if parent[start] < 0 or dist[start] != np.inf:
            continue
        length, cell = 0, start
        while dist[cell] == np.inf and parent[cell] != cell:
            chain[length] = cell
            length += 1
            cell = parent[cell]
        if parent[cell] == cell:
            dist[cell] = 0.0
        for k in range(length - 1, -1, -1):
            cell = chain[k]
            p = parent[cell]
            r, c, pr, pc = cell // cols, cell % cols, p // cols, p % cols
            dist[cell] = dist[p] + math.sqrt((r - pr) ** 2 + (c - pc) ** 2)
    return dist


@njit(cache=True)
def _trace_path(nav, parent, ar, ac, br, bc, start, goal, out):
    """Write the path from grid point (ar, ac) in cell `start` to (br, bc) in cell `goal` into out
    (rows of (row, col)) along the parent chain of goal's field; returns the vertex count, 0 if
    unreachable. The end points replace the centres of their cells where they see the next vertex
    directly, so the path is string-pulled at both ends too."""
    cols = nav.shape[1]
    if parent[start] < 0:
        return 0
    out[0, 0], out[0, 1] = ar, ac
    n = 1
    if start != goal:
        p = parent[start]
        if not segment_clear(nav, ar, ac, p // cols + 0.5, p % cols + 0.5):
            out[n, 0], out[n, 1] = start // cols + 0.5, start % cols + 0.5
            n += 1
        cell = p
        while cell != goal:
            out[n, 0], out[n, 1] = cell // cols + 0.5, cell % cols + 0.5
            n += 1
            cell = parent[cell]
        if not segment_clear(nav, out[n - 1, 0], out[n - 1, 1], br, bc):
            out[n, 0], out[n, 1] = goal // cols + 0.5, goal % cols + 0.5
            n += 1
    out[n, 0], out[n, 1] = br, bc
    return n + 1


@njit(cache=True)
def _polyline_length(points, count):
    total = 0.0
    for k in range(1, count):
        total += math.hypot(points[k, 0] - points[k - 1, 0], points[k, 1] - points[k - 1, 1])
    return total


def field_cache_dir() -> Path | None:
    """Folder of the on-disk distance fields: $CONTINUAL_SIDE_NAV_CACHE (``off``: none), else
    ~/.cache/continual_side/geodesic."""
    value = os.environ.get(FIELD_CACHE_ENV) or str(DEFAULT_FIELD_CACHE_DIR)
    return None if value == "off" else Path(value).expanduser()


class NavGrid:
    """Navigable cells of a scene for an agent of a given radius, with geodesic distances.

    :param scene: the scene.
    :param agent_radius: metres; a free cell is navigable when its centre is farther than this
        from every wall or furniture cell.
    :param cache_dir: folder for distance fields on disk (None: memory only). Files are keyed by
        the navigable mask, so scenes and radii never share one by mistake.
    """

    def __init__(self, scene: Scene, agent_radius: float = 0.1, cache_dir: Path | None = None):
        self.scene = scene
        self.agent_radius = float(agent_radius)
        self.cell_size = float(scene.cell_size)
        self.origin = (float(scene.origin[0]), float(scene.origin[1]))
        self.navigable = _navigable_mask(np.ascontiguousarray(scene.occupancy), self.agent_radius / self.cell_size)
        self.labels, sizes = _components(self.navigable)
        if len(sizes) < 2:
            raise ConfigError(
                f"scene {scene.name!r} has no navigable cell for agent_radius {agent_radius} m: use a smaller radius"
            )
        self.largest_label = int(np.argmax(sizes[1:]) + 1)
        self._largest_cells = np.flatnonzero(self.labels.ravel() == self.largest_label)
        self._fields: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_dir = cache_dir
        digest = hashlib.sha256(np.packbits(self.navigable).tobytes() + repr(self.navigable.shape).encode())
        self._cache_key = f"v{FIELD_FORMAT_VERSION}-{digest.hexdigest()[:20]}"
        self._vertices = np.empty((self.navigable.size + 3, 2), dtype=np.float64)  # path scratch

    # --- coordinates -------------------------------------------------------------------------
    def _grid_coords(self, point) -> tuple[float, float]:
        """Continuous (row, col) grid coordinates of world point [x, y, z]."""
        return (
            (float(point[2]) - self.origin[1]) / self.cell_size,
            (float(point[0]) - self.origin[0]) / self.cell_size,
        )

    def _cell(self, point) -> tuple[int, int]:
        r, c = self._grid_coords(point)
        return int(math.floor(r)), int(math.floor(c))

    def _cell_nav(self, r: int, c: int) -> bool:
        rows, cols = self.navigable.shape
        return 0 <= r < rows and 0 <= c < cols and bool(self.navigable[r, c])

    def is_navigable(self, point) -> bool:
        """Whether world point [x, y, z] lies in a navigable cell."""
        return self._cell_nav(*self._cell(point))

    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random point [x, 0, z] (float32) on the largest connected navigable region."""
        flat = int(self._largest_cells[rng.integers(len(self._largest_cells))])
        r, c = divmod(flat, self.navigable.shape[1])
        jitter = rng.random(2)
        x = self.origin[0] + (c + jitter[0]) * self.cell_size
        z = self.origin[1] + (r + jitter[1]) * self.cell_size
        return np.array([x, 0.0, z], dtype=np.float32)

    def _snap(self, point) -> tuple[int, int] | None:
        """Cell of point, or the nearest navigable cell within 2 agent radii + 1 cell; None if none."""
        return self._snap_coords(*self._grid_coords(point))

    def _snap_coords(self, row: float, col: float) -> tuple[int, int] | None:
        r, c = math.floor(row), math.floor(col)
        if self._cell_nav(r, c):
            return r, c
        reach = int(math.ceil(2 * self.agent_radius / self.cell_size)) + 1
        best, best_d = None, math.inf
        for rr in range(r - reach, r + reach + 1):
            for cc in range(c - reach, c + reach + 1):
                d = (rr - r) ** 2 + (cc - c) ** 2
                if d < best_d and self._cell_nav(rr, cc):
                    best, best_d = (rr, cc), d
        return best

    # --- geodesics -----------------------------------------------------------------------------
    def _parents(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """The goal cell's parent field (int32 flat indices, -1 unreachable): from memory, disk, or
        computed. Only parents are kept (paths and their lengths follow from them), half the
        memory of keeping distances too."""
        key = goal_cell[0] * self.navigable.shape[1] + goal_cell[1]
        if key in self._fields:
            self._fields.move_to_end(key)
            return self._fields[key]
        parent = self._read_parents(goal_cell)
        if parent is None:
            parent = _theta_star_field(self.navigable, goal_cell[0], goal_cell[1])[1].astype(np.int32)
            self._write_parents(goal_cell, parent)
        self._fields[key] = parent
        if len(self._fields) > FIELD_CACHE_SIZE:
            self._fields.popitem(last=False)
        return parent

    def _field_path(self, goal_cell: tuple[int, int]) -> Path | None:
        return None if self.cache_dir is None else Path(self.cache_dir) / self._cache_key / f"{goal_cell[0]}_{goal_cell[1]}.npz"

    def _read_parents(self, goal_cell: tuple[int, int]) -> np.ndarray | None:
        """The cached parent field, or None when there is none or it is unreadable (then rewritten)."""
        path = self._field_path(goal_cell)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                parent = data["parent"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            return None
        return parent if parent.shape == (self.navigable.size,) and parent.dtype == np.int32 else None

    def _write_parents(self, goal_cell: tuple[int, int], parent: np.ndarray) -> None:
        path = self._field_path(goal_cell)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path) as handle:
                np.savez_compressed(handle, parent=parent)
        except OSError:
            pass  # a read-only or full cache folder only costs speed: the field is in memory

    def distance_field(self, goal) -> np.ndarray:
        """(rows, cols) float32 geodesic metres from every cell centre to the goal's cell centre
        (inf where unreachable or not navigable), summed along the cached parent field.

        :param goal: world point [x, y, z]; snapped to a navigable cell nearby if needed.
        """
        cell = self._snap(goal)
        if cell is None:
            return np.full(self.navigable.shape, np.inf, dtype=np.float32)
        dist = _distances_along_parents(self._parents(cell), self.navigable.shape[1])
        return (dist * self.cell_size).astype(np.float32).reshape(self.navigable.shape)

    def _trace(self, a, b) -> int:
        """Trace the path a -> b into self._vertices (grid units); returns its vertex count, 0 if none."""
        (ar, ac), (br, bc) = self._grid_coords(a), self._grid_coords(b)
        start, goal = self._snap_coords(ar, ac), self._snap_coords(br, bc)
        if start is None or goal is None:
            return 0
        parent = self._parents(goal)
        cols = self.navigable.shape[1]
        return _trace_path(self.navigable, parent, ar, ac, br, bc, start[0] * cols + start[1], goal[0] * cols + goal[1], self._vertices)

    def geodesic_distance(self, a, b) -> float:
        """Metres along the shortest navigable (any-angle) path from a to b; math.inf if unreachable.

        :param a: world point [x, y, z].
        :param b: world point [x, y, z].
        """
        count = self._trace(a, b)
        return math.inf if count == 0 else float(_polyline_length(self._vertices, count) * self.cell_size)

    def shortest_path(self, a, b) -> list[np.ndarray]:
        """World points [x, y, z] from a to b; consecutive points are joined by straight navigable
        segments. Empty list if b is unreachable from a.

        :param a: start point.
        :param b: goal point.
        """
        count = self._trace(a, b)
        if count == 0:
            return []
        y = float(a[1])
        rows_cols = self._vertices[:count]
        path = [
            np.array([self.origin[0] + c * self.cell_size, y, self.origin[1] + r * self.cell_size], dtype=np.float32)
            for r, c in rows_cols
        ]
        path[0] = np.array([a[0], y, a[2]], dtype=np.float32)
        path[-1] = np.array([b[0], y, b[2]], dtype=np.float32)
        return path
