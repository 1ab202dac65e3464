"""Navigation simulator core: scenes, geodesics, motion, RGB-D rendering (no habitat)."""

import math
import zipfile

import numpy as np
import pytest

from continual_side.errors import ConfigError

from envs.motion import move_forward
from envs.navgrid import NavGrid, _theta_star_field
from envs.render import RGBDRenderer, topdown_map
from envs.scene import (
    FURNITURE,
    WALL,
    Scene,
    SceneFileError,
    builtin_scene_names,
    empty_room,
    generate_apartment,
    load_builtin_scene,
)

CELL = 0.05


def pt(x: float, z: float) -> np.ndarray:
    return np.array([x, 0.0, z], dtype=np.float32)


def with_box(scene: Scene, x0: float, x1: float, z0: float, z1: float, kind: int) -> Scene:
    """Copy of scene with the cells covering [x0, x1) x [z0, z1) set to kind."""
    occupancy = scene.occupancy.copy()
    (r0, c0), (r1, c1) = scene.world_to_cell(x0, z0), scene.world_to_cell(x1 - 1e-6, z1 - 1e-6)
    occupancy[r0 : r1 + 1, c0 : c1 + 1] = kind
    texture = scene.texture.copy()
    texture[r0 : r1 + 1, c0 : c1 + 1] = 5 if kind == WALL else 9
    return Scene(occupancy, texture, scene.cell_size, scene.origin, scene.name, scene.seed)


@pytest.fixture(scope="module")
def apartment() -> Scene:
    return load_builtin_scene("apartment_0")


@pytest.fixture(scope="module")
def apartment_grid(apartment) -> NavGrid:
    return NavGrid(apartment)


# --- scenes ------------------------------------------------------------------------------------


def test_same_seed_gives_identical_scene_and_other_seed_differs():
    a, b, c = generate_apartment(7), generate_apartment(7), generate_apartment(8)
    assert np.array_equal(a.occupancy, b.occupancy) and np.array_equal(a.texture, b.texture)
    assert not np.array_equal(a.occupancy, c.occupancy)
    assert a.occupancy.shape == (160, 200)  # 8 m x 10 m at 5 cm
    assert set(np.unique(a.occupancy)) == {0, 1, 2}


def test_builtin_scenes_are_the_seeded_apartments():
    assert builtin_scene_names() == [f"apartment_{seed}" for seed in range(24)]
    for seed, name in enumerate(builtin_scene_names()):
        shipped, fresh = load_builtin_scene(name), generate_apartment(seed)
        assert shipped.seed == seed and shipped.name == name
        assert np.array_equal(shipped.occupancy, fresh.occupancy) and np.array_equal(shipped.texture, fresh.texture)
    with pytest.raises(SceneFileError, match="apartment_0"):
        load_builtin_scene("kitchen")


def test_generated_apartment_is_one_connected_region(apartment, apartment_grid):
    # every room is reachable: the largest component holds (nearly) all navigable cells; only
    # pockets enclosed by furniture may be cut off
    largest = np.count_nonzero(apartment_grid.labels == apartment_grid.largest_label)
    assert largest >= 0.97 * np.count_nonzero(apartment_grid.navigable)
    assert len(np.unique(apartment.texture[apartment.occupancy == 0])) == 4  # four rooms' floors


def test_cell_world_round_trip():
    scene = empty_room(2.0, 1.0)
    assert scene.world_to_cell(0.0, 0.0) == (2, 2)  # 0.1 m walls = 2 cells before the interior
    assert scene.cell_to_world(2, 2) == pytest.approx((0.025, 0.025))
    assert scene.world_to_cell(*scene.cell_to_world(11, 30)) == (11, 30)


def test_save_load_round_trip(tmp_path, apartment):
    path = tmp_path / "scene.npz"
    apartment.save(path)
    loaded = Scene.load(path)
    assert np.array_equal(loaded.occupancy, apartment.occupancy)
    assert (loaded.cell_size, loaded.origin, loaded.name, loaded.seed) == (
        apartment.cell_size, apartment.origin, apartment.name, apartment.seed,
    )


