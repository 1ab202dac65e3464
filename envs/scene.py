"""Grid scenes for the navigation simulator: procedural apartments, saved as small .npz files.

A scene is a top-down occupancy grid (free floor, walls, furniture boxes) plus a texture id per
cell, so the renderer can give walls, floors and furniture distinct looks. Round objects (columns
from floor to ceiling, round tables) are listed as exact circles, so the renderer can intersect
them analytically (true normals and curvature), and their cells are also marked in the occupancy
grid (every cell the disc touches), so navigation treats them as obstacles unchanged. Door
openings are listed as cell boxes, for the renderer's semantic labels. Conventions follow
habitat-lab: y is up, the floor is the x-z plane, cell (row, col) covers
x in [origin_x + col * cell, ...) and z in [origin_z + row * cell, ...).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from continual_side.atomic import atomic_open
from continual_side.errors import ContinualSideError

FREE, WALL, FURNITURE = 0, 1, 2
# Texture ids: 0-3 floors (one per room), 4-7 walls, 8-11 furniture; the renderer owns the looks.
FLOOR_TEXTURES = (0, 1, 2, 3)
WALL_TEXTURES = (4, 5, 6, 7)
FURNITURE_TEXTURES = (8, 9, 10, 11)
N_TEXTURES = 12
COLUMN, ROUND_TABLE = 0, 1  # kinds of round objects (last column of Scene.round_objects)
COLUMN_TEXTURE = WALL_TEXTURES[0]
SCENE_FORMAT_VERSION = 2  # 2: round objects and doors
SCENES_DIR = Path(__file__).resolve().parent / "scenes"

WALL_THICKNESS_M = 0.1
DOOR_WIDTH_M = 0.9
MIN_ROOM_M = 2.0
FURNITURE_MARGIN_M = 0.6  # free ring inside every room, so furniture never blocks a door
COLUMN_RADIUS_M = (0.15, 0.3)
ROUND_TABLE_RADIUS_M = (0.3, 0.6)
ROUND_OBJECT_GAP_M = 0.5  # free space kept round a round object, so it never touches furniture
ROUND_OBJECT_STREAM = 1  # round objects draw from np.random.default_rng([seed, 1]): the rest of a layout is as before


class SceneFileError(ContinualSideError):
    """A scene file is missing, unreadable, of another format version, or inconsistent."""


@dataclass
class Scene:
    """Occupancy + texture grid of one scene.

    :param occupancy: (rows, cols) uint8, 0 free floor, 1 wall, 2 furniture.
    :param texture: (rows, cols) uint8 texture id per cell (floor ids double as room ids).
    :param cell_size: metres per cell.
    :param origin: world (x, z) of the corner of cell (0, 0).
    :param name: scene name.
    :param seed: generator seed, or None for hand-made scenes.
    :param round_objects: (n, 4) float64 rows (x, z, radius, kind) of circles in world metres, kind
        COLUMN or ROUND_TABLE; their cells must also be marked in occupancy (see `mark_round_object`).
    :param doors: (n, 4) int64 half-open cell boxes (row0, col0, row1, col1) of door openings.
    """

    occupancy: np.ndarray
    texture: np.ndarray
    cell_size: float = 0.05
    origin: tuple[float, float] = (0.0, 0.0)
    name: str = "scene"
    seed: int | None = None
    round_objects: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float64))
    doors: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))

    @property
    def shape(self) -> tuple[int, int]:
        return self.occupancy.shape

    def world_to_cell(self, x: float, z: float) -> tuple[int, int]:
        """Cell (row, col) holding world point (x, z); may lie outside the grid."""
        return (
            int(np.floor((z - self.origin[1]) / self.cell_size)),
            int(np.floor((x - self.origin[0]) / self.cell_size)),
        )

    def cell_to_world(self, row: int, col: int) -> tuple[float, float]:
        """World (x, z) of the centre of cell (row, col)."""
        return (
            self.origin[0] + (col + 0.5) * self.cell_size,
            self.origin[1] + (row + 0.5) * self.cell_size,
        )

    def save(self, path) -> None:
        """Write the scene to one compressed .npz file, atomically.

        :param path: destination file (conventionally ending in .npz).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as handle:
            np.savez_compressed(
                handle,
                format_version=np.int64(SCENE_FORMAT_VERSION),
                occupancy=self.occupancy,
                texture=self.texture,
                cell_size=np.float64(self.cell_size),
                origin=np.asarray(self.origin, dtype=np.float64),
                name=np.str_(self.name),
                seed=np.int64(-1 if self.seed is None else self.seed),
                round_objects=np.asarray(self.round_objects, dtype=np.float64).reshape(-1, 4),
                doors=np.asarray(self.doors, dtype=np.int64).reshape(-1, 4),
            )

    @classmethod
    def load(cls, path) -> "Scene":
        """Read a scene written by `save`.

        :param path: .npz scene file.
        :raises SceneFileError: missing, corrupt, other format version, or inconsistent arrays.
        """
        path = Path(path)
        if not path.is_file():
            raise SceneFileError(f"scene file {path} does not exist: pass an existing .npz scene file")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise SceneFileError(
                f"scene file {path} is corrupt or not an .npz file ({exc}): regenerate it with Scene.save"
            ) from exc
        version = int(fields["format_version"]) if "format_version" in fields else None
        if version != SCENE_FORMAT_VERSION:
            raise SceneFileError(
                f"scene file {path} has format version {version}, expected {SCENE_FORMAT_VERSION}: regenerate it"
            )
        names = {"occupancy", "texture", "cell_size", "origin", "name", "seed", "round_objects", "doors"}
        missing = names - set(fields)
        if missing:
            raise SceneFileError(f"scene file {path} lacks {sorted(missing)}: regenerate it with Scene.save")
        scene = cls(
            occupancy=fields["occupancy"],
            texture=fields["texture"],
            cell_size=float(fields["cell_size"]),
            origin=tuple(float(v) for v in np.ravel(fields["origin"])),
            name=str(fields["name"]),
            seed=None if int(fields["seed"]) < 0 else int(fields["seed"]),
            round_objects=fields["round_objects"],
            doors=fields["doors"],
        )
        problem = scene._inconsistency()
        if problem:
            raise SceneFileError(f"scene file {path} is inconsistent: {problem}; regenerate it")
        return scene

    def _inconsistency(self) -> str | None:
        """Describe what is wrong with the arrays, or None when they form a valid scene."""
        occ, tex = self.occupancy, self.texture
        if occ.ndim != 2 or occ.dtype != np.uint8 or min(occ.shape, default=0) < 1:
            return f"occupancy must be a non-empty 2-D uint8 array, got {occ.dtype} {occ.shape}"
        if tex.shape != occ.shape or tex.dtype != np.uint8:
            return f"texture must be uint8 of shape {occ.shape}, got {tex.dtype} {tex.shape}"
        if occ.max() > FURNITURE:
            return f"occupancy values must be 0, 1 or 2, found {int(occ.max())}"
        if not (np.isfinite(self.cell_size) and self.cell_size > 0):
            return f"cell_size must be positive, got {self.cell_size}"
        if len(self.origin) != 2 or not np.all(np.isfinite(self.origin)):
            return f"origin must be two finite numbers, got {self.origin}"
        rounds, doors = np.asarray(self.round_objects), np.asarray(self.doors)
        if rounds.ndim != 2 or rounds.shape[1] != 4 or not np.all(np.isfinite(rounds)):
            return f"round_objects must be finite (n, 4) rows (x, z, radius, kind), got shape {rounds.shape}"
        if len(rounds) and (rounds[:, 2].min() <= 0 or not np.all(np.isin(rounds[:, 3], (COLUMN, ROUND_TABLE)))):
            return "round_objects need positive radii and kinds 0 (column) or 1 (round table)"
        if doors.ndim != 2 or doors.shape[1] != 4 or (len(doors) and (doors.min() < 0 or doors[:, 2:].max() > max(occ.shape))):
            return f"doors must be (n, 4) cell boxes inside the grid, got shape {doors.shape}"
        return None

    def round_object_cells(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the cells round object `index` touches (its disc meets the cell square)."""
        x, z, radius, _ = self.round_objects[index]
        (r0, c0), (r1, c1) = self.world_to_cell(x - radius, z - radius), self.world_to_cell(x + radius, z + radius)
        rows, cols = np.mgrid[max(r0, 0) : min(r1, self.shape[0] - 1) + 1, max(c0, 0) : min(c1, self.shape[1] - 1) + 1]
        near_x = np.clip(x, self.origin[0] + cols * self.cell_size, self.origin[0] + (cols + 1) * self.cell_size)
        near_z = np.clip(z, self.origin[1] + rows * self.cell_size, self.origin[1] + (rows + 1) * self.cell_size)
        touched = (near_x - x) ** 2 + (near_z - z) ** 2 < radius**2
        return rows[touched], cols[touched]

    def add_round_object(self, x: float, z: float, radius: float, kind: int, texture_id: int) -> None:
        """Append a column or round table and mark its cells (WALL for a column, FURNITURE for a table).

        :param x: centre x in metres.
        :param z: centre z in metres.
        :param radius: metres.
        :param kind: COLUMN or ROUND_TABLE.
        :param texture_id: texture of its cells (the renderer's look of its side and top).
        """
        self.round_objects = np.concatenate([np.asarray(self.round_objects, dtype=np.float64).reshape(-1, 4),
                                             [[x, z, radius, kind]]])
        rows, cols = self.round_object_cells(len(self.round_objects) - 1)
        self.occupancy[rows, cols] = WALL if kind == COLUMN else FURNITURE
        self.texture[rows, cols] = texture_id


def _walled_grid(rows: int, cols: int, wall: int) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy and texture arrays of a free rectangle enclosed by walls `wall` cells thick."""
    occupancy = np.full((rows, cols), WALL, dtype=np.uint8)
    occupancy[wall:-wall, wall:-wall] = FREE
    texture = np.where(occupancy == WALL, WALL_TEXTURES[0], FLOOR_TEXTURES[0]).astype(np.uint8)
    return occupancy, texture


def empty_room(width_m: float, depth_m: float, *, cell_size: float = 0.05) -> Scene:
    """One walled room whose free interior spans x in [0, width_m], z in [0, depth_m].

    :param width_m: interior extent along x.
    :param depth_m: interior extent along z.
    :param cell_size: metres per cell.
    """
    wall = max(1, round(WALL_THICKNESS_M / cell_size))
    rows = round(depth_m / cell_size) + 2 * wall
    cols = round(width_m / cell_size) + 2 * wall
    occupancy, texture = _walled_grid(rows, cols, wall)
    origin = (-wall * cell_size, -wall * cell_size)
    return Scene(occupancy, texture, cell_size, origin, name=f"empty_{width_m:g}x{depth_m:g}", seed=None)


def _split_room(room, doors, rng, min_cells, wall, door_cells):
    """Split room (r0, c0, r1, c1, half-open) along its longer side; returns two rooms + wall or None.

    The wall position avoids the spans of existing doors on the room's border so no door gets
    blocked, which keeps every room reachable (each split adds one door between its halves).
    """
    r0, c0, r1, c1 = room
    along_rows = (r1 - r0) >= (c1 - c0)  # split the longer side: wall is a horizontal band of rows
    lo, hi = (r0, r1) if along_rows else (c0, c1)
    if hi - lo < 2 * min_cells + wall:
        return None
    for _ in range(20):
        cut = int(rng.integers(lo + min_cells, hi - min_cells - wall + 1))
        if all(not _blocks(d, cut, cut + wall, along_rows) for d in doors):
            break
    else:
        return None
    span_lo, span_hi = (c0, c1) if along_rows else (r0, r1)
    margin = max(1, (span_hi - span_lo - door_cells) // 6)
    start = int(rng.integers(span_lo + margin, span_hi - door_cells - margin + 1))
    if along_rows:
        halves = (r0, c0, cut, c1), (cut + wall, c0, r1, c1)
        wall_box = (cut, c0, cut + wall, c1)
        door = (cut, start, cut + wall, start + door_cells)
    else:
        halves = (r0, c0, r1, cut), (r0, cut + wall, r1, c1)
        wall_box = (r0, cut, r1, cut + wall)
        door = (start, cut, start + door_cells, cut + wall)
    return halves, wall_box, door


def _blocks(door, lo, hi, along_rows) -> bool:
    """Whether a wall band [lo, hi) (rows if along_rows else cols) would touch `door`, with a margin."""
    d_lo, d_hi = (door[0], door[2]) if along_rows else (door[1], door[3])
    pad = d_hi - d_lo  # keep one door width clear
    return lo < d_hi + pad and hi > d_lo - pad


def generate_apartment(
    seed: int,
    *,
    n_rooms: int = 4,
    size_m: tuple[float, float] = (10.0, 8.0),
    cell_size: float = 0.05,
    furniture_per_room: int = 2,
    round_per_room: int = 1,
) -> Scene:
    """Procedural apartment: rooms split by walls with a door in each, furniture boxes inside.

    Same arguments give identical arrays. All rooms are connected through doors; furniture keeps
    a free ring along each room's walls so it never cuts a room off.

    :param seed: random seed.
    :param n_rooms: number of rooms wanted (fewer if the footprint is too small to split).
    :param size_m: outer (x width, z depth) in metres, walls included.
    :param cell_size: metres per cell.
    :param furniture_per_room: furniture boxes per room (placed where they fit).
    :param round_per_room: round objects tried per room, each a column or a round table with equal
        odds; drawn last, from their own random stream (ROUND_OBJECT_STREAM), so walls, doors and
        boxes are the same as without them.
    """
    rng = np.random.default_rng(seed)
    rows, cols = round(size_m[1] / cell_size), round(size_m[0] / cell_size)
    wall = max(1, round(WALL_THICKNESS_M / cell_size))
    door_cells = max(1, round(DOOR_WIDTH_M / cell_size))
    min_cells = max(door_cells + 2, round(MIN_ROOM_M / cell_size))
    occupancy, texture = _walled_grid(rows, cols, wall)
    texture[occupancy == WALL] = WALL_TEXTURES[0]
    rooms = [(wall, wall, rows - wall, cols - wall)]
    doors: list[tuple[int, int, int, int]] = []
    while len(rooms) < n_rooms:
        order = sorted(range(len(rooms)), key=lambda i: -(rooms[i][2] - rooms[i][0]) * (rooms[i][3] - rooms[i][1]))
        for index in order:
            split = _split_room(rooms[index], doors, rng, min_cells, wall, door_cells)
            if split is not None:
                break
        else:
            break
        halves, (w0, w1, w2, w3), door = split
        occupancy[w0:w2, w1:w3] = WALL
        texture[w0:w2, w1:w3] = WALL_TEXTURES[int(rng.integers(1, len(WALL_TEXTURES)))]
        doors.append(door)
        rooms[index : index + 1] = list(halves)
    floor_ids = rng.permutation(FLOOR_TEXTURES)
    for index, (r0, c0, r1, c1) in enumerate(rooms):
        texture[r0:r1, c0:c1] = floor_ids[index % len(floor_ids)]
        _place_furniture(occupancy, texture, (r0, c0, r1, c1), furniture_per_room, cell_size, rng)
    for r0, c0, r1, c1 in doors:
        occupancy[r0:r1, c0:c1] = FREE
        texture[r0:r1, c0:c1] = texture[r0 - 1, c0 - 1]  # floor of the room before the door
    origin = (-cols * cell_size / 2.0, -rows * cell_size / 2.0)
    scene = Scene(occupancy, texture, cell_size, origin, name=f"apartment_seed{seed}", seed=seed,
                  doors=np.array(doors, dtype=np.int64).reshape(-1, 4))
    round_rng = np.random.default_rng([seed, ROUND_OBJECT_STREAM])
    for room in rooms:
        for _ in range(round_per_room):
            _place_round_object(scene, room, round_rng)
    return scene


def _place_round_object(scene: Scene, room, rng) -> None:
    """Put a column or a round table inside room, away from its walls, where a gap round it is free.

    Gives up silently after 20 tries (a cluttered room keeps what it has).
    """
    kind = int(rng.integers(2))
    low, high = COLUMN_RADIUS_M if kind == COLUMN else ROUND_TABLE_RADIUS_M
    radius = float(rng.uniform(low, high))
    texture_id = COLUMN_TEXTURE if kind == COLUMN else FURNITURE_TEXTURES[int(rng.integers(len(FURNITURE_TEXTURES)))]
    reach = FURNITURE_MARGIN_M + radius
    x0, z0 = scene.cell_to_world(room[0], room[1])
    x1, z1 = scene.cell_to_world(room[2] - 1, room[3] - 1)
    if x1 - x0 <= 2 * reach or z1 - z0 <= 2 * reach:
        return
    for _ in range(20):
        x, z = float(rng.uniform(x0 + reach, x1 - reach)), float(rng.uniform(z0 + reach, z1 - reach))
        (r0, c0), (r1, c1) = (scene.world_to_cell(x - radius - ROUND_OBJECT_GAP_M, z - radius - ROUND_OBJECT_GAP_M),
                              scene.world_to_cell(x + radius + ROUND_OBJECT_GAP_M, z + radius + ROUND_OBJECT_GAP_M))
        if np.all(scene.occupancy[r0 : r1 + 1, c0 : c1 + 1] == FREE):
            scene.add_round_object(x, z, radius, kind, texture_id)
            return


def _place_furniture(occupancy, texture, room, count, cell_size, rng) -> None:
    """Put up to `count` boxes (0.4-1.2 m sides) inside room, away from its walls."""
    margin = round(FURNITURE_MARGIN_M / cell_size)
    r0, c0, r1, c1 = room[0] + margin, room[1] + margin, room[2] - margin, room[3] - margin
    lo, hi = round(0.4 / cell_size), round(1.2 / cell_size)
    for _ in range(count):
        height = min(int(rng.integers(lo, hi + 1)), r1 - r0)
        width = min(int(rng.integers(lo, hi + 1)), c1 - c0)
        if height < 1 or width < 1:
            return
        top = int(rng.integers(r0, r1 - height + 1))
        left = int(rng.integers(c0, c1 - width + 1))
        occupancy[top : top + height, left : left + width] = FURNITURE
        texture[top : top + height, left : left + width] = FURNITURE_TEXTURES[int(rng.integers(len(FURNITURE_TEXTURES)))]


def write_builtin_scenes(seeds, folder=SCENES_DIR) -> list[Path]:
    """Write ``apartment_<seed>.npz`` for each seed: the shipped scenes are seeds 0..23.

    :param seeds: apartment seeds.
    :param folder: destination folder.
    """
    paths = []
    for seed in seeds:
        scene = generate_apartment(seed)
        scene.name = f"apartment_{seed}"
        paths.append(Path(folder) / f"{scene.name}.npz")
        scene.save(paths[-1])
    return paths


def builtin_scene_names() -> list[str]:
    """Names of the scenes shipped in envs/scenes/."""
    return sorted((p.stem for p in SCENES_DIR.glob("*.npz")), key=lambda name: (len(name), name))


def load_builtin_scene(name: str) -> Scene:
    """Load envs/scenes/<name>.npz.

    :param name: one of `builtin_scene_names()`.
    :raises SceneFileError: unknown name (the message lists the known ones) or a bad file.
    """
    names = builtin_scene_names()
    if name not in names:
        raise SceneFileError(f"unknown built-in scene {name!r} in {SCENES_DIR}: choose one of {names}")
    return Scene.load(SCENES_DIR / f"{name}.npz")
