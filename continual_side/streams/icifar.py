"""iCIFAR: CIFAR-100 in tasks of consecutive labels (task k holds labels 10k..10k+9), as in the paper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from torchvision.datasets import CIFAR100

from continual_side.errors import ConfigError, DataRootError
from continual_side.streams.benchmark import task_benchmark
from continual_side.streams.imagefolder import ImageTensors
from continual_side.streams.registry import register_stream

N_CLASSES = 100


def icifar100(data_root: str | Path, *, download: bool = True, n_tasks: int = 10) -> CLScenario:
    """Task-incremental CIFAR-100 through torchvision, task k holding labels k*C..k*C+C-1.

    :param data_root: folder holding (or receiving) `cifar-100-python/`.
    :param download: fetch cifar-100-python.tar.gz (md5-checked by torchvision) when missing.
    :param n_tasks: number of tasks; must divide 100.
    """
    if n_tasks < 1 or N_CLASSES % n_tasks:
        raise ConfigError(f"n_tasks={n_tasks} does not divide the 100 CIFAR-100 classes; choose a divisor of 100")
    train, test = (_load_split(Path(data_root), train=split, download=download) for split in (True, False))
    size = N_CLASSES // n_tasks
    task_classes = [train.class_names[k * size : (k + 1) * size] for k in range(n_tasks)]
    tasks = [(train.select_classes(c), test.select_classes(c)) for c in task_classes]
    return task_benchmark("icifar100", tasks)


def _load_split(data_root: Path, *, train: bool, download: bool) -> ImageTensors:
    try:
        dataset = CIFAR100(str(data_root), train=train, download=download)
    except RuntimeError:  # torchvision: files missing or md5 mismatch
        raise DataRootError(
            f"{data_root}: CIFAR-100 not found or corrupted (expected {data_root / 'cifar-100-python'} "
            "with train, test and meta, as extracted from cifar-100-python.tar.gz); pass --download "
            "or put the extracted cifar-100-python folder there"
        ) from None
    except OSError as error:  # includes URLError when offline
        raise DataRootError(
            f"{data_root}: could not download CIFAR-100 ({error}); put the extracted cifar-100-python "
            "folder there and run without --download"
        ) from None
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.tensor(dataset.targets, dtype=torch.int64), list(dataset.classes))


@dataclass
class ICifar100Options:
    """icifar100's options.

    :param data_root: folder holding (or receiving) ``cifar-100-python/``.
    :param download: download CIFAR-100 into data_root if it is not there (md5-checked by torchvision).
    :param n_tasks: number of tasks; must divide 100 (the paper: 10).
    """

    data_root: str = "data"
    download: bool = False
    n_tasks: int = 10


register_stream(
    "icifar100",
    options=ICifar100Options,
    build=lambda options, progress=False: icifar100(options.data_root, download=options.download,
                                                    n_tasks=options.n_tasks),
)