def test_bad_scene_files_raise_scene_file_error(tmp_path, apartment):
    good = tmp_path / "good.npz"
    apartment.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:500])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(SceneFileError, match="does not exist"):
        Scene.load(tmp_path / "missing.npz")
    for path in (truncated, garbage):
        with pytest.raises(SceneFileError, match=str(path.name)):
            Scene.load(path)

    def rewrite(name: str, **changes) -> str:
        with np.load(good) as data:
            fields = {key: data[key] for key in data.files}
        fields.update(changes)
        np.savez_compressed(tmp_path / name, **fields)
        return str(tmp_path / name)

    with pytest.raises(SceneFileError, match="format version 99"):
        Scene.load(rewrite("v99.npz", format_version=np.int64(99)))
    with pytest.raises(SceneFileError, match="texture must be uint8 of shape"):
        Scene.load(rewrite("shape.npz", texture=apartment.texture[:-1]))
    with pytest.raises(SceneFileError, match="occupancy values"):
        Scene.load(rewrite("values.npz", occupancy=apartment.occupancy * 3))
    assert zipfile.is_zipfile(good)


# --- geodesics ---------------------------------------------------------------------------------


def test_empty_room_geodesic_equals_straight_line():
    grid = NavGrid(empty_room(4.0, 3.0))
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = grid.sample_navigable_point(rng), grid.sample_navigable_point(rng)
        assert grid.geodesic_distance(a, b) == pytest.approx(float(np.linalg.norm(a - b)), abs=CELL)
    # the cached field agrees too, up to the half-cell offsets of the cell centres
    field = grid.distance_field(pt(3.51, 2.51))
    (xa, za), (xb, zb) = grid.scene.cell_to_world(12, 12), grid.scene.cell_to_world(*grid.scene.world_to_cell(3.51, 2.51))
    assert field[12, 12] == pytest.approx(math.hypot(xb - xa, zb - za), rel=1e-6)
    assert field[grid.scene.world_to_cell(3.51, 2.51)] == 0.0



def test_wall_makes_geodesic_longer_by_the_detour():
    # wall along x = 2 from z = 0 to z = 3, gap from z = 3 to 4: a and b on either side must go
    # round its end (2, 3). Lower bound: via the wall end itself, 2 * hypot(1, 2) = 4.472;
    # upper bound: via (2, 3.25), clear of the 0.1 m agent radius, 2 * hypot(1, 2.25) = 4.924.
    grid = NavGrid(with_box(empty_room(4.0, 4.0), 1.95, 2.05, 0.0, 3.0, WALL))
    a, b = pt(1.0, 1.0), pt(3.0, 1.0)
    distance = grid.geodesic_distance(a, b)
    assert 2 * math.hypot(1.0, 2.0) < distance < 2 * math.hypot(1.0, 2.25)
    path = grid.shortest_path(a, b)
    assert len(path) >= 3 and min(p[2] for p in path) >= 0.99  # goes up round the wall
    assert max(p[2] for p in path) > 3.0


def test_unreachable_is_inf():
    grid = NavGrid(with_box(empty_room(4.0, 2.0), 1.95, 2.05, 0.0, 2.0, WALL))
    a, b = pt(1.0, 1.0), pt(3.0, 1.0)
    assert grid.geodesic_distance(a, b) == math.inf
    assert grid.shortest_path(a, b) == []
    assert np.isinf(grid.distance_field(b)[grid.scene.world_to_cell(1.0, 1.0)])


def test_distance_field_sums_the_cached_parents_to_the_searchs_own_distances(apartment_grid):
    goal = apartment_grid.sample_navigable_point(np.random.default_rng(4))
    cell = apartment_grid.scene.world_to_cell(goal[0], goal[2])
    searched = _theta_star_field(apartment_grid.navigable, *cell)[0] * apartment_grid.cell_size
    field = apartment_grid.distance_field(goal)
    np.testing.assert_array_equal(field, searched.astype(np.float32).reshape(field.shape))
    reachable = field[np.isfinite(field)]
    assert reachable.size > 0.5 * field.size and reachable.max() > 8.0  # rooms away: long detours


