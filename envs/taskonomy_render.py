"""Mini-Taskonomy: camera views of the procedural apartments rendered into Taskonomy's 12 domains.

Views are taken at navigable positions of each building (a scene of envs/, so the camera, textures
and scenes are the navigation sensors'): ``views_per_point`` headings per position, spread round the
circle with jitter, a heading whose median depth is under MIN_VIEW_DEPTH_M drawn again (no views of
a wall from 10 cm). The camera has no pitch: the 2.5D ray caster draws vertical lines vertical, so it
cannot tilt. Every label comes from the same ray hits as the image (:meth:`RGBDRenderer.render_labels`)
and is written in the real release's layout and encodings, which
``continual_side.streams.taskonomy_data`` reads::

    <root>/<building>/<folder>/point_<p>_view_<v>_domain_<folder>.png   (.npy for class_object)
    <root>/manifest.json   {"files": {"<relative path>": "<sha256>"}}
    <root>/render.json     the settings, views/s and time of the render
    <root>/domains.png     one view in every domain

Pixels whose z-depth reaches max_depth saw nothing in range: depth 65535, normal grey 128, class 0,
curvature 128, reshading 0. How each domain is computed is in :func:`domain_images`.

The default set is cached: ``~/.cache/continual_side/taskonomy/<hash of the settings>/``, built in a
temp folder and renamed into place, so a reader never sees half a set.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from continual_side.atomic import atomic_write_bytes, atomic_write_text
from continual_side.errors import ConfigError
from continual_side.streams.taskonomy_data import DEFAULT_SET_POINTER
from envs.navgrid import NavGrid
from envs.render import (
    COLUMN_CLASS, FIRST_FURNITURE_CLASS, ROUND_TABLE_CLASS, SEMANTIC_CLASSES, RGBDRenderer, SurfaceLabels,
)
from envs.scene import Scene, builtin_scene_names, generate_apartment, load_builtin_scene

RENDER_FORMAT_VERSION = 1  # part of the cache key: bump when any domain's computation changes
DEFAULT_CACHE_DIR = Path("~/.cache/continual_side/taskonomy")
MANIFEST_NAME, SETTINGS_NAME, GRID_NAME = "manifest.json", "render.json", "domains.png"

DOMAIN_FOLDERS = {
    "curvature": "principal_curvature", "segment_semantic": "segment_semantic", "reshading": "reshading",
    "keypoints3d": "keypoints3d", "keypoints2d": "keypoints2d", "edge_texture": "edge_texture",
    "edge_occlusion": "edge_occlusion", "depth_zbuffer": "depth_zbuffer", "depth_euclidean": "depth_euclidean",
    "normal": "normal", "class_object": "class_object", "rgb": "rgb",
}
"""Folder (and file-name) of each domain, the real release's names."""
CLASS_OBJECT_CLASSES = ("no_object", "cabinet", "sofa", "bed", "desk", "column", "round_table")
"""Entries of a class_object vector: each object class's share of the view's in-range pixels, and the rest."""
_OBJECT_CLASS_IDS = (*range(FIRST_FURNITURE_CLASS, FIRST_FURNITURE_CLASS + 4), COLUMN_CLASS, ROUND_TABLE_CLASS)

DEPTH_UNITS_PER_METRE = 512.0
DEPTH_INVALID = 65535
CURVATURE_FULL_SCALE_PER_M = 8.0  # curvature 8 1/m (radius 12.5 cm) is stored as 255; decoded (v-128)/127 * 8 = 1/m
OCCLUSION_TOLERANCE = 0.05  # relative depth error of a neighbour's plane that makes an occlusion edge
TEXTURE_EDGE_FULL_SCALE = 0.25  # grey-level gradient (per pixel, [0, 1] grey) stored as 65535
KEYPOINTS2D_FULL_SCALE = 0.004  # sqrt of the Harris response on grey stored as 65535
KEYPOINTS3D_FULL_SCALE = 0.15  # sqrt of the Harris response on the normals stored as 65535
HARRIS_K = 0.04
MIN_VIEW_DEPTH_M = 1.0
HEADING_TRIES = 8
PNG_COMPRESSION = 1  # zlib level: fast, files about 10% larger than level 6


