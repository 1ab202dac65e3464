"""iTaskonomy: the side-tuning paper's 12 Taskonomy tasks learned one after another on the same images.

Experience ``i`` is task ``tasks[i]`` (default :data:`~continual_side.models.dense_losses.ITASKONOMY_ORDER`):
the same views, the task's own target and loss (:data:`~continual_side.models.dense_losses.TASK_LOSSES`),
a :class:`~continual_side.models.heads.DenseOutput` per experience. The buildings are split with
:func:`~continual_side.streams.taskonomy_data.split_buildings`: every task trains on the views of the
train buildings and is evaluated on those of the test buildings (the val buildings are not read).

Every view is decoded once into memory: the uint8 images, shared by all tasks (so a frozen base's
feature cache hits across tasks), and each task's packed targets
(:func:`~continual_side.models.dense_losses.pack_target`) as float16, half the memory of float32 and
converted back per item (relative rounding below 2^-11: under the 8-bit quantisation of most domains;
depth beyond 4 m rounds to 2 of the release's 1/512 m steps). Decoding the built-in set (1,000 train
and test views of 12 domains at 128 px) took 20 s on one busy core, and the tensors take 0.9 GB; with
``decode_cache`` they are also saved to ``<decode_cache_dir>/<key>.pt`` (as large on disk) and later
runs load them in under a second. The key hashes the data's identity (its manifest's sha256, or every
read file's path, size and modification time when it has no manifest) and every option that changes
the tensors, so a changed set or option decodes again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from tqdm.auto import tqdm

from continual_side.atomic import atomic_open
from continual_side.errors import ConfigError, DataRootError
from continual_side.hub import file_sha256
from continual_side.models.dense_losses import ITASKONOMY_ORDER, SEGMENT_UNLABELLED, TASK_LOSSES, pack_target
from continual_side.models.heads import DenseOutput
from continual_side.streams.benchmark import DenseTaskDataset, dense_task_benchmark
from continual_side.streams.registry import register_stream
from continual_side.streams.taskonomy_data import (
    LAYOUT,
    MANIFEST_NAME,
    TaskonomyViews,
    default_root,
    find_buildings,
    split_buildings,
    verify_manifest,
)

RENDER_SETTINGS = "render.json"
REAL_RELEASE_SEGMENT_CLASSES = 18
"""segment_semantic logits when the set does not list its classes: the real release's labels 0..17."""
CACHE_FORMAT = 1
TARGET_DTYPE = torch.float16


@dataclass
class ITaskonomyOptions:
    """itaskonomy's options.

    :param data_root: a Taskonomy-layout root (the real release, or a set rendered by
        ``continual-side taskonomy render --out DIR``); None: the built-in mini-Taskonomy.
    :param tasks: the tasks in stream order, any of the paper's 12 (default: all, the paper's order).
    :param image_size: square side every view is resized to (128: the built-in set's own).
    :param views_per_building: keep the first N views of each building (by point, then view); None: all.
    :param mask_with_depth: leave pixels without depth out of every pixel loss, as the side-tuning
        reference does.
    :param decode_cache: keep the decoded tensors on disk so that later runs load them in seconds
        (results are the same either way).
    :param decode_cache_dir: folder of the decoded tensors; None: ~/.cache/continual_side/itaskonomy.
    """

    data_root: str | None = None
    tasks: tuple[str, ...] = ITASKONOMY_ORDER
    image_size: int = 128
    views_per_building: int | None = None
    mask_with_depth: bool = True
    decode_cache: bool = True
    decode_cache_dir: str | None = None


