"""Mini-Taskonomy renderer: round objects, per-pixel labels from the ray hits, the written set."""

import math

import numpy as np
import pytest
import torch

from continual_side.cli import main
from continual_side.streams.taskonomy_data import DOMAIN_FORMATS, TaskonomyViews
from envs.navgrid import NavGrid
from envs.render import (
    COLUMN_CLASS, DOOR_CLASS, FIRST_FURNITURE_CLASS, ROUND_TABLE_CLASS, WALL_CLASS, RGBDRenderer, cell_classes,
    round_object_ids,
)
from envs.scene import (
    COLUMN, COLUMN_TEXTURE, FREE, FURNITURE, FURNITURE_TEXTURES, ROUND_TABLE, WALL, Scene, empty_room,
    generate_apartment, load_builtin_scene,
)
from envs.taskonomy_render import (
    CURVATURE_FULL_SCALE_PER_M, MANIFEST_NAME, TaskonomyRenderConfig, domain_images, render_taskonomy,
)

RADIUS = 0.3


def room_with_column() -> Scene:
    """A 4 m x 4 m room with a column of radius RADIUS at (2, 1)."""
    scene = empty_room(4.0, 4.0)
    scene.add_round_object(2.0, 1.0, RADIUS, COLUMN, COLUMN_TEXTURE)
    return scene


def tiny_config(tmp_path, name="set", **changes) -> TaskonomyRenderConfig:
    settings = dict(buildings=("apartment_0", "apartment_16"), views_per_building=3, views_per_point=2, resolution=16,
                    workers=1, out=tmp_path / name)
    return TaskonomyRenderConfig(**{**settings, **changes})


# --- scenes ------------------------------------------------------------------------------------


def test_every_shipped_scene_has_round_objects_marked_as_obstacles():
    for seed in (0, 5, 23):
        scene = load_builtin_scene(f"apartment_{seed}")
        assert len(scene.round_objects) >= 2 and set(scene.round_objects[:, 3]) <= {COLUMN, ROUND_TABLE}
        for index, (x, z, radius, kind) in enumerate(scene.round_objects):
            rows, cols = scene.round_object_cells(index)
            assert np.all(scene.occupancy[rows, cols] == (WALL if kind == COLUMN else FURNITURE))
            assert scene.occupancy[scene.world_to_cell(x, z)] != FREE
    # the round objects come from their own random stream: without them the layout is unchanged
    with_round, without = generate_apartment(3), generate_apartment(3, round_per_room=0)
    round_cells = round_object_ids(with_round) > 0
    assert np.array_equal(with_round.occupancy[~round_cells], without.occupancy[~round_cells])
    assert np.all(without.occupancy[round_cells] == FREE) and len(without.round_objects) == 0


def test_round_objects_and_doors_survive_save_and_load(tmp_path):
    scene = generate_apartment(4)
    scene.save(tmp_path / "scene.npz")
    loaded = Scene.load(tmp_path / "scene.npz")
    assert np.array_equal(loaded.round_objects, scene.round_objects) and np.array_equal(loaded.doors, scene.doors)


# --- labels from the ray hits ------------------------------------------------------------------


def test_curvature_is_zero_on_planes_and_inverse_radius_on_a_cylinder():
    renderer = RGBDRenderer(room_with_column(), width=33, height=33)
    _, depth, labels = renderer.render_labels(np.array([2.0, 0.0, 3.0]), 0.0)  # looking along -z at the column
    column = labels.semantic == COLUMN_CLASS
    assert column[16, 16] and depth[16, 16, 0] == pytest.approx(2.0 - RADIUS, abs=1e-5)
    assert np.allclose(labels.curvature[column], 1.0 / RADIUS)
    assert np.all(labels.curvature[~column] == 0.0) and np.count_nonzero(~column) > 0
    # the written domain decodes to (v - 128) / 127 in units of CURVATURE_FULL_SCALE_PER_M
    rgb, depth, labels = renderer.render_labels(np.array([2.0, 0.0, 3.0]), 0.0)
    images = domain_images(rgb, depth, labels, renderer.ray_directions(0.0), 0.0, renderer.max_depth)
    decoded = (images["curvature"][..., :2].astype(float) - 128.0) / 127.0 * CURVATURE_FULL_SCALE_PER_M
    assert np.allclose(decoded[column, 0], 1.0 / RADIUS, atol=CURVATURE_FULL_SCALE_PER_M / 127)
    assert np.all(decoded[~column] == 0.0) and np.all(decoded[..., 1] == 0.0)