@dataclass
class TaskonomyRenderConfig:
    """Render the mini-Taskonomy: views of the navigation apartments in Taskonomy's 12 domains and layout.

    :param buildings: scenes to render: built-in names (apartment_0 .. apartment_23) or
        apartment_<seed> for any generator seed. The default, the 12 first navigation training
        apartments, leaves the navigation val/test apartments (16-23) unseen by an encoder trained here.
    :param views_per_building: views per building.
    :param views_per_point: headings per camera position (Taskonomy's views of one point).
    :param resolution: square image side in pixels.
    :param hfov: horizontal field of view in degrees (the navigation sensors': 90).
    :param camera_height: metres above the floor (the navigation sensors': 1.25).
    :param max_depth: metres; farther pixels are invalid (depth 65535, unlabelled).
    :param seed: seed of the camera positions and headings.
    :param workers: processes (one building at a time each).
    :param cache_dir: where rendered sets are kept, one folder per settings hash.
    :param out: write the set here instead of the cache (a fresh or absent folder).
    :param force: render again even if the cache holds this set.
    :param grid: also copy the one-view-in-every-domain PNG here.
    """

    buildings: tuple[str, ...] = tuple(f"apartment_{seed}" for seed in range(12))
    views_per_building: int = 100
    views_per_point: int = 4
    resolution: int = 128
    hfov: float = 90.0
    camera_height: float = 1.25
    max_depth: float = 10.0
    seed: int = 0
    workers: int = 2
    cache_dir: Path = DEFAULT_CACHE_DIR
    out: Path | None = None
    force: bool = False
    grid: Path | None = None

    def validate(self) -> None:
        """:raises ConfigError: unknown building names or out-of-range numbers."""
        bad = [name for name in self.buildings if not re.fullmatch(r"apartment_\d+", name) and name not in builtin_scene_names()]
        if not self.buildings or bad:
            raise ConfigError(f"unknown buildings {bad or '(none given)'}: use apartment_<seed> names, e.g. apartment_0")
        if len(set(self.buildings)) != len(self.buildings):
            raise ConfigError(f"buildings {list(self.buildings)} repeat a name; give each building once")
        if self.views_per_building < 1 or self.views_per_point < 1 or self.resolution < 8 or self.workers < 1:
            raise ConfigError(
                f"need views_per_building >= 1, views_per_point >= 1, resolution >= 8 and workers >= 1, got "
                f"{self.views_per_building}, {self.views_per_point}, {self.resolution}, {self.workers}"
            )
        if not (0 < self.hfov < 180 and self.max_depth > 0):
            raise ConfigError(f"need 0 < hfov < 180 and max_depth > 0, got {self.hfov} and {self.max_depth}")

    def content(self) -> dict:
        """The settings that decide the files' bytes (the cache key)."""
        keys = ("buildings", "views_per_building", "views_per_point", "resolution", "hfov", "camera_height", "max_depth", "seed")
        return {"format_version": RENDER_FORMAT_VERSION, **{key: asdict(self)[key] for key in keys}}

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:16]

    def root(self) -> Path:
        """The folder the set is (or will be) in."""
        return Path(self.out) if self.out is not None else Path(self.cache_dir).expanduser() / self.cache_key()


def building_scene(name: str) -> Scene:
    """The scene of a building: the shipped file for a built-in name, else ``generate_apartment(seed)``."""
    if name in builtin_scene_names():
        return load_builtin_scene(name)
    scene = generate_apartment(int(name.rpartition("_")[2]))
    scene.name = name
    return scene


