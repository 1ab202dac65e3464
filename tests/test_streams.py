"""Streams: image-folder decoding and its errors, normalisation, task splits, iCIFAR-100, demo sample."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from avalanche.benchmarks.utils.data_loader import TaskBalancedDataLoader
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import CIFAR100

from benchmarks.make_demo_data import build_demo_sample
from continual_side.errors import ConfigError, DataRootError
from continual_side.streams import STREAMS, make_stream
from continual_side.streams.demo import DEMO_DATA_DIR, TEST_PER_CLASS, TRAIN_PER_CLASS, DemoOptions
from continual_side.streams.icifar import icifar100
from continual_side.streams.imagefolder import load_image_folder
from continual_side.streams.split_cifar10 import SplitCifar10Options, split_cifar10
from continual_side.streams.transforms import IMAGENET_MEAN, IMAGENET_STD, normalise

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pixel(class_index: int, image_index: int) -> int:
    """The grey level of image `image_index` of class `class_index` in the tiny trees."""
    return 10 * class_index + image_index


def write_split(split_dir: Path, classes: list[str], per_class: int, size: int = 8) -> None:
    """Lossless PNGs whose every pixel is `pixel(sorted class index, file index)`."""
    for class_index, name in enumerate(sorted(classes)):
        (split_dir / name).mkdir(parents=True)
        for i in range(per_class):
            value = pixel(class_index, i)
            Image.new("RGB", (size, size), (value, value, value)).save(split_dir / name / f"{i:04d}.png")


def expected_input(value: int) -> torch.Tensor:
    """The normalised red channel of a grey pixel `value`."""
    return torch.tensor((value / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0])


# --- load_image_folder -------------------------------------------------------------------------


def test_load_image_folder_sorted_order_targets_and_first_k(tmp_path):
    write_split(tmp_path, ["b", "a"], per_class=3)
    data = load_image_folder(tmp_path)
    assert data.class_names == ["a", "b"]
    assert data.images.dtype == torch.uint8 and data.images.shape == (6, 3, 8, 8)
    assert data.targets.dtype == torch.int64 and data.targets.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images[:, 1, 4, 4].tolist() == [0, 1, 2, 10, 11, 12]
    first_two = load_image_folder(tmp_path, images_per_class=2)
    assert first_two.images[:, 0, 0, 0].tolist() == [0, 1, 10, 11]


def test_load_image_folder_follows_given_class_order(tmp_path):
    write_split(tmp_path, ["a", "b"], per_class=1)
    data = load_image_folder(tmp_path, classes=["b", "a"])
    assert data.class_names == ["b", "a"]
    assert data.images[:, 0, 0, 0].tolist() == [10, 0] and data.targets.tolist() == [0, 1]


def _missing_dir(root: Path):
    return root / "nowhere", {}, "nowhere"


def _missing_class(root: Path):
    write_split(root, ["a", "b"], 1)
    return root, {"classes": ["a", "b", "c"]}, "['c']"


def _extra_class(root: Path):
    write_split(root, ["a", "b", "zebra"], 1)
    return root, {"classes": ["a", "b"]}, "['zebra']"


def _empty_class(root: Path):
    write_split(root, ["a"], 1)
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("not an image")
    return root, {}, str(root / "b")


def _corrupt_image(root: Path):
    write_split(root, ["a"], 2)
    (root / "a" / "0001.png").write_bytes(b"\x89PNG truncated")
    return root, {}, str(root / "a" / "0001.png")


def _inconsistent_size(root: Path):
    write_split(root, ["a"], 2)
    Image.new("RGB", (9, 8)).save(root / "a" / "0002.png")
    return root, {}, str(root / "a" / "0002.png")


def _too_few_images(root: Path):
    write_split(root, ["a"], 2)
    return root, {"images_per_class": 3}, "images_per_class=3"


@pytest.mark.parametrize(
    "make_case",
    [_missing_dir, _missing_class, _extra_class, _empty_class, _corrupt_image, _inconsistent_size, _too_few_images],
)
def test_bad_image_folder_raises_data_root_error_naming_path(tmp_path, make_case):
    split_dir, options, detail = make_case(tmp_path / "split")
    with pytest.raises(DataRootError) as error:
        load_image_folder(split_dir, **options)
    message = str(error.value)
    assert str(tmp_path / "split") in message and detail in message
    assert "\n" not in message


def test_select_classes_keeps_only_those_and_renumbers(tmp_path):
    write_split(tmp_path, ["a", "b", "c"], per_class=2)
    subset = load_image_folder(tmp_path).select_classes(["c", "a"])
    assert subset.class_names == ["c", "a"]
    assert subset.images[:, 0, 0, 0].tolist() == [0, 1, 20, 21]
    assert subset.targets.tolist() == [1, 1, 0, 0]


# --- normalise -----------------------------------------------------------------------------------


def test_normalise_imagenet_statistics():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[1] = 255
    out = normalise(images)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    for c in range(3):
        assert out[0, c, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-6)
        assert out[1, c, 3, 3].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-6)
    assert torch.equal(normalise(images[1]), out[1])
    with pytest.raises(TypeError):
        normalise(images.float())


# --- split_cifar10 on a tiny tree ----------------------------------------------------------------


@pytest.fixture
def tiny_tree(tmp_path) -> Path:
    classes = ["c0", "c1", "c2", "c3", "c4", "c5"]
    write_split(tmp_path / "train", classes, per_class=4)
    write_split(tmp_path / "test", classes, per_class=2)
    return tmp_path


def test_split_tiny_tree_tasks_labels_and_images(tiny_tree):
    bench = split_cifar10(tiny_tree, n_tasks=3)
    assert bench.stream_name == "split_cifar10"
    assert bench.classes_per_task == [["c0", "c1"], ["c2", "c3"], ["c4", "c5"]]
    assert len(bench.train_stream) == len(bench.test_stream) == 3
    assert [train.images[:, 0, 0, 0].tolist() for train, _ in bench.task_images][2] == [40, 41, 42, 43, 50, 51, 52, 53]
    for stream, per_class in ((bench.train_stream, 4), (bench.test_stream, 2)):
        for k, experience in enumerate(stream):
            assert experience.task_label == k
            assert experience.classes_in_this_experience == [0, 1]
            assert len(experience.dataset) == 2 * per_class
            x, y, t = next(iter(DataLoader(experience.dataset, batch_size=100)))
            assert x.shape == (2 * per_class, 3, 8, 8) and x.dtype == torch.float32
            assert y.tolist() == [0] * per_class + [1] * per_class
            assert t.tolist() == [k] * (2 * per_class)
            values = [pixel(2 * k + label, i) for label in (0, 1) for i in range(per_class)]
            assert torch.allclose(x[:, 0, 0, 0], torch.stack([expected_input(v) for v in values]), atol=1e-6)


def test_avalanche_task_balanced_loader_yields_x_y_t(tiny_tree):
    bench = split_cifar10(tiny_tree, n_tasks=3)
    experience = bench.train_stream[1]
    batches = list(TaskBalancedDataLoader(experience.dataset, batch_size=3))
    assert [len(y) for _, y, _ in batches] == [3, 3, 2]
    assert all(t.tolist() == [1] * len(t) for _, _, t in batches)
    assert sorted(sum((y.tolist() for _, y, _ in batches), [])) == [0] * 4 + [1] * 4


def test_split_rejects_indivisible_task_count_and_mismatched_test_classes(tiny_tree):
    with pytest.raises(ConfigError, match="n_tasks=4"):
        split_cifar10(tiny_tree, n_tasks=4)
    (tiny_tree / "test" / "c6").mkdir()
    with pytest.raises(DataRootError, match=r"\['c6'\]"):
        split_cifar10(tiny_tree, n_tasks=3)


# --- split_cifar10 on the shared CIFAR-10 JPEGs ---------------------------------------------------


def test_split_cifar10_shared_jpegs(cifar10_jpeg):
    bench = split_cifar10(cifar10_jpeg, images_per_class=20, test_images_per_class=10)
    assert bench.classes_per_task == [CIFAR10_CLASSES[2 * k : 2 * k + 2] for k in range(5)]
    for k, (train, test) in enumerate(zip(bench.train_stream, bench.test_stream)):
        assert (train.task_label, test.task_label) == (k, k)
        assert (len(train.dataset), len(test.dataset)) == (40, 20)
        assert sorted(set(train.dataset.targets)) == [0, 1] == sorted(set(test.dataset.targets))
    bird = load_image_folder(cifar10_jpeg / "train", images_per_class=1).images[2]
    x, y, _ = bench.train_stream[1].dataset[0]  # first image of task 1 = train/bird/0000.jpg
    assert y == 0 and torch.equal(x, normalise(bird))


def test_split_cifar10_seeded_class_order_is_deterministic(cifar10_jpeg):
    options = dict(images_per_class=20, test_images_per_class=10)
    first = split_cifar10(cifar10_jpeg, class_order_seed=0, **options).classes_per_task
    assert first == [["deer", "frog"], ["bird", "horse"], ["cat", "dog"], ["truck", "airplane"], ["ship", "automobile"]]
    assert split_cifar10(cifar10_jpeg, class_order_seed=0, **options).classes_per_task == first
    assert split_cifar10(cifar10_jpeg, class_order_seed=1, **options).classes_per_task != first


# --- iCIFAR-100 from a tiny CIFAR-100 in the real on-disk format -----------------------------------

FINE_NAMES = [f"fine{i:02d}" for i in range(100)]


def _write_pickle(path: Path, entry: dict) -> str:
    path.write_bytes(pickle.dumps(entry, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_tiny_cifar100(root: Path, per_class: dict[str, int]) -> dict[str, str]:
    """cifar-100-python/{train,test,meta} as torchvision reads them; every pixel = the fine label."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    md5 = {}
    for split, count in per_class.items():
        labels = [label for label in range(100) for _ in range(count)]
        data = np.repeat(np.array(labels, dtype=np.uint8)[:, None], 3 * 32 * 32, axis=1)
        entry = {
            "data": data,
            "fine_labels": labels,
            "coarse_labels": [label // 5 for label in labels],
            "filenames": [f"{split}_{i}.png" for i in range(len(labels))],
            "batch_label": f"tiny {split}",
        }
        md5[split] = _write_pickle(folder / split, entry)
    meta = {"fine_label_names": FINE_NAMES, "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    md5["meta"] = _write_pickle(folder / "meta", meta)
    return md5


@pytest.fixture
def tiny_cifar100(tmp_path, monkeypatch) -> Path:
    # torchvision checks each file's md5 against constants on the class; we point those constants at
    # our tiny files (test-only monkeypatch) so its real integrity check still runs on them.
    md5 = _write_tiny_cifar100(tmp_path, {"train": 2, "test": 1})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(CIFAR100, "meta", {**CIFAR100.meta, "md5": md5["meta"]})
    return tmp_path


def test_icifar100_tasks_hold_consecutive_labels_remapped(tiny_cifar100):
    bench = icifar100(tiny_cifar100, download=False)
    assert bench.stream_name == "icifar100"
    assert bench.classes_per_task == [FINE_NAMES[10 * k : 10 * k + 10] for k in range(10)]
    for stream, per_class in ((bench.train_stream, 2), (bench.test_stream, 1)):
        assert len(stream) == 10
        for k, experience in enumerate(stream):
            assert experience.task_label == k
            assert experience.classes_in_this_experience == list(range(10))
            x, y, t = next(iter(DataLoader(experience.dataset, batch_size=1000)))
            assert len(y) == 10 * per_class and t.tolist() == [k] * len(y)
            labels = 10 * k + y  # the original fine label, written into every pixel
            assert torch.allclose(x[:, 0, 5, 5], torch.stack([expected_input(int(v)) for v in labels]), atol=1e-6)


def test_icifar100_missing_files_without_download(tmp_path):
    with pytest.raises(DataRootError) as error:
        icifar100(tmp_path / "data", download=False)
    assert str(tmp_path / "data") in str(error.value) and "--download" in str(error.value)


def test_icifar100_files_with_wrong_checksum_are_rejected(tmp_path):
    _write_tiny_cifar100(tmp_path, {"train": 1, "test": 1})  # real md5 constants: these do not match
    with pytest.raises(DataRootError, match="corrupted"):
        icifar100(tmp_path, download=False)


def test_icifar100_rejects_task_count_not_dividing_100(tmp_path):
    with pytest.raises(ConfigError, match="n_tasks=3"):
        icifar100(tmp_path, download=False, n_tasks=3)


# --- packaged demo sample --------------------------------------------------------------------------


def test_demo_sample_fits_budget_and_has_the_stated_counts():
    files = [p for p in DEMO_DATA_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 4_500_000
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        assert sorted(p.name for p in (DEMO_DATA_DIR / split).iterdir()) == CIFAR10_CLASSES
        assert all(len(list((DEMO_DATA_DIR / split / c).glob("*.jpg"))) == count for c in CIFAR10_CLASSES)
    assert "Krizhevsky" in (DEMO_DATA_DIR / "README.md").read_text()


def test_demo_stream_shape():
    bench = make_stream("demo")
    assert bench.stream_name == "demo"
    assert bench.classes_per_task == [CIFAR10_CLASSES[2 * k : 2 * k + 2] for k in range(5)]
    assert [len(e.dataset) for e in bench.train_stream] == [2 * TRAIN_PER_CLASS] * 5
    assert [len(e.dataset) for e in bench.test_stream] == [2 * TEST_PER_CLASS] * 5
    assert [e.task_label for e in bench.test_stream] == [0, 1, 2, 3, 4]


def test_demo_sample_is_a_byte_copy_of_the_first_files(cifar10_jpeg):
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        source = sorted((cifar10_jpeg / split / "ship").iterdir())[:count]
        assert [p.name for p in source] == sorted(p.name for p in (DEMO_DATA_DIR / split / "ship").iterdir())
        assert source[-1].read_bytes() == (DEMO_DATA_DIR / split / "ship" / source[-1].name).read_bytes()


def test_build_demo_sample_copies_first_files_and_replaces_output(tiny_tree, tmp_path):
    out = tmp_path / "sample"
    (out / "stale").mkdir(parents=True)
    size = build_demo_sample(tiny_tree, out, train_per_class=3, test_per_class=1)
    assert not (out / "stale").exists()
    assert sorted(p.name for p in (out / "train" / "c5").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert (out / "test" / "c0" / "0000.png").read_bytes() == (tiny_tree / "test" / "c0" / "0000.png").read_bytes()
    assert size == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert len(split_cifar10(out, n_tasks=2).train_stream[0].dataset) == 9


# --- registry -------------------------------------------------------------------------------------


def test_make_stream_registry_errors_and_options(tiny_tree):
    with pytest.raises(ConfigError, match="unknown stream 'mnist'; choose one of " + ", ".join(STREAMS)):
        make_stream("mnist")
    with pytest.raises(ConfigError, match="stream 'split_cifar10' takes SplitCifar10Options, got DemoOptions"):
        make_stream("split_cifar10", DemoOptions())
    with pytest.raises(ConfigError, match="split_cifar10 needs its images: pass --data-root"):
        make_stream("split_cifar10")
    assert make_stream("split_cifar10", SplitCifar10Options(data_root=str(tiny_tree), n_tasks=2)).classes_per_task == [
        ["c0", "c1", "c2"],
        ["c3", "c4", "c5"],
    ]
