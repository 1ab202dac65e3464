"""RGB-D rendering of grid scenes: a numba 2.5D ray caster and a top-down map.

One ray per image column walks the occupancy grid (DDA). Walls are full height and stop the ray;
furniture cells are lower boxes whose front faces and tops are drawn, and the ray goes on behind
them. Round objects (columns, round tables) are exact circles: a ray entering one of their cells is
intersected with the circle, so their sides are smooth cylinders. Everything is drawn front to back
into rows not yet covered; the rows left over see the floor or the ceiling, whose depth depends on
the row only. Depth is along the camera axis (habitat's convention), in metres, clipped to max_depth.

On request (`RGBDRenderer.render_labels`) the same pass also writes what each pixel's ray hit: its
semantic class, its surface normal and its curvature, for the mini-Taskonomy labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from continual_side.errors import ConfigError
from envs.scene import COLUMN, FURNITURE, FURNITURE_TEXTURES, N_TEXTURES, WALL, WALL_TEXTURES, Scene

TEXELS = 64  # texels per texture tile side (power of two)
TILE_M = 1.0  # metres per texture tile
FURNITURE_HEIGHT_M = 0.8
WALL_HEIGHT_M = 2.5  # also the ceiling
FLOOR_TEXELS_PER_M = 32
SIDE_SHADE = 0.75  # faces crossed along z and furniture fronts are drawn darker than the rest
CEILING_RGB = np.uint32(225 | 222 << 8 | 215 << 16)  # packed 0x00BBGGRR
CYLINDER_AMBIENT = 0.55  # a cylinder's side is lit by ambient + (1 - ambient) * cos(view angle), so it looks round

SEMANTIC_CLASSES = (
    "unlabelled", "wall", "floor", "ceiling", "door", "cabinet", "sofa", "bed", "desk", "column", "round_table",
)
"""Semantic class names by index. Doors are the doorway's threshold floor and jambs; the four furniture
classes are boxes told apart by their texture (ids 8-11 in that order); 0 is what no ray hit within
max_depth (the renderer itself never writes it: callers mask far pixels)."""
WALL_CLASS, FLOOR_CLASS, CEILING_CLASS, DOOR_CLASS = 1, 2, 3, 4
FIRST_FURNITURE_CLASS = 5
COLUMN_CLASS, ROUND_TABLE_CLASS = 9, 10


def texture_atlas() -> np.ndarray:
    """(2, N_TEXTURES, TEXELS, TEXELS) uint32 packed 0x00BBGGRR: a bright and a shaded copy of
    every texture.

    Floors (ids 0-3), walls (4-7) and furniture (8-11) each get a distinct colour and pattern
    (checker, stripes, bricks, noise), fixed by a constant seed so renders are reproducible.
    """
    rng = np.random.default_rng(20261)
    v, u = np.mgrid[0:TEXELS, 0:TEXELS] / TEXELS
    noise = rng.random((TEXELS, TEXELS))
    patterns = [
        ((u * 4).astype(int) + (v * 4).astype(int)) % 2,  # checker
        (v * 8).astype(int) % 2 * 0.6 + noise * 0.4,  # planks
        noise,  # speckle
        ((u * 8).astype(int) + (v * 8).astype(int)) % 2,  # small checker
        0.7 + 0.3 * noise,  # plain plaster
        (u * 6).astype(int) % 2,  # vertical stripes
        (v * 5).astype(int) % 2,  # horizontal stripes
        _bricks(u, v),  # bricks
        ((u * 3).astype(int) + (v * 3).astype(int)) % 2,  # coarse checker
        noise > 0.5,  # coarse noise
        ((u + v) * 6).astype(int) % 2,  # diagonal stripes
        np.maximum(np.abs(u - 0.5), np.abs(v - 0.5)) > 0.42,  # panel with border
    ]
    base = np.array(
        [
            (170, 120, 70), (150, 100, 60), (120, 120, 130), (200, 190, 160),  # floors
            (210, 200, 180), (90, 140, 190), (180, 90, 80), (160, 60, 50),  # walls
            (60, 150, 80), (200, 170, 40), (110, 70, 150), (40, 40, 40),  # furniture
        ],
        dtype=np.float64,
    )
    assert len(patterns) == len(base) == N_TEXTURES
    bright = np.stack([base[i] * (0.55 + 0.45 * np.asarray(p, dtype=np.float64))[..., None] for i, p in enumerate(patterns)])
    atlas = np.clip(np.stack([bright, bright * SIDE_SHADE]), 0, 255).astype(np.uint32)
    return atlas[..., 0] | atlas[..., 1] << 8 | atlas[..., 2] << 16


def _bricks(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    row = (v * 8).astype(int)
    offset = (row % 2) * 0.125
    mortar = ((v * 8) % 1 < 0.12) | (((u + offset) * 4) % 1 < 0.06)
    return np.where(mortar, 0.2, 1.0)


@njit(cache=True)
def clearance_map(occupancy):
    """Per cell, the largest k such that every cell within k rows and k columns is free floor
    (0 for a cell that is not free or touches one that is not); lets rays jump across open space."""
    rows, cols = occupancy.shape
    inf = rows + cols
    dist = np.empty((rows, cols), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            dist[r, c] = 0 if occupancy[r, c] != 0 or r == 0 or c == 0 or r == rows - 1 or c == cols - 1 else inf
    for r in range(1, rows):  # chessboard distance transform, forward then backward pass
        for c in range(1, cols - 1):
            dist[r, c] = min(dist[r, c], dist[r - 1, c - 1] + 1, dist[r - 1, c] + 1, dist[r - 1, c + 1] + 1, dist[r, c - 1] + 1)
    for r in range(rows - 2, -1, -1):
        for c in range(cols - 2, 0, -1):
            dist[r, c] = min(dist[r, c], dist[r + 1, c + 1] + 1, dist[r + 1, c] + 1, dist[r + 1, c - 1] + 1, dist[r, c + 1] + 1)
    out = np.empty((rows, cols), dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            out[r, c] = min(max(dist[r, c] - 1, 0), 255)
    return out


def _floor_texel_centres(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """World x and z of the floor texel centres at FLOOR_TEXELS_PER_M, and the cell column / row of each."""
    rows, cols = scene.occupancy.shape
    xs = scene.origin[0] + (np.arange(round(cols * scene.cell_size * FLOOR_TEXELS_PER_M)) + 0.5) / FLOOR_TEXELS_PER_M
    zs = scene.origin[1] + (np.arange(round(rows * scene.cell_size * FLOOR_TEXELS_PER_M)) + 0.5) / FLOOR_TEXELS_PER_M
    cell_c = np.clip(((xs - scene.origin[0]) / scene.cell_size).astype(int), 0, cols - 1)
    cell_r = np.clip(((zs - scene.origin[1]) / scene.cell_size).astype(int), 0, rows - 1)
    return xs, zs, cell_c, cell_r


def floor_image(scene: Scene, atlas: np.ndarray) -> np.ndarray:
    """The whole floor, textured per room, at FLOOR_TEXELS_PER_M: (z texels, x texels) uint32.

    Baked once so a floor pixel costs one lookup instead of a cell lookup plus a texture lookup.
    """
    xs, zs, cell_c, cell_r = _floor_texel_centres(scene)
    texels = atlas.shape[2]
    tex_c = np.floor(xs * texels / TILE_M).astype(int) & (texels - 1)
    tex_r = np.floor(zs * texels / TILE_M).astype(int) & (texels - 1)
    ids = (scene.texture % N_TEXTURES)[cell_r[:, None], cell_c[None, :]]
    return np.ascontiguousarray(atlas[0][ids, tex_r[:, None], tex_c[None, :]])


def cell_classes(scene: Scene) -> np.ndarray:
    """(rows, cols) uint8 semantic class of every cell: its obstacle's class, DOOR_CLASS in doorways,
    0 on other free floor (the floor's class comes from `floor_classes`)."""
    classes = np.zeros(scene.shape, dtype=np.uint8)
    classes[scene.occupancy == WALL] = WALL_CLASS
    furniture = scene.occupancy == FURNITURE
    kinds = np.clip(scene.texture[furniture].astype(int) - FURNITURE_TEXTURES[0], 0, len(FURNITURE_TEXTURES) - 1)
    classes[furniture] = FIRST_FURNITURE_CLASS + kinds
    for r0, c0, r1, c1 in np.asarray(scene.doors, dtype=np.int64):
        classes[r0:r1, c0:c1] = DOOR_CLASS
    for index, kind in enumerate(np.asarray(scene.round_objects)[:, 3]):
        rows, cols = scene.round_object_cells(index)
        classes[rows, cols] = COLUMN_CLASS if kind == COLUMN else ROUND_TABLE_CLASS
    return classes


def floor_classes(scene: Scene, classes: np.ndarray) -> np.ndarray:
    """FLOOR_CLASS or DOOR_CLASS per floor texel, laid out as `floor_image`.

    :param classes: the scene's `cell_classes`.
    """
    _, _, cell_c, cell_r = _floor_texel_centres(scene)
    doorway = classes[cell_r[:, None], cell_c[None, :]] == DOOR_CLASS
    return np.where(doorway, DOOR_CLASS, FLOOR_CLASS).astype(np.uint8)


def round_object_ids(scene: Scene) -> np.ndarray:
    """(rows, cols) int32: 1 + the index of the round object touching each cell, 0 for none."""
    ids = np.zeros(scene.shape, dtype=np.int32)
    for index in range(len(scene.round_objects)):
        ids[scene.round_object_cells(index)] = index + 1
    return ids


@njit(cache=True, fastmath=True)
def _fill_labels(semantic, normals, curvature, i, first, last, cls, nx, ny, nz, bend):
    """Rows first..last of column i hit one surface: class cls, world normal (nx, ny, nz), curvature bend."""
    for j in range(first, last + 1):
        semantic[j, i] = cls
        normals[0, j, i] = nx
        normals[1, j, i] = ny
        normals[2, j, i] = nz
        curvature[j, i] = bend


@njit(cache=True, fastmath=True)
def _label_planes(semantic, normals, curvature, i, first, last, horizon, floor_class, floor_x, floor_z, floor_scale,
                  dir_x, dir_z, row_plane_depth):
    """Labels of the ceiling (rows above `horizon`) and the floor (doorway or not) in rows first..last."""
    size_z, size_x = floor_class.shape
    _fill_labels(semantic, normals, curvature, i, first, min(last, horizon - 1), CEILING_CLASS, 0.0, -1.0, 0.0, 0.0)
    for j in range(max(first, horizon), last + 1):
        t = row_plane_depth[j]
        fx = min(max(int(floor_x + t * dir_x * floor_scale), 0), size_x - 1)
        fz = min(max(int(floor_z + t * dir_z * floor_scale), 0), size_z - 1)
        _fill_labels(semantic, normals, curvature, i, j, j, floor_class[fz, fx], 0.0, 1.0, 0.0, 0.0)


@njit(cache=True, fastmath=True)
def _row_span(v_lo, v_hi, inv_tanv, half_h, height):
    """Image rows [first, last] whose pixel centres have v (up = positive) within [v_lo, v_hi]."""
    first = int(math.ceil((1.0 - v_hi * inv_tanv) * half_h - 0.5))
    last = int(math.floor((1.0 - v_lo * inv_tanv) * half_h - 0.5))
    return max(first, 0), min(last, height - 1)


@njit(cache=True, fastmath=True)
def _draw_planes(rgb, depth, i, first, last, horizon, floor_image, floor_x, floor_z, floor_scale,
                 dir_x, dir_z, row_plane_depth, max_depth, semantic, normals, curvature, floor_class):
    """Ceiling (rows above `horizon`) and the pre-textured floor image in rows first..last (and their labels)."""
    if semantic is not None:
        _label_planes(semantic, normals, curvature, i, first, last, horizon, floor_class, floor_x, floor_z, floor_scale,
                      dir_x, dir_z, row_plane_depth)
    size_z, size_x = floor_image.shape
    for j in range(first, min(last + 1, horizon)):
        depth[j, i] = min(row_plane_depth[j], max_depth)
        rgb[j, i] = CEILING_RGB
    for j in range(max(first, horizon), last + 1):
        t = row_plane_depth[j]
        depth[j, i] = min(t, max_depth)
        # truncation == floor here: negative values are clamped to 0 anyway
        fx = min(max(int(floor_x + t * dir_x * floor_scale), 0), size_x - 1)
        fz = min(max(int(floor_z + t * dir_z * floor_scale), 0), size_z - 1)
        rgb[j, i] = floor_image[fz, fx]


@njit(cache=True, fastmath=True)
def _draw_top(rgb, depth, i, first, last, top, tid, atlas, pos_x, pos_z, dir_x, dir_z, row_v, height_above, tex_scale,
              tex_mask, max_depth, semantic, normals, curvature, cls):
    """The flat top of an object (at height_above metres above the camera, negative) in rows first..last
    below `top`; returns the new top."""
    last = min(last, top - 1)
    for j in range(first, last + 1):
        tp = height_above / row_v[j]
        tx = int(math.floor((pos_x + tp * dir_x) * tex_scale)) & tex_mask
        tz = int(math.floor((pos_z + tp * dir_z) * tex_scale)) & tex_mask
        rgb[j, i] = atlas[0, tid, tz, tx]
        depth[j, i] = min(tp, max_depth)
    if semantic is not None:
        _fill_labels(semantic, normals, curvature, i, first, last, cls, 0.0, 1.0, 0.0, 0.0)
    return first if first <= last else top


@njit(cache=True, fastmath=True)
def _scaled_rgb(colour, factor):
    """Packed 0x00BBGGRR colour with every channel times factor (in [0, 1])."""
    red = np.uint32(int((colour & 255) * factor))
    green = np.uint32(int(((colour >> 8) & 255) * factor))
    blue = np.uint32(int(((colour >> 16) & 255) * factor))
    return red | green << 8 | blue << 16


@njit(cache=True, fastmath=True)
def _render_kernel(
    occupancy, texture, clearance, floor_image, origin_x, origin_z, cell, atlas, pos_x, pos_z, heading,
    col_u, row_v, inv_tanv, horizon, row_plane_depth, cam_h, wall_h, furn_h, max_depth,
    rgb, rgb_bytes, depth, rgb_out, depth_out,
    round_id, round_objects, cell_class, floor_class, semantic, normals, curvature,
):
    """Ray-cast one RGB-D frame into rgb_out (H, W, 3) and depth_out (H, W, 1), both C-contiguous.

    With label planes (None for none: numba then compiles a version without any label code, as fast
    as one that never had it), also the class, world normal and curvature of every pixel's hit into the scratch
    planes semantic (H, >= W), normals (3, H, >= W) and curvature (H, >= W); round_id, round_objects,
    cell_class and floor_class are the scene's `round_object_ids`, rows (x, z, radius, kind),
    `cell_classes` and `floor_classes`.

    Columns are drawn as packed 0x00BBGGRR pixels into the scratch rows rgb (H, >= W uint32, seen
    as bytes through rgb_bytes) and depth (H, >= W), whose row strides are an odd number of cache
    lines: writing columns straight into the output, whose stride is a power of two, would keep
    evicting its own cache lines. The rows are copied out at the end.

    Per column, objects are met front to back; each covers rows above everything met before
    (objects stand on the floor), so `top` (rows >= top are final) is all the state needed, and the
    rows between two objects are floor.
    """
    height, width = rgb_out.shape[0], rgb_out.shape[1]
    rows, cols = occupancy.shape
    tex_mask = atlas.shape[2] - 1
    tex_scale = atlas.shape[2] / TILE_M
    half_h = 0.5 * height
    inv_cell = 1.0 / cell
    fwd_x, fwd_z = -math.sin(heading), -math.cos(heading)
    right_x, right_z = math.cos(heading), -math.sin(heading)
    gx, gz = (pos_x - origin_x) * inv_cell, (pos_z - origin_z) * inv_cell
    floor_scale = float(FLOOR_TEXELS_PER_M)
    floor_x, floor_z = (pos_x - origin_x) * floor_scale, (pos_z - origin_z) * floor_scale
    for i in range(width):
        dir_x = fwd_x + col_u[i] * right_x
        dir_z = fwd_z + col_u[i] * right_z
        step_c = 1 if dir_x > 0 else -1
        step_r = 1 if dir_z > 0 else -1
        dt_c = abs(cell / dir_x) if dir_x != 0 else 1e30
        dt_r = abs(cell / dir_z) if dir_z != 0 else 1e30
        c, r = int(math.floor(gx)), int(math.floor(gz))
        t_c = ((c + 1 - gx) if dir_x > 0 else (gx - c)) * dt_c
        t_r = ((r + 1 - gz) if dir_z > 0 else (gz - r)) * dt_r
        top = height
        drawn = -1  # the round table this ray has drawn whole (side and top); its other cells are skipped
        while True:
            if 0 <= r < rows and 0 <= c < cols:
                k = clearance[r, c]
                if k >= 2:  # jump to the last cell of the free (2k+1)^2 box round this one
                    t_box_c = ((c + k + 1 - gx) if dir_x > 0 else (gx - (c - k))) * dt_c
                    t_box_r = ((r + k + 1 - gz) if dir_z > 0 else (gz - (r - k))) * dt_r
                    t_in = min(t_box_c, t_box_r) - 1e-3 * cell
                    c = int(math.floor(gx + t_in * dir_x * inv_cell))
                    r = int(math.floor(gz + t_in * dir_z * inv_cell))
                    t_c = ((c + 1 - gx) if dir_x > 0 else (gx - c)) * dt_c
                    t_r = ((r + 1 - gz) if dir_z > 0 else (gz - r)) * dt_r
            if t_c < t_r:
                t = t_c
                c += step_c
                t_c += dt_c
                crossed_z = False
            else:
                t = t_r
                r += step_r
                t_r += dt_r
                crossed_z = True
            if t > max_depth:
                break
            obj = -1
            if 0 <= r < rows and 0 <= c < cols:
                kind, tid = occupancy[r, c], texture[r, c]
                obj = round_id[r, c] - 1
            else:
                kind, tid = WALL, WALL_TEXTURES[0]
            if kind == 0 or (obj >= 0 and obj == drawn):
                continue
            if obj >= 0:
                # the circle's nearer hit, if it lies in this cell (the DDA reaches the cell that holds it)
                off_x, off_z = pos_x - round_objects[obj, 0], pos_z - round_objects[obj, 1]
                radius = round_objects[obj, 2]
                a = dir_x * dir_x + dir_z * dir_z
                b = off_x * dir_x + off_z * dir_z
                disc = b * b - a * (off_x * off_x + off_z * off_z - radius * radius)
                if disc < 0:
                    continue
                t_near, t_far = (-b - math.sqrt(disc)) / a, (-b + math.sqrt(disc)) / a
                if t_near > min(t_c, t_r) or t_near > max_depth:
                    continue
                is_column = round_objects[obj, 3] == COLUMN
                face_top = wall_h if is_column else furn_h
                # the side is drawn as a wall face below; the few shared lines stay inline: a helper
                # holding them kept _draw_planes from being inlined, 30% fewer frames per second
                first, last = _row_span(-cam_h / t_near, (face_top - cam_h) / t_near, inv_tanv, half_h, height)
                last = min(last, top - 1)
                _draw_planes(rgb, depth, i, last + 1, top - 1, horizon, floor_image, floor_x, floor_z, floor_scale,
                             dir_x, dir_z, row_plane_depth, max_depth, semantic, normals, curvature, floor_class)
                top = min(top, last + 1)
                if first <= last:
                    nx, nz = (off_x + t_near * dir_x) / radius, (off_z + t_near * dir_z) / radius
                    tu = int(math.floor((math.atan2(nz, nx) + math.pi) * radius * tex_scale)) & tex_mask
                    light = CYLINDER_AMBIENT + (1.0 - CYLINDER_AMBIENT) * max(-(nx * dir_x + nz * dir_z) / math.sqrt(a), 0.0)
                    tv_f = (face_top - cam_h - row_v[first] * t_near) * tex_scale
                    tv_step = (row_v[0] - row_v[1]) * t_near * tex_scale if height > 1 else 0.0
                    for j in range(first, last + 1):
                        rgb[j, i] = _scaled_rgb(atlas[0, tid, int(tv_f) & tex_mask, tu], light)
                        depth[j, i] = t_near
                        tv_f += tv_step
                    if semantic is not None:
                        _fill_labels(semantic, normals, curvature, i, first, last, cell_class[r, c], nx, 0.0, nz,
                                     1.0 / radius)
                    top = first
                if is_column:
                    break
                # the table's round top, seen from above between the near and the far side of its circle
                first, last = _row_span((furn_h - cam_h) / t_near, (furn_h - cam_h) / t_far, inv_tanv, half_h, height)
                top = _draw_top(rgb, depth, i, first, last, top, tid, atlas, pos_x, pos_z, dir_x, dir_z, row_v,
                                furn_h - cam_h, tex_scale, tex_mask, max_depth, semantic, normals, curvature,
                                cell_class[r, c])
                drawn = obj
                continue
            face_top = wall_h if kind == WALL else furn_h
            first, last = _row_span(-cam_h / t, (face_top - cam_h) / t, inv_tanv, half_h, height)
            last = min(last, top - 1)
            _draw_planes(rgb, depth, i, last + 1, top - 1, horizon, floor_image, floor_x, floor_z, floor_scale,
                         dir_x, dir_z, row_plane_depth, max_depth, semantic, normals, curvature, floor_class)
            top = min(top, last + 1)
            if first <= last:
                along = pos_x + t * dir_x if crossed_z else pos_z + t * dir_z
                tu = int(math.floor(along * tex_scale)) & tex_mask
                shade = 1 if crossed_z or kind == FURNITURE else 0
                # texel row from the top of the face, >= 0, growing by a fixed step per image row
                tv_f = (face_top - cam_h - row_v[first] * t) * tex_scale
                tv_step = (row_v[0] - row_v[1]) * t * tex_scale if height > 1 else 0.0
                for j in range(first, last + 1):
                    rgb[j, i] = atlas[shade, tid, int(tv_f) & tex_mask, tu]
                    depth[j, i] = t
                    tv_f += tv_step
                if semantic is not None:
                    # a face seen from a doorway is the door's jamb; normals point back along the crossed axis
                    from_r, from_c = (r - step_r, c) if crossed_z else (r, c - step_c)
                    inside = 0 <= from_r < rows and 0 <= from_c < cols
                    cls = WALL_CLASS if not (0 <= r < rows and 0 <= c < cols) else cell_class[r, c]
                    if inside and cell_class[from_r, from_c] == DOOR_CLASS:
                        cls = DOOR_CLASS
                    nx, nz = (0.0, -float(step_r)) if crossed_z else (-float(step_c), 0.0)
                    _fill_labels(semantic, normals, curvature, i, first, last, cls, nx, 0.0, nz, 0.0)
                top = first
            if kind == WALL:
                break
            # furniture top, seen from above between this cell's entry and exit
            first, last = _row_span((furn_h - cam_h) / t, (furn_h - cam_h) / min(t_c, t_r), inv_tanv, half_h, height)
            top = _draw_top(rgb, depth, i, first, last, top, tid, atlas, pos_x, pos_z, dir_x, dir_z, row_v,
                            furn_h - cam_h, tex_scale, tex_mask, max_depth, semantic, normals, curvature,
                            cell_class[r, c])
        _draw_planes(rgb, depth, i, 0, top - 1, horizon, floor_image, floor_x, floor_z, floor_scale,
                     dir_x, dir_z, row_plane_depth, max_depth, semantic, normals, curvature, floor_class)
    rgb_rows = rgb_out.reshape(height, width * 3)
    depth_rows = depth_out.reshape(height, width)
    for j in range(height):
        for i in range(width):
            for k in range(3):
                rgb_rows[j, 3 * i + k] = rgb_bytes[j, 4 * i + k]
        for i in range(width):
            depth_rows[j, i] = depth[j, i]


def _odd_cache_lines(row_bytes: int) -> int:
    """Smallest odd number of 64-byte cache lines holding row_bytes."""
    lines = -(-row_bytes // 64)
    return lines if lines % 2 else lines + 1


@dataclass
class SurfaceLabels:
    """What each pixel's ray hit, from the same pass as the frame's RGB-D.

    :param semantic: (H, W) uint8 index into SEMANTIC_CLASSES (never 0: mask far pixels by depth).
    :param normal: (H, W, 3) float32 unit surface normal in world axes (x, z floor plane, y up), facing the camera.
    :param curvature: (H, W) float32 larger principal curvature in 1/m: 1/radius on a column's or round
        table's side, 0 on every plane; the smaller one is 0 everywhere (vertical cylinders and planes).
    """

    semantic: np.ndarray
    normal: np.ndarray
    curvature: np.ndarray


class RGBDRenderer:
    """Pinhole RGB-D camera at the agent's position, looking along its heading.

    :param scene: scene to render.
    :param width: image width in pixels.
    :param height: image height in pixels.
    :param hfov_deg: horizontal field of view; the vertical one follows from the aspect ratio.
    :param camera_height: metres above the floor.
    :param max_depth: depth is clipped to this many metres.
    :param wall_height: metres; also the ceiling height.
    """

    def __init__(
        self,
        scene: Scene,
        *,
        width: int = 128,
        height: int = 128,
        hfov_deg: float = 90.0,
        camera_height: float = 1.25,
        max_depth: float = 10.0,
        wall_height: float = WALL_HEIGHT_M,
    ):
        if not (0 < camera_height < wall_height):
            raise ConfigError(f"camera_height {camera_height} must lie between 0 and wall_height {wall_height}")
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.camera_height, self.max_depth, self.wall_height = float(camera_height), float(max_depth), float(wall_height)
        self._occupancy = np.ascontiguousarray(scene.occupancy)
        self._texture = np.ascontiguousarray(scene.texture % N_TEXTURES).astype(np.uint8)
        self._atlas = texture_atlas()
        self._clearance = clearance_map(self._occupancy)
        self._floor = floor_image(scene, self._atlas)
        self._round_id = round_object_ids(scene)
        self._round_objects = np.ascontiguousarray(np.asarray(scene.round_objects, dtype=np.float64).reshape(-1, 4))
        self._cell_class = cell_classes(scene)
        self._floor_class = floor_classes(scene, self._cell_class)
        tanh = math.tan(math.radians(hfov_deg) / 2.0)
        tanv = tanh * self.height / self.width
        self._col_u = ((2.0 * (np.arange(self.width) + 0.5) / self.width - 1.0) * tanh).astype(np.float64)
        self._row_v = ((1.0 - 2.0 * (np.arange(self.height) + 0.5) / self.height) * tanv).astype(np.float64)
        with np.errstate(divide="ignore"):
            plane_depth = np.where(
                self._row_v < 0, -self.camera_height / self._row_v, (self.wall_height - self.camera_height) / self._row_v
            )
        self._row_plane_depth = np.where(np.isfinite(plane_depth), plane_depth, self.max_depth)
        self._inv_tanv = 1.0 / tanv
        self._horizon = int(np.count_nonzero(self._row_v >= 0))
        padded = 16 * _odd_cache_lines(4 * self.width)
        self._rgb_rows = np.empty((self.height, padded), dtype=np.uint32)
        self._rgb_bytes = self._rgb_rows.view(np.uint8)
        self._depth_rows = np.empty((self.height, padded), dtype=np.float32)
        self._label_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # made by the first render_labels

    def render(self, position, heading: float) -> tuple[np.ndarray, np.ndarray]:
        """Render a new frame: rgb (H, W, 3) uint8 and depth (H, W, 1) float32 metres.

        :param position: camera ground position [x, y, z] (y ignored; camera_height is used).
        :param heading: radians about +y; the camera looks along (-sin, 0, -cos).
        """
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        depth = np.empty((self.height, self.width, 1), dtype=np.float32)
        self.render_into(position, heading, rgb, depth)
        return rgb, depth

    def render_labels(self, position, heading: float) -> tuple[np.ndarray, np.ndarray, "SurfaceLabels"]:
        """Render a new frame and what each pixel's ray hit: rgb, depth (as `render`) and its labels.

        :param position: camera ground position [x, y, z] (y ignored; camera_height is used).
        :param heading: radians about +y; the camera looks along (-sin, 0, -cos).
        """
        if self._label_rows is None:
            shape = self._depth_rows.shape
            self._label_rows = (np.zeros(shape, np.uint8), np.zeros((3, *shape), np.float32), np.zeros(shape, np.float32))
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        depth = np.empty((self.height, self.width, 1), dtype=np.float32)
        self._render(position, heading, rgb, depth, self._label_rows)
        semantic, normal, curvature = self._label_rows
        width = self.width
        labels = SurfaceLabels(
            semantic=semantic[:, :width].copy(),
            normal=np.ascontiguousarray(normal[:, :, :width].transpose(1, 2, 0)),
            curvature=curvature[:, :width].copy(),
        )
        return rgb, depth, labels

    def ray_directions(self, heading: float) -> np.ndarray:
        """(H, W, 3) world direction of every pixel's ray, scaled to unit length along the camera axis
        (a pixel's hit point is camera + depth * direction)."""
        forward = np.array([-math.sin(heading), 0.0, -math.cos(heading)])
        right = np.array([math.cos(heading), 0.0, -math.sin(heading)])
        up = np.array([0.0, 1.0, 0.0])
        return (forward + self._col_u[None, :, None] * right + self._row_v[:, None, None] * up).astype(np.float32)

    def render_into(self, position, heading: float, rgb_out: np.ndarray, depth_out: np.ndarray) -> None:
        """Render into preallocated C-contiguous arrays (H, W, 3) uint8 and (H, W, 1) float32."""
        if not (rgb_out.flags.c_contiguous and depth_out.flags.c_contiguous):
            raise ValueError("render_into needs C-contiguous rgb_out and depth_out arrays")
        if rgb_out.shape != (self.height, self.width, 3) or depth_out.shape != (self.height, self.width, 1):
            raise ValueError(
                f"render_into needs rgb_out {(self.height, self.width, 3)} and depth_out {(self.height, self.width, 1)},"
                f" got {rgb_out.shape} and {depth_out.shape}"
            )
        self._render(position, heading, rgb_out, depth_out, (None, None, None))

    def _render(self, position, heading: float, rgb_out: np.ndarray, depth_out: np.ndarray, label_rows: tuple) -> None:
        _render_kernel(
            self._occupancy, self._texture, self._clearance, self._floor, float(self.scene.origin[0]), float(self.scene.origin[1]),
            float(self.scene.cell_size), self._atlas, float(position[0]), float(position[2]), float(heading),
            self._col_u, self._row_v, self._inv_tanv, self._horizon, self._row_plane_depth, self.camera_height, self.wall_height,
            FURNITURE_HEIGHT_M, self.max_depth, self._rgb_rows, self._rgb_bytes, self._depth_rows, rgb_out, depth_out,
            self._round_id, self._round_objects, self._cell_class, self._floor_class, *label_rows,
        )


_MAP_COLOURS = np.array([(235, 235, 235), (40, 40, 40), (150, 110, 70)], dtype=np.uint8)


def topdown_map(scene: Scene, *, path=None, agent=None, goal=None, scale: int = 2) -> np.ndarray:
    """(rows * scale, cols * scale, 3) uint8 top view: free floor light, walls dark, furniture brown.

    Image rows follow +z, columns +x.

    :param scene: scene to draw.
    :param path: optional sequence of world points [x, y, z], drawn as a blue polyline.
    :param agent: optional (position, heading): a red disc with a line along the heading.
    :param goal: optional world point, drawn as a green disc.
    :param scale: pixels per cell side.
    """
    image = np.repeat(np.repeat(_MAP_COLOURS[scene.occupancy], scale, axis=0), scale, axis=1)

    def pixel(point) -> tuple[float, float]:
        return (
            (float(point[2]) - scene.origin[1]) / scene.cell_size * scale,
            (float(point[0]) - scene.origin[0]) / scene.cell_size * scale,
        )

    def line(p, q, colour) -> None:
        (r0, c0), (r1, c1) = p, q
        n = int(max(abs(r1 - r0), abs(c1 - c0))) + 2
        rr = np.clip(np.round(np.linspace(r0, r1, n)).astype(int), 0, image.shape[0] - 1)
        cc = np.clip(np.round(np.linspace(c0, c1, n)).astype(int), 0, image.shape[1] - 1)
        image[rr, cc] = colour

    def disc(centre, radius, colour) -> None:
        rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
        image[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2] = colour

    radius = max(2.0, 0.15 / scene.cell_size * scale)
    if path is not None:
        for p, q in zip(path, path[1:]):
            line(pixel(p), pixel(q), (30, 80, 220))
    if goal is not None:
        disc(pixel(goal), radius, (30, 180, 60))
    if agent is not None:
        position, heading = agent
        centre = pixel(position)
        disc(centre, radius, (220, 40, 40))
        tip = (centre[0] - 2.5 * radius * math.cos(heading), centre[1] - 2.5 * radius * math.sin(heading))
        line(centre, tip, (220, 40, 40))
    return image

