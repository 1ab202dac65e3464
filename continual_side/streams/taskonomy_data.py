"""Read Taskonomy-layout data: the real release, or a mini-Taskonomy rendered in the same layout.

On-disk layout, per building (each building's tar of the real release unpacked into its folder)::

    <root>/<building>/<folder>/point_<p>_view_<v>_domain_<folder>.png   (.npy for class_object)

where ``<folder>`` is the domain's folder name (``principal_curvature`` for the curvature task in the
real release; a plain ``curvature`` folder is read too, as the side-tuning reference names it). The
side-tuning reference's data tree, ``<root>/<folder>/<building>/point_...``, is read too: a root that
holds domain folders is taken to be in that layout (:func:`is_domain_first`). An optional
``<root>/manifest.json`` of the form ``{"files": {"<path relative to root>": "<sha256>"}}`` lets
:class:`TaskonomyViews` verify every file it reads.

Decoding, per domain (what the real release stores, and the tensor this module returns):

- ``depth_zbuffer``, ``depth_euclidean``: 16-bit grey, 1/512 m per unit, 65535 = no depth. Returned in
  metres (1, H, W) with a validity mask (invalid pixels hold 0).
- ``normal``: 8-bit RGB, each component mapped [-1, 1] -> [0, 255]. Returned as unit vectors
  (3, H, W); pixels whose decoded vector is shorter than 0.5 (the (127|128, 127|128, 127|128) grey
  written where there is no surface) are invalid: mask False, vector 0.
- ``curvature``: 8-bit, first two channels are the two principal curvatures centred at 128. Returned as
  ``(v - 128) / 127`` (2, H, W): 128 is exactly 0, 1 and 255 are -1 and +1. The real release does not
  document the curvature unit, so these are encoded units, not 1/m; the reference implementation uses
  ``(v - 127.5) / 127.5``, which differs by less than one quantisation step. A third channel is ignored.
- ``reshading``: 8-bit grey (first channel if stored as RGB) scaled to [0, 1], (1, H, W).
- ``keypoints2d``, ``keypoints3d``, ``edge_texture``, ``edge_occlusion``: 16-bit grey scaled by 1/65535 to
  [0, 1], (1, H, W), as the side-tuning and omnidata loaders do before their own rescaling (the
  side-tuning reference then maps to [-1, 1]; omnidata further divides edge_texture by 0.08). Plain
  [0, 1] keeps the stored quantity proportional and leaves any rescaling to the model.
- ``segment_semantic``: 8-bit class indices (first channel if stored as RGB), int64 (H, W). Index 0 is
  *unlabelled* (``dense_losses.SEGMENT_UNLABELLED``, ignored by the loss): omnidata masks label 0; the
  side-tuning reference trains 18 logits over labels 0..17. That 0 means "no label" in the real release
  is our reading of those loaders, not a documented fact. A rendered set must write 0 where no class.
- ``class_object``: ``.npy`` of one score per class (1000 ImageNet classes in the real release). Returned
  as a float32 distribution summing to 1: a file that already is one (non-negative, sum within 1e-2 of
  1) is renormalised, anything else is taken as logits and soft-maxed (the original Taskonomy code
  stored logits and soft-maxed them on load; whether the public release stores probabilities or logits
  is not documented, hence the check).
- ``rgb``: 8-bit RGB. The network input is normalised (ImageNet mean/std by default); as a target
  (autoencoding) it is returned in [0, 1], (3, H, W).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.functional import InterpolationMode, resize

from continual_side.errors import ConfigError, DataRootError
from continual_side.hub import file_sha256
from continual_side.streams.transforms import normalise

DEPTH_UNITS_PER_METRE = 512.0
DEPTH_INVALID = 65535
UINT16_MAX = 65535.0
MANIFEST_NAME = "manifest.json"
LAYOUT = "<root>/<building>/<folder>/point_<p>_view_<v>_domain_<folder>.png|.npy (or <root>/<folder>/<building>/...)"
_MIN_NORMAL_LENGTH = 0.5  # decoded normals shorter than this are the "no surface" grey
_DISTRIBUTION_TOLERANCE = 1e-2  # wide enough for float16 files; real logits are never all >= 0 summing to 1
_MASK_FULL = 1.0 - 1e-4  # a resized mask pixel is valid only where every source pixel under it was
_LISTED = 3  # missing items named in an error message; the rest are counted
DEFAULT_SET_POINTER = Path("~/.cache/continual_side/taskonomy/default.json")
"""Written by ``continual-side taskonomy render`` when it renders (or finds) the default set: ``{"root": ...}``."""

Decoded = tuple[torch.Tensor, torch.Tensor | None]
Resize = Literal["bilinear", "nearest", "none"]


@dataclass(frozen=True)
class DomainFormat:
    """How one domain is stored and decoded.

    :param folders: folder names to look for in a building, the real release's first; the file name
        carries the same name (``..._domain_<folder>.<suffix>``).
    :param suffix: file extension, with the dot.
    :param decode: file -> (target, validity mask or None).
    :param resize: "bilinear" for continuous images, "nearest" for class indices, "none" for per-image data.
    """

    folders: tuple[str, ...]
    suffix: str
    decode: Callable[[Path], Decoded]
    resize: Resize


class ViewKey(NamedTuple):
    """One camera view: its building, point and view numbers."""

    building: str
    point: int
    view: int


@dataclass(frozen=True)
class BuildingSplit:
    """Disjoint building lists for training, validation and testing.

    :param train: buildings to train on.
    :param val: buildings to select hyper-parameters on.
    :param test: buildings to report on.
    :raises ConfigError: a building in two lists, or no training building.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        pairs = (("train", self.train, "val", self.val), ("train", self.train, "test", self.test),
                 ("val", self.val, "test", self.test))
        for name_a, a, name_b, b in pairs:
            shared = sorted(set(a) & set(b))
            if shared:
                raise ConfigError(f"buildings {shared} are in both the {name_a} and {name_b} splits; "
                                  "give each building to one split only")
        if not self.train:
            raise ConfigError("the train split has no building; give it at least one")