@dataclass
class DecodedSplit:
    """The views of one building split: uint8 images (N, 3, H, W) and each task's packed float16 targets."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]


def check_options(options: ITaskonomyOptions) -> None:
    """Refuse tasks, sizes and caps no stream can use, naming the fix."""
    unknown = [task for task in options.tasks if task not in TASK_LOSSES]
    if not options.tasks or unknown:
        raise ConfigError(f"itaskonomy tasks {list(options.tasks)}: unknown {unknown or '(none given)'}; choose "
                          f"some of {', '.join(ITASKONOMY_ORDER)}")
    if len(set(options.tasks)) != len(options.tasks):
        raise ConfigError(f"itaskonomy tasks {list(options.tasks)} repeat a task; give each task once")
    if options.image_size < 8:
        raise ConfigError(f"image_size={options.image_size}; use a side of at least 8 pixels (the base's stride)")
    if options.views_per_building is not None and options.views_per_building < 1:
        raise ConfigError(f"views_per_building={options.views_per_building}; use a positive count or None for all")


def data_root(options: ITaskonomyOptions) -> Path:
    """The root to read: ``options.data_root``, else the built-in set.

    :raises DataRootError: the root does not exist, or the built-in set is not rendered yet.
    """
    if options.data_root is None:
        return default_root()
    root = Path(options.data_root).expanduser()
    if not root.is_dir():
        raise DataRootError(f"{root}: no such directory; give the root of a Taskonomy-layout set ({LAYOUT}), "
                            "or leave --data-root out for the built-in mini-Taskonomy, rendered once by "
                            "`continual-side taskonomy render`")
    return root


def segment_classes(root: Path) -> int:
    """segment_semantic's logits: the classes a rendered set lists in its render.json, else the real release's 18."""
    settings = root / RENDER_SETTINGS
    if settings.is_file():
        classes = json.loads(settings.read_text()).get("semantic_classes")
        if classes:
            return len(classes)
    return REAL_RELEASE_SEGMENT_CLASSES


def _selected_views(views: TaskonomyViews, per_building: int | None) -> list[int]:
    """Indices of the first ``per_building`` views of each building (views are sorted by building, point, view)."""
    taken: dict[str, int] = {}
    indices = []
    for index, key in enumerate(views.views):
        if per_building is None or taken.get(key.building, 0) < per_building:
            taken[key.building] = taken.get(key.building, 0) + 1
            indices.append(index)
    return indices


def _reader(root: Path, buildings: tuple[str, ...], options: ITaskonomyOptions) -> TaskonomyViews:
    return TaskonomyViews(root, buildings, [*options.tasks, "rgb"], image_size=options.image_size,
                          mask_with_depth=options.mask_with_depth)


def decode_split(views: TaskonomyViews, indices: list[int], tasks: tuple[str, ...], *, desc: str,
                 progress: bool) -> DecodedSplit:
    """Decode the views ``indices`` of ``views`` into uint8 images and float16 packed targets.

    The image is recovered exactly from the rgb target (``k / 255 * 255`` rounds back to ``k``).
    """
    images: torch.Tensor | None = None
    targets: dict[str, torch.Tensor] = {}
    for row, index in enumerate(tqdm(indices, desc=desc, unit="view", disable=not progress, leave=False)):
        _, decoded = views[index]
        if images is None:
            images = torch.empty((len(indices), *decoded["rgb"].shape), dtype=torch.uint8)
        images[row] = (decoded["rgb"] * 255.0).round().to(torch.uint8)
        for task in tasks:
            packed = pack_target(task, decoded[task], decoded.get(task + "_mask"))
            if task not in targets:
                targets[task] = torch.empty((len(indices), *packed.shape), dtype=TARGET_DTYPE)
            elif packed.shape != targets[task].shape[1:]:
                raise DataRootError(f"{views.files[views.views[index]][task]}: {task} has shape {tuple(packed.shape)} "
                                    f"but earlier views' have {tuple(targets[task].shape[1:])}; every view of a "
                                    "domain must have the same size (replace the file)")
            targets[task][row] = packed.to(TARGET_DTYPE)
    return DecodedSplit(images, targets)


def data_identity(root: Path, readers: list[TaskonomyViews]) -> str:
    """What the decoded tensors depend on in the data: the manifest's sha256, else every read file's
    relative path, size and modification time."""
    manifest = root / MANIFEST_NAME
    if manifest.is_file():
        return "manifest:" + file_sha256(manifest)
    digest = hashlib.sha256()
    for reader in readers:
        for key in reader.views:
            for path in sorted(reader.files[key].values()):
                stat = path.stat()
                digest.update(f"{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return "files:" + digest.hexdigest()


def decode_cache_dir(options: ITaskonomyOptions) -> Path:
    return Path(options.decode_cache_dir or "~/.cache/continual_side/itaskonomy").expanduser()


def _load_cache(path: Path, key: str) -> dict[str, DecodedSplit] | None:
    """The cached splits for ``key``, or None when the file is absent, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file is decoded again and replaced
        return None
    if not isinstance(document, dict) or document.get("key") != key:
        return None
    return {name: DecodedSplit(split["images"], split["targets"]) for name, split in document["splits"].items()}