def _harris(channels: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Harris corner response det - k trace^2 (>= 0) of the structure tensor summed over channels (C, H, W)."""
    xx = yy = xy = 0.0
    for channel in channels:
        gx, gy = ndimage.sobel(channel, axis=1) / 8.0, ndimage.sobel(channel, axis=0) / 8.0
        xx, yy, xy = xx + gx * gx, yy + gy * gy, xy + gx * gy
    xx, yy, xy = (ndimage.gaussian_filter(a, sigma) for a in (xx, yy, xy))
    return np.maximum(xx * yy - xy * xy - HARRIS_K * (xx + yy) ** 2, 0.0)


def _occlusion_edges(depth: np.ndarray, normals: np.ndarray, directions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels nearer than a neighbour that neither one's tangent plane explains.

    For neighbours a, b, the plane through a's hit with a's normal predicts b's depth along b's ray;
    a crease (wall meets floor) is predicted by at least one of the two planes, an occlusion by
    neither. The nearer pixel of the pair (the occluding contour) is marked; pairs with an
    out-of-range pixel are not compared (the range limit is no edge of the scene).
    """
    points = depth[..., None] * directions
    edges = np.zeros(valid.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)

        def predicted(src, dst):
            offset = np.einsum("hwc,hwc->hw", normals[src], points[src])
            facing = np.einsum("hwc,hwc->hw", normals[src], directions[dst])
            with np.errstate(divide="ignore", invalid="ignore"):
                return offset / facing

        with np.errstate(invalid="ignore"):
            error = np.minimum(np.abs(predicted(a, b) - depth[b]) / depth[b], np.abs(predicted(b, a) - depth[a]) / depth[a])
        jump = ~(error <= OCCLUSION_TOLERANCE)  # NaN (grazing plane) counts as a jump
        both = valid[a] & valid[b] & jump
        edges[a] |= both & (depth[a] <= depth[b])
        edges[b] |= both & (depth[b] < depth[a])
    return edges


def _unit16(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 65535.0).astype(np.uint16)


def domain_images(rgb: np.ndarray, depth: np.ndarray, labels: SurfaceLabels, directions: np.ndarray, heading: float,
                  max_depth: float) -> dict[str, np.ndarray]:
    """Every domain of one view, encoded as the real release stores it (uint8 / uint16 images, float32 class_object).

    - depth_zbuffer: the ray caster's depth along the camera axis; depth_euclidean: that times the
      ray's length per unit of axis depth. Both 1/512 m per unit, 65535 where depth >= max_depth.
    - normal: the hit's surface normal in camera axes (x right, y up, z towards the camera),
      [-1, 1] -> [0, 255].
    - curvature: principal curvatures (k1, k2) of the hit surface, exact from the geometry: (1/r, 0)
      on a cylinder of radius r (convex, positive), (0, 0) on planes; 128 + 127 k / 8 per m.
    - reshading: Lambertian shading cos(angle between normal and the direction to a point light at
      the camera), as Taskonomy's reshading (a light at the camera), 0..255.
    - segment_semantic: the hit's class index (SEMANTIC_CLASSES), 0 where out of range.
    - edge_texture: Sobel gradient magnitude of the grey image smoothed with sigma 1 px.
    - edge_occlusion: depth discontinuities (see `_occlusion_edges`), smoothed with sigma 1 px so a
      line peaks at 1.
    - keypoints2d: square root of the Harris response of the grey image; keypoints3d: the same on
      the normal image (corners of the geometry, not of the texture). Edges and keypoints are divided
      by fixed full scales, not per image, so values compare across views.
    - class_object: the share of in-range pixels of each object class (CLASS_OBJECT_CLASSES).

    :param rgb: (H, W, 3) uint8.
    :param depth: (H, W, 1) float32 z-depth in metres, clipped to max_depth.
    :param labels: what each pixel's ray hit (`RGBDRenderer.render_labels`).
    :param directions: (H, W, 3) world ray directions with unit axis component (`RGBDRenderer.ray_directions`).
    :param heading: camera heading in radians.
    :param max_depth: the renderer's max_depth.
    """
    z = depth[..., 0].astype(np.float64)
    valid = z < max_depth * (1.0 - 1e-6)
    directions = directions.astype(np.float64)
    ray_length = np.linalg.norm(directions, axis=-1)
    axes = np.array([[math.cos(heading), 0.0, -math.sin(heading)], [0.0, 1.0, 0.0], [math.sin(heading), 0.0, math.cos(heading)]])
    camera_normal = labels.normal.astype(np.float64) @ axes.T  # rows of axes: camera x (right), y (up), z (backwards)
    camera_directions = directions @ axes.T

    def depth_code(metres):
        return np.where(valid, np.minimum(np.round(metres * DEPTH_UNITS_PER_METRE), DEPTH_INVALID - 1), DEPTH_INVALID).astype(np.uint16)

    normal_code = np.where(valid[..., None], np.round((camera_normal + 1.0) * 127.5), 128).astype(np.uint8)
    k1 = np.round(127.0 * np.clip(labels.curvature / CURVATURE_FULL_SCALE_PER_M, -1.0, 1.0))
    curvature_code = np.full(rgb.shape, 128, dtype=np.uint8)
    curvature_code[..., 0] = np.where(valid, 128 + k1, 128)
    lit = np.clip(-np.einsum("hwc,hwc->hw", camera_normal, camera_directions) / ray_length, 0.0, 1.0)
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    smooth_grey = ndimage.gaussian_filter(grey, 1.0)
    texture_edges = np.hypot(ndimage.sobel(smooth_grey, axis=0), ndimage.sobel(smooth_grey, axis=1)) / 8.0
    occlusion = ndimage.gaussian_filter(_occlusion_edges(z, camera_normal, camera_directions, valid).astype(np.float64), 1.0)
    classes = np.where(valid, labels.semantic, 0).astype(np.uint8)
    in_range = max(int(valid.sum()), 1)
    objects = np.array([np.count_nonzero(classes == cls) for cls in _OBJECT_CLASS_IDS], dtype=np.float64) / in_range
    class_object = np.concatenate([[1.0 - objects.sum()], objects]).astype(np.float32)
    return {
        "rgb": rgb,
        "depth_zbuffer": depth_code(z),
        "depth_euclidean": depth_code(z * ray_length),
        "normal": normal_code,
        "curvature": curvature_code,
        "reshading": np.where(valid, np.round(255.0 * lit), 0).astype(np.uint8),
        "segment_semantic": classes,
        "edge_texture": _unit16(texture_edges / TEXTURE_EDGE_FULL_SCALE),
        "edge_occlusion": _unit16(occlusion * math.sqrt(2.0 * math.pi)),
        "keypoints2d": _unit16(np.sqrt(_harris(smooth_grey[None])) / KEYPOINTS2D_FULL_SCALE),
        "keypoints3d": _unit16(np.sqrt(_harris(np.where(valid, camera_normal.transpose(2, 0, 1), 0.0))) / KEYPOINTS3D_FULL_SCALE),
        "class_object": class_object,
    }


def encode(domain: str, image: np.ndarray) -> bytes:
    """File bytes of one domain image: PNG (16-bit grey for uint16), .npy for class_object."""
    buffer = io.BytesIO()
    if domain == "class_object":
        np.save(buffer, image, allow_pickle=False)
    else:
        Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


def file_name(domain: str, point: int, view: int) -> str:
    """Path of one view's file in a building, e.g. ``normal/point_3_view_0_domain_normal.png``."""
    folder = DOMAIN_FOLDERS[domain]
    suffix = ".npy" if domain == "class_object" else ".png"
    return f"{folder}/point_{point}_view_{view}_domain_{folder}{suffix}"


def view_poses(grid: NavGrid, renderer: RGBDRenderer, config: TaskonomyRenderConfig, rng: np.random.Generator):
    """Yield (point, view, position, heading) for a building's views, in order.

    A heading whose median depth is under MIN_VIEW_DEPTH_M is drawn again (HEADING_TRIES at most).
    """
    rgb = np.empty((renderer.height, renderer.width, 3), dtype=np.uint8)
    depth = np.empty((renderer.height, renderer.width, 1), dtype=np.float32)
    for index in range(config.views_per_building):
        point, view = divmod(index, config.views_per_point)
        if view == 0:
            position = grid.sample_navigable_point(rng)
            base = rng.uniform(0.0, 2.0 * math.pi)
        for _ in range(HEADING_TRIES):
            heading = base + 2.0 * math.pi * (view + rng.uniform(-0.25, 0.25)) / config.views_per_point
            renderer.render_into(position, heading, rgb, depth)
            if np.median(depth) >= MIN_VIEW_DEPTH_M:
                break
            base = rng.uniform(0.0, 2.0 * math.pi)
        yield point, view, position, heading


def render_building(config: TaskonomyRenderConfig, building: str, root: Path) -> dict[str, str]:
    """Write every view of one building under ``root/<building>/``; returns {relative path: sha256}.

    :param config: the render settings.
    :param building: building (scene) name.
    :param root: the set's folder.
    """
    scene = building_scene(building)
    grid = NavGrid(scene)
    renderer = RGBDRenderer(scene, width=config.resolution, height=config.resolution, hfov_deg=config.hfov,
                            camera_height=config.camera_height, max_depth=config.max_depth)
    name_hash = int(hashlib.sha256(building.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng([config.seed, name_hash])
    for folder in DOMAIN_FOLDERS.values():
        (root / building / folder).mkdir(parents=True, exist_ok=True)
    checksums = {}
    for point, view, position, heading in view_poses(grid, renderer, config, rng):
        rgb, depth, labels = renderer.render_labels(position, heading)
        images = domain_images(rgb, depth, labels, renderer.ray_directions(heading), heading, config.max_depth)
        for domain, image in images.items():
            relative = f"{building}/{file_name(domain, point, view)}"
            data = encode(domain, image)
            (root / relative).write_bytes(data)
            checksums[relative] = hashlib.sha256(data).hexdigest()
    return checksums


@dataclass
class RenderedSet:
    """Where a rendered set is and how it was made.

    :param root: the set's folder (Taskonomy layout).
    :param cached: whether it was already there (nothing rendered).
    :param views: views in the set.
    :param seconds: wall time of the render (of the first render, for a cached set).
    :param cpu_seconds: CPU time of the render, this process and its workers together (on a shared
        machine the steadier figure: wall time grows with other people's load).
    """

    root: Path
    cached: bool
    views: int
    seconds: float
    cpu_seconds: float

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds

    @property
    def views_per_cpu_s(self) -> float:
        return self.views / self.cpu_seconds


def render_taskonomy(config: TaskonomyRenderConfig) -> RenderedSet:
    """Render the set into ``config.root()`` unless it is there already (or ``force``).

    Buildings go to ``workers`` processes; the set is written to a temp folder next to the root and
    renamed into place, with its manifest, settings and domain grid.

    :raises ConfigError: bad settings, or ``out`` names a folder with other content.
    """
    config.validate()
    root = config.root()
    settings_path = root / SETTINGS_NAME
    if settings_path.is_file() and not config.force:
        settings = json.loads(settings_path.read_text())
        if settings["content"] == json.loads(json.dumps(config.content())):
            _write_grid_copy(root, config.grid)
            _point_to_default_set(config, root)
            return RenderedSet(root, True, settings["views"], settings["seconds"], settings["cpu_seconds"])
    if root.exists() and not (root / MANIFEST_NAME).is_file() and any(root.iterdir()):
        raise ConfigError(f"{root} exists and is not a rendered set; choose an empty or new --out folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        checksums: dict[str, str] = {}
        if config.workers == 1 or len(config.buildings) == 1:
            for building in config.buildings:
                checksums.update(render_building(config, building, staging))
        else:
            # forked workers inherit the imports; spawned ones would import the CLI (torch) again each
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(min(config.workers, len(config.buildings)), mp_context=context) as pool:
                for result in pool.map(render_building, [config] * len(config.buildings), config.buildings,
                                       [staging] * len(config.buildings)):
                    checksums.update(result)
        seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
        views = len(config.buildings) * config.views_per_building
        atomic_write_text(staging / MANIFEST_NAME, json.dumps({"files": dict(sorted(checksums.items()))}, indent=0))
        atomic_write_text(staging / SETTINGS_NAME, json.dumps(
            {"content": config.content(), "views": views, "seconds": seconds, "cpu_seconds": cpu_seconds,
             "views_per_s": views / seconds, "views_per_cpu_s": views / cpu_seconds,
             "workers": config.workers, "semantic_classes": SEMANTIC_CLASSES,
             "class_object_classes": CLASS_OBJECT_CLASSES}, indent=1))
        write_domain_grid(staging, config.buildings[0], staging / GRID_NAME)
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_grid_copy(root, config.grid)
    _point_to_default_set(config, root)
    return RenderedSet(root, False, views, seconds, cpu_seconds)


def _point_to_default_set(config: TaskonomyRenderConfig, root: Path) -> None:
    """Record where the default set is, for streams that read it without a --data-root."""
    if config.content() == TaskonomyRenderConfig().content():
        pointer = DEFAULT_SET_POINTER.expanduser()
        pointer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(pointer, json.dumps({"root": str(root.resolve())}))


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the pool's workers, once shut down)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _write_grid_copy(root: Path, grid: Path | None) -> None:
    if grid is not None:
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(grid, (root / GRID_NAME).read_bytes())


def write_domain_grid(root: Path, building: str, path: Path) -> None:
    """A PNG of one view of a building in every domain (3 x 4 panels), for a person to look at: the
    view with the most classes in sight (ties: the most in-range pixels, then the first).

    :param root: the set's folder.
    :param building: building to show.
    :param path: PNG to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def richness(segment_file):
        labels = np.asarray(Image.open(segment_file))
        return len(np.unique(labels[labels > 0])), np.count_nonzero(labels)

    segments = sorted((root / building / DOMAIN_FOLDERS["segment_semantic"]).iterdir())
    best = max(segments, key=richness)
    point, view = (int(number) for number in re.findall(r"\d+", best.name)[:2])

    def read(domain):
        file = root / building / file_name(domain, point, view)
        return np.load(file) if domain == "class_object" else np.asarray(Image.open(file))

    figure = Figure(figsize=(10, 7.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 4)
    for axis, domain in zip(axes.ravel(), DOMAIN_FOLDERS):
        image = read(domain)
        if domain == "class_object":
            axis.barh(range(len(image)), image, color="tab:blue", alpha=0.6)
            for row, (name, share) in enumerate(zip(CLASS_OBJECT_CLASSES, image)):
                axis.text(0.02, row, f"{name} {share:.2f}", va="center", fontsize=8)
            axis.set_xlim(0, 1)
            axis.set_yticks([])
            axis.invert_yaxis()
            axis.tick_params(axis="x", labelsize=7)
        else:
            if domain.startswith("depth"):
                image = np.ma.masked_equal(image, DEPTH_INVALID) / DEPTH_UNITS_PER_METRE
                axis.imshow(image, cmap="viridis_r")
            elif domain == "segment_semantic":
                axis.imshow(image, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
            elif domain == "curvature":
                axis.imshow(image[..., 0].astype(int) - 128, cmap="coolwarm", vmin=-127, vmax=127)
            elif image.ndim == 2:
                axis.imshow(image, cmap="gray", vmin=0, vmax=65535 if image.dtype != np.uint8 else 255)
            else:
                axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
        axis.set_title(domain, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