def split_buildings(buildings: Sequence[str], *, val_fraction: float = 0.15,
                    test_fraction: float = 0.15) -> BuildingSplit:
    """Split buildings deterministically, at least one each for val and test.

    Buildings are ordered by the sha256 of their name (so the split depends on the names only, not on
    their listing order, and does not follow name order such as the renderer's building numbers); the
    first ``max(1, round(test_fraction * n))`` go to test, the next ``max(1, round(val_fraction * n))``
    to val, the rest to train. Each list is returned sorted by name.

    :param buildings: building names, e.g. from :func:`find_buildings`.
    :param val_fraction: share of buildings for validation.
    :param test_fraction: share of buildings for testing.
    :raises ConfigError: fewer than 3 distinct buildings, or fractions that leave no training building.
    """
    names = sorted(set(buildings), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    n_test = max(1, round(test_fraction * len(names)))
    n_val = max(1, round(val_fraction * len(names)))
    if len(names) - n_test - n_val < 1:
        raise ConfigError(
            f"cannot split {len(names)} buildings into train/val/test with val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}; use at least 3 buildings or smaller fractions"
        )
    test, val, train = names[:n_test], names[n_test : n_test + n_val], names[n_test + n_val :]
    return BuildingSplit(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)))


def default_root() -> Path:
    """The built-in mini-Taskonomy's folder, once ``continual-side taskonomy render`` has made it.

    :raises DataRootError: not rendered yet (with the command that renders it).
    """
    pointer = DEFAULT_SET_POINTER.expanduser()
    root = Path(json.loads(pointer.read_text())["root"]) if pointer.is_file() else None
    if root is None or not (root / MANIFEST_NAME).is_file():
        raise DataRootError(
            "the built-in mini-Taskonomy is not rendered yet: run `continual-side taskonomy render` once "
            "(offline, about a minute on 2 cores), or give the root of a Taskonomy-layout set with --data-root"
        )
    return root