def _depth_normals(depth: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Unit normals from the cross product of central differences of the hit points, facing the rays."""
    points = depth * directions
    normals = np.cross(points[1:-1, 2:] - points[1:-1, :-2], points[2:, 1:-1] - points[:-2, 1:-1])
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    facing = np.sign(-np.einsum("hwc,hwc->hw", normals, directions[1:-1, 1:-1]))
    return normals * facing[..., None]


def test_normals_agree_with_the_depth_gradient_on_planes():
    scene = load_builtin_scene("apartment_0")
    renderer = RGBDRenderer(scene, width=64, height=48)
    rng = np.random.default_rng(0)
    grid = NavGrid(scene)
    checked = 0
    for _ in range(6):
        heading = rng.uniform(0, 2 * math.pi)
        _, depth, labels = renderer.render_labels(grid.sample_navigable_point(rng), heading)
        measured = _depth_normals(depth.astype(np.float64), renderer.ray_directions(heading).astype(np.float64))
        # planar pixels, told by the depth alone: on a plane 1/depth is affine in the pixel coordinates,
        # so its second differences across the pixel vanish (not at creases, occlusions or cylinders)
        inverse = 1.0 / depth[..., 0].astype(np.float64)
        centre = inverse[1:-1, 1:-1]
        across = np.abs(inverse[1:-1, :-2] - 2 * centre + inverse[1:-1, 2:])
        down = np.abs(inverse[:-2, 1:-1] - 2 * centre + inverse[2:, 1:-1])
        planar = (np.maximum(across, down) < 1e-4 * centre) & (depth[1:-1, 1:-1, 0] < 0.9 * renderer.max_depth)
        cosine = np.einsum("hwc,hwc->hw", measured, labels.normal[1:-1, 1:-1])
        assert np.all(cosine[planar] > math.cos(math.radians(1.0)))
        checked += np.count_nonzero(planar)
    assert checked > 0.7 * 6 * 62 * 46


def test_segmentation_is_what_the_centre_ray_hits():
    scene = load_builtin_scene("apartment_0")
    classes = cell_classes(scene)
    renderer = RGBDRenderer(scene, width=33, height=33, camera_height=0.5)  # below the tables: the ray can hit them
    rng = np.random.default_rng(1)
    grid = NavGrid(scene)
    seen = set()
    for _ in range(40):
        position, heading = grid.sample_navigable_point(rng), rng.uniform(0, 2 * math.pi)
        _, depth, labels = renderer.render_labels(position, heading)
        expected, distance = _march(scene, classes, position, heading)
        assert labels.semantic[16, 16] == expected
        assert depth[16, 16, 0] == pytest.approx(distance, abs=2e-3)
        seen.add(expected)
    assert {WALL_CLASS, COLUMN_CLASS} <= seen or {WALL_CLASS, ROUND_TABLE_CLASS} <= seen


def _march(scene, classes, position, heading, step=1e-3):
    """Class and distance of the first obstacle on a horizontal ray, walked in 1 mm steps: walls and
    boxes by their cells (a wall seen from a doorway is the door), round objects by their circles."""
    direction = np.array([-math.sin(heading), -math.cos(heading)])
    previous = scene.world_to_cell(position[0], position[2])
    for k in range(1, 20000):
        x, z = np.array([position[0], position[2]]) + k * step * direction
        for cx, cz, radius, kind in scene.round_objects:
            if (x - cx) ** 2 + (z - cz) ** 2 <= radius**2:
                return (COLUMN_CLASS if kind == COLUMN else ROUND_TABLE_CLASS), k * step
        cell = scene.world_to_cell(x, z)
        if scene.occupancy[cell] != FREE and classes[cell] not in (COLUMN_CLASS, ROUND_TABLE_CLASS):
            return (DOOR_CLASS if classes[previous] == DOOR_CLASS else classes[cell]), k * step
        previous = cell
    raise AssertionError("the ray left the scene")


def test_furniture_classes_follow_the_box_texture():
    scene = empty_room(4.0, 4.0)
    (r0, c0), (r1, c1) = scene.world_to_cell(1.5, 0.5), scene.world_to_cell(2.5, 1.0)
    scene.occupancy[r0:r1, c0:c1] = FURNITURE
    scene.texture[r0:r1, c0:c1] = FURNITURE_TEXTURES[2]
    _, _, labels = RGBDRenderer(scene, width=33, height=33, camera_height=0.5).render_labels(np.array([2.0, 0, 3.0]), 0.0)
    assert labels.semantic[16, 16] == FIRST_FURNITURE_CLASS + 2


# --- the written set ---------------------------------------------------------------------------


def test_invalid_depth_is_masked_in_every_domain_that_has_a_mask(tmp_path):
    config = tiny_config(tmp_path, max_depth=2.0, buildings=("apartment_0",))
    root = render_taskonomy(config).root
    views = TaskonomyViews(root, ["apartment_0"], ["depth_zbuffer", "depth_euclidean", "normal", "segment_semantic"],
                           input_scaling="minus_one_to_one")
    far_pixels = 0
    for index in range(len(views)):
        _, targets = views[index]
        invalid = ~targets["depth_zbuffer_mask"][0]
        far_pixels += int(invalid.sum())
        assert torch.equal(targets["depth_euclidean_mask"][0], ~invalid)
        assert not targets["normal_mask"][0][invalid].any() and torch.all(targets["normal_mask"][0][~invalid])
        assert torch.all(targets["segment_semantic"][invalid] == 0) and torch.all(targets["segment_semantic"][~invalid] > 0)
        assert targets["depth_zbuffer"][0][~invalid].max() < 2.0
        assert torch.all(targets["depth_euclidean"][0] >= targets["depth_zbuffer"][0] - 1 / 512)
    assert far_pixels > 0


def test_rendered_set_reads_back_with_every_domain_and_its_checksums(tmp_path):
    result = render_taskonomy(tiny_config(tmp_path))
    assert not result.cached and result.views == 6
    views = TaskonomyViews(result.root, ["apartment_0", "apartment_16"], list(DOMAIN_FORMATS), verify_checksums=True)
    assert len(views) == 6
    rgb, targets = views[0]
    assert rgb.shape == (3, 16, 16)
    for domain in DOMAIN_FORMATS:
        assert torch.all(torch.isfinite(targets[domain].float())), domain
    assert targets["class_object"].shape == (7,) and targets["class_object"].sum() == pytest.approx(1.0, abs=1e-5)
    assert targets["normal"].shape == (3, 16, 16) and targets["curvature"].shape == (2, 16, 16)
    assert (result.root / "domains.png").is_file()


def test_same_seed_gives_the_same_bytes_and_the_cache_is_reused(tmp_path):
    first = render_taskonomy(tiny_config(tmp_path, "a"))
    second = render_taskonomy(tiny_config(tmp_path, "b"))
    other_seed = render_taskonomy(tiny_config(tmp_path, "c", seed=1))
    manifest = (first.root / MANIFEST_NAME).read_bytes()
    assert manifest == (second.root / MANIFEST_NAME).read_bytes() != (other_seed.root / MANIFEST_NAME).read_bytes()
    again = render_taskonomy(tiny_config(tmp_path, "a"))
    assert again.cached and again.root == first.root


def test_default_location_is_a_cache_folder_per_settings(tmp_path):
    config = tiny_config(tmp_path, out=None, cache_dir=tmp_path / "cache")
    assert config.root() == tmp_path / "cache" / config.cache_key()
    assert tiny_config(tmp_path, out=None, resolution=32).cache_key() != config.cache_key()


def test_cli_renders_and_reports_bad_buildings_in_one_line(tmp_path, capsys):
    main(["taskonomy", "render", "--buildings", "apartment_2", "--views-per-building", "1", "--resolution", "8",
          "--workers", "1", "--out", str(tmp_path / "set"), "--grid", str(tmp_path / "grid.png")])
    out = capsys.readouterr().out
    assert f"data root: {tmp_path / 'set'}" in out and (tmp_path / "grid.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["taskonomy", "render", "--buildings", "kitchen", "--out", str(tmp_path / "other")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