def _save_cache(path: Path, key: str, splits: dict[str, DecodedSplit]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"key": key, "splits": {name: asdict(split) for name, split in splits.items()}}
    with atomic_open(path) as handle:
        torch.save(document, handle)


def decoded_splits(root: Path, options: ITaskonomyOptions, *, progress: bool = False) -> dict[str, DecodedSplit]:
    """The train and test buildings' views decoded (see the module docstring), from the disk cache when it
    holds them.

    :raises DataRootError: missing, unreadable or inconsistent data, or files differing from the manifest.
    """
    split = split_buildings(find_buildings(root))
    readers = {"train": _reader(root, split.train, options), "test": _reader(root, split.test, options)}
    indices = {name: _selected_views(reader, options.views_per_building) for name, reader in readers.items()}
    settings = {"format": CACHE_FORMAT, "data": data_identity(root, list(readers.values())),
                "buildings": {"train": split.train, "test": split.test}, "tasks": options.tasks,
                "image_size": options.image_size, "views_per_building": options.views_per_building,
                "mask_with_depth": options.mask_with_depth}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    path = decode_cache_dir(options) / f"{key}.pt"
    cached = _load_cache(path, key) if options.decode_cache else None
    if cached is not None:
        return cached
    if (root / MANIFEST_NAME).is_file():  # decode only files that are what the manifest says
        verify_manifest(root, [path for name, reader in readers.items() for index in indices[name]
                               for path in reader.files[reader.views[index]].values()])
    splits = {name: decode_split(reader, indices[name], options.tasks, desc=f"decoding itaskonomy {name}",
                                 progress=progress) for name, reader in readers.items()}
    if options.decode_cache:
        _save_cache(path, key, splits)
    return splits


def task_output(task: str, root: Path, splits: dict[str, DecodedSplit]) -> DenseOutput:
    """The task's head output; segment classes from the set's render.json, class_object's from its files.

    :raises DataRootError: segment labels beyond the classes the set declares.
    """
    spec = TASK_LOSSES[task]
    channels = spec.out_channels
    if task == "segment_semantic":
        channels = segment_classes(root)
        largest = max(int(split.targets[task].max()) for split in splits.values())
        if largest >= channels:
            raise DataRootError(f"{root}: segment_semantic label {largest} but the set has {channels} classes "
                                f"(labels {SEGMENT_UNLABELLED}..{channels - 1}); list every class in "
                                f"{RENDER_SETTINGS}'s semantic_classes or re-render the set")
    elif task == "class_object":
        channels = int(splits["train"].targets[task].shape[1])
    return DenseOutput(task, channels, pixelwise=spec.pixelwise)


def itaskonomy(options: ITaskonomyOptions, *, progress: bool = False) -> CLScenario:
    """The iTaskonomy stream (see the module docstring).

    :param options: the stream's options.
    :param progress: show decoding progress bars.
    :raises ConfigError: bad options.
    :raises DataRootError: no data (with how to render the built-in set) or bad data.
    """
    check_options(options)
    root = data_root(options)
    splits = decoded_splits(root, options, progress=progress)
    train, test = splits["train"], splits["test"]
    tasks = [(task_output(task, root, splits), DenseTaskDataset(train.images, train.targets[task]),
              DenseTaskDataset(test.images, test.targets[task])) for task in options.tasks]
    return dense_task_benchmark("itaskonomy", tasks)


register_stream("itaskonomy", options=ITaskonomyOptions,
                build=lambda options, progress=False: itaskonomy(options, progress=progress), base="midlevel",
                dense=True)