def _subfolders(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def is_domain_first(root: Path) -> bool:
    """Whether ``root`` holds domain folders (``<root>/<folder>/<building>/``, the side-tuning reference's
    data tree) rather than building folders (``<root>/<building>/<folder>/``, the layout of this module).
    """
    return bool(_subfolders(root) & _FOLDER_NAMES)


def _domain_dir(root: Path, building: str, folder_name: str, domain_first: bool) -> Path:
    return root / folder_name / building if domain_first else root / building / folder_name


def find_buildings(root: str | Path) -> list[str]:
    """Names of the buildings under ``root``, sorted, in either layout (see :func:`is_domain_first`).

    :raises DataRootError: ``root`` is not a folder or holds no building folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataRootError(f"{root}: no such directory; expected Taskonomy data laid out as {LAYOUT} - "
                            "check the data root path")
    if is_domain_first(root):
        found = sorted(set().union(*(_subfolders(root / name) for name in _subfolders(root) & _FOLDER_NAMES)))
    else:
        found = sorted(_subfolders(root))
    if not found:
        raise DataRootError(f"{root}: no building folders; expected Taskonomy data laid out as {LAYOUT}")
    return found


def _open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError):
        raise DataRootError(f"{path}: not a readable PNG image; replace or delete the file") from None
    return image


def _pixels_16bit(path: Path) -> np.ndarray:
    """(H, W) float32 raw 16-bit values."""
    image = _open_image(path)
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise DataRootError(f"{path}: expected a 16-bit greyscale PNG (mode I;16), got mode {image.mode}; "
                            "this domain must be stored with 16 bits per pixel")
    return np.asarray(image).astype(np.float32)


def _pixels_8bit(path: Path, channels: int) -> np.ndarray:
    """(H, W, channels) uint8: the first ``channels`` channels of an 8-bit PNG."""
    image = _open_image(path)
    if image.mode not in ("L", "P", "LA", "RGB", "RGBA"):
        raise DataRootError(f"{path}: expected an 8-bit PNG, got mode {image.mode}; "
                            "this domain must be stored with 8 bits per channel")
    pixels = np.array(image)  # a writable copy, as torch.from_numpy needs
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] < channels:
        raise DataRootError(f"{path}: has {pixels.shape[2]} channel(s), this domain needs {channels}; "
                            "replace the file with one in the Taskonomy format")
    return pixels[:, :, :channels]


def _channels_first(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def decode_depth(path: Path) -> Decoded:
    """Depth in metres (1, H, W) and its validity mask (1, H, W): 16-bit, 1/512 m, 65535 = invalid."""
    raw = torch.from_numpy(_pixels_16bit(path))[None]
    valid = raw != DEPTH_INVALID
    return torch.where(valid, raw / DEPTH_UNITS_PER_METRE, 0.0), valid


def decode_unit_interval_16bit(path: Path) -> Decoded:
    """A 16-bit grey image (keypoints, edges) scaled by 1/65535 to [0, 1], (1, H, W); no mask."""
    return torch.from_numpy(_pixels_16bit(path))[None] / UINT16_MAX, None


def decode_normal(path: Path) -> Decoded:
    """Unit normals (3, H, W) from 8-bit RGB ([-1, 1] -> [0, 255]) and a mask of pixels with a surface."""
    vectors = _channels_first(_pixels_8bit(path, 3)).float() / 255.0 * 2.0 - 1.0
    length = vectors.norm(dim=0, keepdim=True)
    valid = length >= _MIN_NORMAL_LENGTH
    return torch.where(valid, vectors / length.clamp_min(_MIN_NORMAL_LENGTH), 0.0), valid


def decode_curvature(path: Path) -> Decoded:
    """The two principal curvatures (2, H, W) as ``(v - 128) / 127`` of the first two 8-bit channels."""
    return (_channels_first(_pixels_8bit(path, 2)).float() - 128.0) / 127.0, None


def decode_unit_interval_8bit(path: Path) -> Decoded:
    """The first channel of an 8-bit image (reshading) scaled to [0, 1], (1, H, W)."""
    return _channels_first(_pixels_8bit(path, 1)).float() / 255.0, None


def decode_rgb(path: Path) -> torch.Tensor:
    """uint8 RGB (3, H, W)."""
    return _channels_first(_pixels_8bit(path, 3))


def decode_segmentation(path: Path) -> Decoded:
    """Class indices int64 (H, W) from the first 8-bit channel; 0 is unlabelled."""
    return torch.from_numpy(_pixels_8bit(path, 1)[:, :, 0].astype(np.int64)), None


def decode_class_distribution(path: Path) -> Decoded:
    """A class distribution (K,) float32 summing to 1, from stored probabilities or logits."""
    try:
        scores = np.load(path, allow_pickle=False).astype(np.float64).reshape(-1)
    except (OSError, ValueError):
        raise DataRootError(f"{path}: not a readable .npy array of class scores; replace or delete the file") from None
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise DataRootError(f"{path}: class scores must be a non-empty array of finite numbers; replace the file")
    is_distribution = scores.min() >= 0.0 and abs(scores.sum() - 1.0) <= _DISTRIBUTION_TOLERANCE
    if is_distribution:
        distribution = scores / scores.sum()
    else:
        shifted = np.exp(scores - scores.max())
        distribution = shifted / shifted.sum()
    return torch.from_numpy(distribution.astype(np.float32)), None


def _rgb_as_target(path: Path) -> Decoded:
    return decode_rgb(path).float() / 255.0, None


DOMAIN_FORMATS: dict[str, DomainFormat] = {
    "curvature": DomainFormat(("principal_curvature", "curvature"), ".png", decode_curvature, "bilinear"),
    "segment_semantic": DomainFormat(("segment_semantic",), ".png", decode_segmentation, "nearest"),
    "reshading": DomainFormat(("reshading",), ".png", decode_unit_interval_8bit, "bilinear"),
    "keypoints3d": DomainFormat(("keypoints3d",), ".png", decode_unit_interval_16bit, "bilinear"),
    "keypoints2d": DomainFormat(("keypoints2d",), ".png", decode_unit_interval_16bit, "bilinear"),
    "edge_texture": DomainFormat(("edge_texture",), ".png", decode_unit_interval_16bit, "bilinear"),
    "edge_occlusion": DomainFormat(("edge_occlusion",), ".png", decode_unit_interval_16bit, "bilinear"),
    "depth_zbuffer": DomainFormat(("depth_zbuffer",), ".png", decode_depth, "bilinear"),
    "depth_euclidean": DomainFormat(("depth_euclidean",), ".png", decode_depth, "bilinear"),
    "normal": DomainFormat(("normal",), ".png", decode_normal, "bilinear"),
    "class_object": DomainFormat(("class_object",), ".npy", decode_class_distribution, "none"),
    "rgb": DomainFormat(("rgb",), ".png", _rgb_as_target, "bilinear"),
}
"""Every iTaskonomy domain by its task name."""

_FOLDER_NAMES = {name for fmt in DOMAIN_FORMATS.values() for name in fmt.folders}

CONTINUOUS_DOMAINS = tuple(name for name, fmt in DOMAIN_FORMATS.items() if fmt.resize == "bilinear")
"""Pixel-regression domains: the ones the reference implementation masks where depth is invalid."""


def domain_file_name(folder: str, suffix: str, point: int, view: int) -> str:
    """The file name of one view in a domain folder, e.g. ``point_3_view_0_domain_normal.png``."""
    return f"point_{point}_view_{view}_domain_{folder}{suffix}"


def _resize_continuous(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Valid only where every source pixel under the bilinear filter was valid.

    Stricter than nearest-neighbour on purpose: a resized target pixel never mixes in an invalid one.
    """
    return _resize_continuous(mask.float(), size) >= _MASK_FULL


def _resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(labels[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _listing(groups: Sequence[tuple[str, Sequence[str]]]) -> str:
    """``"label: a, b, c and 4 more; label: d"`` for the groups with items; "" when none has any."""
    return "; ".join(f"{label}: {_names(items)}" for label, items in groups if items)


class TaskonomyViews(Dataset):
    """The views of some buildings with the targets of some domains, decoded from files on each access.

    Views are those found in any of the domain folders read (rgb and the requested domains); every one
    of them must exist in every domain, otherwise the constructor raises one :class:`DataRootError`
    naming the missing buildings, domain folders and files. An item is ``(rgb, targets)``: ``rgb`` the
    normalised input (3, H, W), ``targets`` a dict ``{domain: target}`` plus ``{domain + "_mask": bool
    (1, H, W)}`` for the domains with a validity mask (depth, normal; every continuous domain with
    ``mask_with_depth``). Views are ordered by building, point and view.

    :param root: the data root (see the module docstring for the layout).
    :param buildings: building folders to read, e.g. one list of a :class:`BuildingSplit`.
    :param domains: target domains, keys of :data:`DOMAIN_FORMATS` (rgb is always read as the input).
    :param image_size: resize everything to (height, width) or to a square side; None keeps the files'
        size (then all domains of a view must have the rgb's size). Continuous images are resized
        bilinearly with antialiasing, class indices by nearest neighbour, and masks keep only pixels
        whose whole filter footprint was valid.
    :param mask_with_depth: also mask every continuous domain where depth_zbuffer is invalid, as the
        side-tuning reference does for all its pixel losses (depth_zbuffer must then exist for every view).
    :param input_scaling: "imagenet" (mean/std, as every stream of this suite) or "minus_one_to_one"
        (``x / 127.5 - 1``, what the original Taskonomy encoders were trained on).
    :param verify_checksums: check every file against ``<root>/manifest.json`` before reading it.
    :raises ConfigError: unknown domains, no buildings, or a bad image_size / input_scaling.
    :raises DataRootError: missing or unreadable data, files differing from the manifest.
    """

    def __init__(
        self,
        root: str | Path,
        buildings: Sequence[str],
        domains: Sequence[str],
        *,
        image_size: int | tuple[int, int] | None = None,
        mask_with_depth: bool = False,
        input_scaling: Literal["imagenet", "minus_one_to_one"] = "imagenet",
        verify_checksums: bool = False,
    ) -> None:
        unknown = [d for d in domains if d not in DOMAIN_FORMATS]
        if unknown:
            raise ConfigError(f"unknown Taskonomy domains {unknown}; choose from {list(DOMAIN_FORMATS)}")
        if not buildings:
            raise ConfigError("no buildings given; pass at least one building folder name")
        if input_scaling not in ("imagenet", "minus_one_to_one"):
            raise ConfigError(f"input_scaling={input_scaling!r}; use 'imagenet' or 'minus_one_to_one'")
        self.root = Path(root)
        self.domains = list(dict.fromkeys(domains))
        self.image_size = _size_pair(image_size)
        self.mask_with_depth = mask_with_depth
        self.input_scaling = input_scaling
        read = ["rgb", *self.domains] + (["depth_zbuffer"] if mask_with_depth else [])
        self._read = list(dict.fromkeys(read))
        self.files = self._index(list(dict.fromkeys(buildings)))
        self.views = sorted(self.files)
        if verify_checksums:
            verify_manifest(self.root, [path for files in self.files.values() for path in files.values()])

    def _index(self, buildings: list[str]) -> dict[ViewKey, dict[str, Path]]:
        """Every view's file per domain; raises one DataRootError listing whatever is missing."""
        found = find_buildings(self.root)
        domain_first = is_domain_first(self.root)
        missing_buildings = [b for b in buildings if b not in found]
        missing_folders: list[str] = []
        missing_files: list[str] = []
        files: dict[ViewKey, dict[str, Path]] = {}
        for building in (b for b in buildings if b in found):
            per_domain = {}
            for domain in self._read:
                listed = _list_domain(self.root, building, DOMAIN_FORMATS[domain], domain_first)
                if listed is None:
                    expected = _domain_dir(Path(), building, DOMAIN_FORMATS[domain].folders[0], domain_first)
                    missing_folders.append(expected.as_posix())
                else:
                    per_domain[domain] = listed
            views = sorted({key for _, by_view in per_domain.values() for key in by_view})
            for point, view in views:
                key = ViewKey(building, point, view)
                files[key] = {}
                for domain, (folder, by_view) in per_domain.items():
                    if (point, view) in by_view:
                        files[key][domain] = by_view[point, view]
                    else:
                        name = domain_file_name(folder.name, DOMAIN_FORMATS[domain].suffix, point, view)
                        missing_files.append((folder / name).relative_to(self.root).as_posix())
        problems = _listing([
            ("buildings not found", missing_buildings),
            ("buildings found", found if missing_buildings else []),
            ("domain folders missing", missing_folders),
            (f"{len(missing_files)} view files missing", missing_files),
        ])
        if problems:
            raise DataRootError(
                f"{self.root}: incomplete Taskonomy data for domains {self._read}: {problems} - "
                f"download or render the missing data (layout {LAYOUT}), or choose other buildings or domains"
            )
        if not files:
            raise DataRootError(f"{self.root}: no views in buildings {_names(buildings)}; expected files laid "
                                f"out as {LAYOUT}")
        return files

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        paths = self.files[self.views[index]]
        rgb = decode_rgb(paths["rgb"])
        if self.image_size is not None:
            rgb = resize(rgb, list(self.image_size), InterpolationMode.BILINEAR, antialias=True)
        size = (rgb.shape[1], rgb.shape[2])
        decoded = {domain: self._decoded(domain, paths, size) for domain in self._read if domain != "rgb"}
        decoded["rgb"] = (rgb.float() / 255.0, None)
        depth_valid = decoded["depth_zbuffer"][1] if self.mask_with_depth else None
        targets: dict[str, torch.Tensor] = {}
        for domain in self.domains:
            target, mask = decoded[domain]
            if depth_valid is not None and domain in CONTINUOUS_DOMAINS:
                mask = depth_valid if mask is None else mask & depth_valid
            targets[domain] = target
            if mask is not None:
                targets[domain + "_mask"] = mask
        if self.input_scaling == "imagenet":
            return normalise(rgb), targets
        return rgb.float() / 127.5 - 1.0, targets

    def _decoded(self, domain: str, paths: dict[str, Path], size: tuple[int, int]) -> Decoded:
        """One domain's target and mask at ``size``."""
        fmt = DOMAIN_FORMATS[domain]
        target, mask = fmt.decode(paths[domain])
        if fmt.resize == "none" or tuple(target.shape[-2:]) == size:
            return target, mask
        if self.image_size is None:
            raise DataRootError(
                f"{paths[domain]}: size {tuple(target.shape[-2:])} differs from the rgb's {size}; "
                "pass image_size to resize every domain to one size"
            )
        if fmt.resize == "nearest":
            return _resize_labels(target, size), None
        target = _resize_continuous(target, size)
        if mask is None:
            return target, None
        mask = _resize_mask(mask, size)
        if domain == "normal":
            target = target / target.norm(dim=0, keepdim=True).clamp_min(1e-6)
        return torch.where(mask, target, 0.0), mask


def _size_pair(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(pair) != 2 or min(pair) < 1:
        raise ConfigError(f"image_size={image_size}; use a positive side or a (height, width) pair")
    return pair


def _list_domain(root: Path, building: str, fmt: DomainFormat,
                 domain_first: bool) -> tuple[Path, dict[tuple[int, int], Path]] | None:
    """The domain's folder for a building and its files by (point, view); None when no folder exists."""
    for folder_name in fmt.folders:
        folder = _domain_dir(root, building, folder_name, domain_first)
        if folder.is_dir():
            pattern = re.compile(rf"point_(\d+)_view_(\d+)_domain_{re.escape(folder_name)}{re.escape(fmt.suffix)}")
            by_view = {}
            for path in folder.iterdir():
                match = pattern.fullmatch(path.name)
                if match:
                    by_view[int(match[1]), int(match[2])] = path
            return folder, by_view
    return None


def verify_manifest(root: Path, paths: Sequence[Path]) -> None:
    """Check files against ``<root>/manifest.json`` (``{"files": {relative path: sha256}}``).

    :param root: the data root holding the manifest.
    :param paths: files under ``root`` to check.
    :raises DataRootError: no readable manifest, or files not in it or with another sha256.
    """
    manifest_path = root / MANIFEST_NAME
    try:
        listed = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataRootError(
            f"{manifest_path}: no readable manifest with a 'files' table of sha256 per relative path; "
            "regenerate the data or read it without verify_checksums"
        ) from None
    unlisted, changed = [], []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if relative not in listed:
            unlisted.append(relative)
        elif file_sha256(path) != listed[relative]:
            changed.append(relative)
    problems = _listing([
        (f"{len(unlisted)} files not in the manifest", unlisted),
        (f"{len(changed)} files with a sha256 other than the manifest's", changed),
    ])
    if problems:
        raise DataRootError(f"{root}: {problems} - regenerate or re-download those files")