def test_shortest_path_is_navigable_and_as_long_as_the_geodesic(apartment_grid):
    rng = np.random.default_rng(1)
    for _ in range(15):
        a, b = apartment_grid.sample_navigable_point(rng), apartment_grid.sample_navigable_point(rng)
        path = apartment_grid.shortest_path(a, b)
        assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
        length = sum(float(np.linalg.norm(q - p)) for p, q in zip(path, path[1:]))
        distance = apartment_grid.geodesic_distance(a, b)
        assert length == pytest.approx(distance, rel=1e-5)
        assert distance >= float(np.linalg.norm(a - b)) - 1e-5
        # not the 8-connected staircase: within a cell per leg of the cached (cell-centre) field
        field = apartment_grid.distance_field(b)[apartment_grid.scene.world_to_cell(a[0], a[2])]
        assert distance == pytest.approx(float(field), abs=2 * CELL)
        for p, q in zip(path, path[1:]):
            for s in np.linspace(0.0, 1.0, int(np.linalg.norm(q - p) / 0.01) + 2):
                assert apartment_grid.is_navigable(p + s * (q - p))


def test_distance_fields_are_cached_on_disk_per_navigable_mask(tmp_path):
    scene = with_box(empty_room(4.0, 3.0), 1.95, 2.05, 0.0, 2.0, WALL)
    goal = pt(3.0, 1.0)
    computed = NavGrid(scene, cache_dir=tmp_path).distance_field(goal)
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    reread = NavGrid(scene, cache_dir=tmp_path)
    np.testing.assert_array_equal(reread.distance_field(goal), computed)
    assert reread.geodesic_distance(pt(1.0, 1.0), goal) == NavGrid(scene).geodesic_distance(pt(1.0, 1.0), goal)
    files[0].write_bytes(b"truncated")  # a broken cache file is recomputed and rewritten
    np.testing.assert_array_equal(NavGrid(scene, cache_dir=tmp_path).distance_field(goal), computed)
    assert zipfile.is_zipfile(files[0])
    NavGrid(scene, agent_radius=0.2, cache_dir=tmp_path).distance_field(goal)  # another mask: its own file
    assert len(list(tmp_path.rglob("*.npz"))) == 2


# --- motion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("thickness", [0.05, 0.1])
def test_agent_cannot_pass_through_a_wall(thickness):
    grid = NavGrid(with_box(empty_room(4.0, 2.0), 2.0, 2.0 + thickness, 0.0, 2.0, WALL))
    position, heading = pt(1.0, 1.0), -math.pi / 2  # facing +x, towards the wall
    collisions = 0
    for _ in range(50):
        position, collided = move_forward(grid, position, heading)
        collisions += collided
        assert position[0] < 2.0 - 0.1 and grid.is_navigable(position)
    assert collisions >= 45
    assert position[0] == pytest.approx(2.0 - 0.1 - CELL / 2, abs=CELL)  # stopped against it


def test_agent_slides_along_a_wall():
    grid = NavGrid(empty_room(4.0, 4.0))
    position, collided = move_forward(grid, pt(3.8, 2.0), math.radians(-60))  # diagonal into x = 4
    assert collided
    assert position[0] == pytest.approx(3.875, abs=CELL)  # pressed against the wall
    assert position[2] < 2.0 - 0.1  # kept moving along it (-z component of the heading)


def test_free_move_is_exact_and_follows_the_heading_convention():
    grid = NavGrid(empty_room(4.0, 4.0))
    position, collided = move_forward(grid, pt(2.0, 2.0), 0.0)
    assert not collided and np.allclose(position, [2.0, 0.0, 1.75])  # heading 0 looks along -z
    position, _ = move_forward(grid, pt(2.0, 2.0), math.pi / 2)
    assert np.allclose(position, [1.75, 0.0, 2.0])  # turned left 90 degrees: looks along -x


# --- rendering ---------------------------------------------------------------------------------


def test_depth_facing_a_wall_is_the_distance_along_the_camera_axis():
    renderer = RGBDRenderer(empty_room(4.0, 4.0), width=64, height=64)
    _, depth = renderer.render(pt(2.0, 1.5), 0.0)  # wall z = 0 is 1.5 m ahead
    assert depth[31, 32, 0] == pytest.approx(1.5, abs=CELL)
    # planar (z-buffer) depth: the whole horizon row sees the same wall at the same depth
    assert np.allclose(depth[31:33, :, 0], 1.5, atol=CELL)
    _, depth = renderer.render(pt(1.0, 2.0), -math.pi / 2)  # facing +x, wall x = 4 at 3 m
    assert depth[32, 32, 0] == pytest.approx(3.0, abs=CELL)
    # bottom row sees the floor: camera 1.25 m up, ray slope (1 - 1/64) below the axis
    assert depth[63, 32, 0] == pytest.approx(1.25 / (1 - 1 / 64), rel=1e-4)


