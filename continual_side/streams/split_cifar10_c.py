"""Split CIFAR-10-C: split CIFAR-10 with every task's images (train and test) under its own corruption.

Corruptions from Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations", ICLR 2019, arXiv:1903.12261, as implemented by the ``imagecorruptions`` package
(Michaelis et al., arXiv:1907.07484). On plain split CIFAR-10 the ResNet-44 base was trained on the very
classes, so fixed features already score high and adaptation has little to add; here each task is also a
new domain, so the base must adapt.

* The classes, tasks and image selection are split CIFAR-10's (:mod:`continual_side.streams.split_cifar10`,
  same options); task k's images are corrupted with ``corruptions[k]`` at its severity.
* ``imagecorruptions`` applies ImageNet-C's parameters to any image size; on 32 px images they are not the
  constants of the released CIFAR-10-C set, so accuracies are not comparable with CIFAR-10-C papers.
* Deterministic: each image's random corruptions (noise, frost crop, ...) draw from numpy's global
  generator seeded with a digest of the image's bytes, the corruption and the severity; the global state
  is restored afterwards, so building the stream never moves a run's random stream.
* Cached: a split's corrupted images are computed once and kept in ``<cache_dir>/<key>.npy`` (written
  atomically), the key a sha256 of the source pixels, corruption, severity and package version; later
  builds read the file and corrupt nothing.

Corruptions that work here (imagecorruptions 1.1.2, scikit-image 0.26, setuptools without
``pkg_resources``): :data:`CORRUPTIONS`. Left out: ``glass_blur`` and ``gaussian_blur`` (they call
scikit-image's ``gaussian(multichannel=...)``, removed in scikit-image 0.19) and ``impulse_noise``
(scikit-image's ``random_noise`` ignores numpy's seed, so it cannot be reproduced). ``frost`` reads the
frost images shipped inside the package; no corruption needs ImageMagick/Wand in this version.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from tqdm import tqdm

from continual_side.atomic import atomic_write_bytes
from continual_side.errors import ConfigError
from continual_side.streams.benchmark import task_benchmark
from continual_side.streams.imagefolder import ImageTensors
from continual_side.streams.registry import get_stream, register_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options

CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "defocus_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise", "spatter",
    "saturate",
)
DEFAULT_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "snow", "contrast", "elastic_transform")
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """$CONTINUAL_SIDE_CORRUPTION_CACHE, else ~/.cache/continual_side/corruptions."""
    return Path(os.environ.get("CONTINUAL_SIDE_CORRUPTION_CACHE") or "~/.cache/continual_side/corruptions").expanduser()


def corruption_function() -> Callable[..., np.ndarray]:
    """``imagecorruptions.corrupt``, imported even where setuptools no longer ships ``pkg_resources``.

    The package's only use of ``pkg_resources`` is ``resource_filename`` for its frost images; a stand-in
    module answers that one call during the import and is removed right after.
    """
    if "imagecorruptions" not in sys.modules and "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            stand_in = types.ModuleType("pkg_resources")
            stand_in.resource_filename = lambda package, name: str(Path(sys.modules[package].__file__).parent / name)
            sys.modules["pkg_resources"] = stand_in
            try:
                import imagecorruptions  # noqa: F401
            finally:
                del sys.modules["pkg_resources"]
    from imagecorruptions import corrupt

    return corrupt


def _image_seed(image: np.ndarray, corruption: str, severity: int) -> int:
    digest = hashlib.blake2b(f"{corruption}|{severity}|".encode() + image.tobytes(), digest_size=4)
    return int.from_bytes(digest.digest(), "little")


def corrupt_images(images: torch.Tensor, corruption: str, severity: int, *, progress: bool = False) -> torch.Tensor:
    """Every image corrupted, each with randomness seeded by its own bytes; numpy's global state is kept.

    :param images: uint8 (N, 3, H, W).
    :param corruption: one of :data:`CORRUPTIONS`.
    :param severity: 1 (mild) to 5 (strong).
    :param progress: show a tqdm bar.
    :returns: uint8 (N, 3, H, W).
    """
    corrupt = corruption_function()
    pixels = images.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(pixels)
    state = np.random.get_state()
    try:
        for index in tqdm(range(len(pixels)), desc=f"{corruption} {severity}", unit="img", disable=not progress):
            np.random.seed(_image_seed(pixels[index], corruption, severity))
            corrupted = corrupt(pixels[index], corruption_name=corruption, severity=severity)
            out[index] = np.clip(np.rint(corrupted), 0, 255).astype(np.uint8)
    finally:
        np.random.set_state(state)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def cache_key(images: torch.Tensor, corruption: str, severity: int) -> str:
    """Hex sha256 of the source pixels (shape included), the corruption, its severity and the package version."""
    digest = hashlib.sha256(
        f"{CACHE_FORMAT}|{version('imagecorruptions')}|{corruption}|{severity}|{tuple(images.shape)}|".encode()
    )
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_corruption(
    images: torch.Tensor, corruption: str, severity: int, cache_dir: Path, *, progress: bool = False
) -> torch.Tensor:
    """:func:`corrupt_images`, read from ``cache_dir`` when computed before, else computed and written there.

    A cache file that cannot be read or does not fit is recomputed and replaced.
    """
    path = cache_dir / f"{cache_key(images, corruption, severity)}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            cached = None
        if cached is not None and cached.dtype == np.uint8 and cached.shape == tuple(images.shape):
            return torch.from_numpy(cached)
    corrupted = corrupt_images(images, corruption, severity, progress=progress)
    buffer = io.BytesIO()
    np.save(buffer, corrupted.numpy(), allow_pickle=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return corrupted


@dataclass
class SplitCifar10COptions(SplitCifar10Options):
    """split_cifar10_c's options: split_cifar10's, plus each task's corruption.

    :param corruptions: task k's corruption, one per task, each one of gaussian_noise, shot_noise,
        defocus_blur, motion_blur, zoom_blur, snow, frost, fog, brightness, contrast, elastic_transform,
        pixelate, jpeg_compression, speckle_noise, spatter, saturate.
    :param severities: one severity (1-5) for every task, or one per task.
    :param corruption_cache_dir: folder of the corrupted-image cache; None: $CONTINUAL_SIDE_CORRUPTION_CACHE, else
        ~/.cache/continual_side/corruptions.
    """

    corruptions: tuple[str, ...] = DEFAULT_CORRUPTIONS
    severities: tuple[int, ...] = (3,)
    corruption_cache_dir: str | None = None

    def task_corruptions(self) -> list[tuple[str, int]]:
        """(corruption, severity) of each task, or a ConfigError saying what to pass."""
        unknown = [name for name in self.corruptions if name not in CORRUPTIONS]
        if unknown:
            raise ConfigError(f"unknown or unavailable corruptions {unknown}; choose from {', '.join(CORRUPTIONS)}")
        if len(self.corruptions) != self.n_tasks:
            raise ConfigError(f"{len(self.corruptions)} corruptions for {self.n_tasks} tasks: pass one per task "
                              "with --corruptions")
        if len(self.severities) not in (1, self.n_tasks) or any(s not in range(1, 6) for s in self.severities):
            raise ConfigError(f"severities={self.severities}: pass one value from 1 to 5, or one per task")
        severities = self.severities * self.n_tasks if len(self.severities) == 1 else self.severities
        return list(zip(self.corruptions, severities))


def _build(options: SplitCifar10COptions, *, progress: bool = False) -> CLScenario:
    if options.data_root is None:
        raise ConfigError("split_cifar10_c needs its images: pass --data-root DIR, a folder with train/<class>/ "
                          "and test/<class>/ (e.g. CIFAR-10 as JPEGs)")
    corruptions = options.task_corruptions()
    clean = get_stream("split_cifar10").build(options, progress=progress)
    cache_dir = default_cache_dir() if options.corruption_cache_dir is None else Path(options.corruption_cache_dir)

    def corrupted(split: ImageTensors, corruption: str, severity: int) -> ImageTensors:
        images = cached_corruption(split.images, corruption, severity, cache_dir, progress=progress)
        return ImageTensors(images, split.targets, split.class_names)

    tasks = [(corrupted(train, *task), corrupted(test, *task)) for (train, test), task in zip(clean.task_images,
                                                                                            corruptions)]
    bench = task_benchmark("split_cifar10_c", tasks)
    bench.corruptions = corruptions
    return bench


register_stream("split_cifar10_c", options=SplitCifar10COptions, build=_build)
