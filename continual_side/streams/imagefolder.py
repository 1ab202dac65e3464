"""Decode an image-folder split (`<split>/<class>/*.jpg|png`) once into a uint8 tensor.

Benchmarks revisit every image many times; decoding once into memory keeps epochs cheap.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torchvision.io import ImageReadMode, decode_image
from tqdm import tqdm

from continual_side.errors import ConfigError, DataRootError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CHUNK = 256  # files per thread-pool job: big enough to amortise scheduling, small enough for tqdm


@dataclass(frozen=True)
class ImageTensors:
    """Decoded images of one split.

    :param images: uint8 tensor (N, 3, H, W).
    :param targets: int64 tensor (N,), indices into `class_names`.
    :param class_names: name of each class, in target order.
    """

    images: torch.Tensor
    targets: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def select_classes(self, names: Sequence[str]) -> ImageTensors:
        """The images of `names` only, with targets renumbered 0..len(names)-1 in that order.

        :param names: class names, each one of `class_names`.
        """
        old_index = torch.tensor([self.class_names.index(name) for name in names], dtype=torch.int64)
        new_of_old = torch.full((len(self.class_names),), -1, dtype=torch.int64)
        new_of_old[old_index] = torch.arange(len(names))
        new_targets = new_of_old[self.targets]
        keep = new_targets >= 0
        return ImageTensors(self.images[keep], new_targets[keep], list(names))


def load_image_folder(
    split_dir: str | Path,
    *,
    classes: Sequence[str] | None = None,
    images_per_class: int | None = None,
    progress: bool = False,
) -> ImageTensors:
    """Decode every image of an image-folder split, in a deterministic order.

    Class folders are sorted by name (or follow `classes`), files by name; targets index the classes.

    :param split_dir: folder with one sub-folder of images per class.
    :param classes: the class folders that must be there, exactly; targets follow this order.
    :param images_per_class: keep the first k files (by name) of each class; None keeps all.
    :param progress: show a tqdm bar while decoding.
    :raises ConfigError: images_per_class below 1.
    :raises DataRootError: missing folder, missing/extra/empty class folders, short classes,
        unreadable images or images of different sizes.
    """
    if images_per_class is not None and images_per_class < 1:
        raise ConfigError(f"images_per_class={images_per_class}; use a positive count or None for all images")
    split_dir = Path(split_dir)
    class_names = class_folders(split_dir, classes)
    files: list[Path] = []
    targets: list[int] = []
    for target, name in enumerate(class_names):
        class_files = image_files(split_dir / name, images_per_class)
        files += class_files
        targets += [target] * len(class_files)
    images = _decode_all(files, progress=progress, desc=f"decoding {split_dir}")
    return ImageTensors(images, torch.tensor(targets, dtype=torch.int64), class_names)


def class_folders(split_dir: Path, classes: Sequence[str] | None = None) -> list[str]:
    """Class folder names of a split: sorted, or exactly `classes` (in that order)."""
    if not split_dir.is_dir():
        raise DataRootError(
            f"{split_dir}: no such directory; expected an image-folder split <split>/<class>/*.jpg|png "
            "- check the data root path"
        )
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        if not found:
            raise DataRootError(
                f"{split_dir}: no class folders; expected one sub-folder of images per class"
            )
        return found
    missing = [name for name in classes if name not in found]
    extra = [name for name in found if name not in classes]
    if missing:
        raise DataRootError(
            f"{split_dir}: missing class folders {missing}; expected exactly {list(classes)} - "
            "check that the data root is complete"
        )
    if extra:
        raise DataRootError(
            f"{split_dir}: unexpected class folders {extra}; expected exactly {list(classes)} - "
            "remove them or point to the right data root"
        )
    return list(classes)


def image_files(class_dir: Path, images_per_class: int | None = None) -> list[Path]:
    """Image files of a class folder sorted by name; the first `images_per_class` when given."""
    with os.scandir(class_dir) as entries:  # names and file types from one directory read, no stat per file
        names = sorted(entry.name for entry in entries
                       if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())
    if not names:
        raise DataRootError(
            f"{class_dir}: class folder has no images; expected files ending in {IMAGE_SUFFIXES}"
        )
    if images_per_class is not None and len(names) < images_per_class:
        raise DataRootError(
            f"{class_dir}: has {len(names)} images, fewer than images_per_class={images_per_class} - "
            "lower images_per_class or complete the folder"
        )
    return [class_dir / name for name in names[:images_per_class]]


def _decode(path: Path) -> torch.Tensor:
    try:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    except OSError as error:
        raise DataRootError(f"{path}: cannot read this file ({error.strerror}); check its permissions") from None
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        raise DataRootError(f"{path}: not a readable JPEG or PNG image; replace or delete the file") from None


def _decode_chunk(paths: list[Path]) -> list[torch.Tensor]:
    return [_decode(path) for path in paths]


def _decode_all(files: list[Path], *, progress: bool, desc: str) -> torch.Tensor:
    """Decode in a thread pool (torchvision's decoders release the GIL) and stack."""
    chunks = [files[i : i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    decoded: list[torch.Tensor] = []
    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(files), desc=desc, unit="img", disable=not progress
    ) as bar:
        for chunk, images in zip(chunks, pool.map(_decode_chunk, chunks)):
            for path, image in zip(chunk, images):
                if decoded and image.shape != decoded[0].shape:
                    raise DataRootError(
                        f"{path}: image size (H, W) {tuple(image.shape[1:])} differs from "
                        f"{tuple(decoded[0].shape[1:])} of {files[0]}; all images of a split must "
                        "have one size - resize them"
                    )
                decoded.append(image)
            bar.update(len(chunk))
    return torch.stack(decoded)