def test_furniture_is_a_lower_box_in_front_of_the_wall():
    scene = with_box(empty_room(4.0, 4.0), 1.5, 2.5, 0.5, 1.0, FURNITURE)
    renderer = RGBDRenderer(scene, width=64, height=64)
    rgb, depth = renderer.render(pt(2.0, 3.0), 0.0)
    # front face at z = 1.0 (2 m away) spans v in [-1.25/2, -0.45/2]: row 44 has v = -0.39
    assert depth[44, 32, 0] == pytest.approx(2.0, abs=CELL)
    assert depth[32, 32, 0] == pytest.approx(3.0, abs=CELL)  # above the box: the wall behind
    assert not np.array_equal(rgb[44, 32], rgb[32, 32])


def test_same_state_gives_identical_renders(apartment, apartment_grid):
    position = apartment_grid.sample_navigable_point(np.random.default_rng(2))
    first = RGBDRenderer(apartment, width=48, height=32).render(position, 0.3)
    second = RGBDRenderer(load_builtin_scene("apartment_0"), width=48, height=32).render(position, 0.3)
    assert first[0].shape == (32, 48, 3) and first[1].shape == (32, 48, 1)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert len(np.unique(first[0].reshape(-1, 3), axis=0)) > 20  # textured, not flat colours


def test_random_walk_with_renders_stays_valid(apartment, apartment_grid):
    rng = np.random.default_rng(3)
    renderer = RGBDRenderer(apartment, width=32, height=32, max_depth=5.0)
    rgb = np.empty((32, 32, 3), dtype=np.uint8)
    depth = np.empty((32, 32, 1), dtype=np.float32)
    position, heading = apartment_grid.sample_navigable_point(rng), 0.0
    start, depth_min, depth_max, collisions = position.copy(), np.inf, -np.inf, 0
    for action in rng.integers(0, 3, size=10_000):
        if action == 0:
            position, collided = move_forward(apartment_grid, position, heading)
            collisions += collided
        else:
            heading += math.radians(10.0 if action == 1 else -10.0)
        renderer.render_into(position, heading, rgb, depth)
        assert apartment_grid.is_navigable(position)
        depth_min, depth_max = min(depth_min, depth.min()), max(depth_max, depth.max())
        assert not np.isnan(depth).any()
    assert 0.0 < depth_min and depth_max <= 5.0
    assert position.dtype == np.float32  # habitat positions stay float32 through the numba motion
    assert collisions > 0 and np.linalg.norm(position - start) > 0.0


def test_topdown_map_draws_scene_path_agent_and_goal(apartment, apartment_grid):
    a, b = pt(-3.0, -2.5), pt(3.5, 2.5)
    image = topdown_map(apartment, path=apartment_grid.shortest_path(a, b), agent=(a, 0.0), goal=b, scale=2)
    assert image.shape == (320, 400, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (40, 40, 40)  # outer wall
    assert (image == (30, 80, 220)).all(axis=2).any()  # path
    row, col = 2 * (2.5 + 4.0) / CELL, 2 * (3.5 + 5.0) / CELL  # goal pixel (origin is (-5, -4))
    assert tuple(image[int(row), int(col)]) == (30, 180, 60)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ConfigError, match="agent_radius 1.0"):
        NavGrid(empty_room(0.5, 0.5), agent_radius=1.0)
    with pytest.raises(ConfigError, match="camera_height 3.0"):
        RGBDRenderer(empty_room(1.0, 1.0), camera_height=3.0)
    renderer = RGBDRenderer(empty_room(1.0, 1.0), width=8, height=8)
    with pytest.raises(ValueError, match="C-contiguous"):
        renderer.render_into(pt(0.5, 0.5), 0.0, np.empty((8, 8, 3), np.uint8)[:, ::-1], np.empty((8, 8, 1), np.float32))
