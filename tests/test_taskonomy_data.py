"""Taskonomy loader on files written in the real format, the iTaskonomy losses and the loss-matrix metrics.

Every fixture file is written here with PIL/numpy exactly as the real release stores it (16-bit PNGs in
mode I;16, 8-bit RGB/grey PNGs, class_object as a .npy), with known values that the tests decode back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from continual_side.errors import ConfigError, DataRootError
from continual_side.hub import file_sha256
from continual_side.metrics import (
    accuracy_summary,
    loss_curves,
    loss_forgetting,
    loss_forgetting_per_task,
)
from continual_side.models.dense_losses import (
    ITASKONOMY_ORDER,
    TASK_LOSSES,
    correct_and_count,
    distribution_kl,
    masked_l1,
    masked_l2,
    segmentation_cross_entropy,
    task_loss,
)
from continual_side.streams.taskonomy_data import (
    DOMAIN_FORMATS,
    BuildingSplit,
    TaskonomyViews,
    find_buildings,
    split_buildings,
)
from continual_side.streams.transforms import IMAGENET_MEAN, IMAGENET_STD

BUILDINGS = ("allensville", "beechwood", "cosmos")
VIEWS = ((0, 0), (1, 2))  # (point, view) of the two views of every building
SIZE = 4
NAN = np.nan

# Known raw values: row 0 of each image holds the probes, every other pixel a plain valid value.
DEPTH = np.full((SIZE, SIZE), 1024, dtype=np.uint16)  # 1024 / 512 = 2.0 m
DEPTH[0, 1] = 65535  # invalid
DEPTH[0, 2] = 3  # 3 / 512 m
NORMAL = np.zeros((SIZE, SIZE, 3), dtype=np.uint8) + np.array([128, 128, 255], dtype=np.uint8)
NORMAL[0, 0] = (255, 128, 0)  # -> (1, 0, -1) / sqrt(2), up to the 128 -> 1/255 offset
NORMAL[0, 1] = (128, 128, 128)  # no surface
CURVATURE = np.zeros((SIZE, SIZE, 3), dtype=np.uint8) + np.array([128, 128, 0], dtype=np.uint8)
CURVATURE[0, 0] = (255, 1, 77)  # -> (+1, -1); the third channel is not read
RESHADING = np.full((SIZE, SIZE), 51, dtype=np.uint8)  # 0.2
KEYPOINTS = np.zeros((SIZE, SIZE), dtype=np.uint16)
KEYPOINTS[0, 0] = 65535  # 1.0
SEGMENT = (np.arange(SIZE * SIZE, dtype=np.uint8) % 18).reshape(SIZE, SIZE)  # 0 = unlabelled .. 17
CLASS_PROBABILITIES = np.full(1000, 0.5 / 999, dtype=np.float32)
CLASS_PROBABILITIES[7] = 0.5


def rgb_of(building: str, point: int) -> np.ndarray:
    """A distinct 8-bit RGB image per view."""
    base = 10 * BUILDINGS.index(building) + point
    return (np.arange(SIZE * SIZE * 3).reshape(SIZE, SIZE, 3) + base).astype(np.uint8)


def save_png(path: Path, pixels: np.ndarray) -> None:
    """uint16 arrays become 16-bit grey PNGs (mode I;16), uint8 ones 8-bit grey or RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def domain_path(root: Path, building: str, folder: str, point: int, view: int, suffix: str = ".png") -> Path:
    return root / building / folder / f"point_{point}_view_{view}_domain_{folder}{suffix}"


def write_view(root: Path, building: str, point: int, view: int) -> None:
    """All 12 domains of one view, in the real release's folders and formats."""
    images = {
        "rgb": rgb_of(building, point), "depth_zbuffer": DEPTH, "depth_euclidean": DEPTH + 512,
        "normal": NORMAL, "principal_curvature": CURVATURE, "reshading": RESHADING,
        "keypoints2d": KEYPOINTS, "keypoints3d": KEYPOINTS, "edge_texture": KEYPOINTS,
        "edge_occlusion": KEYPOINTS, "segment_semantic": SEGMENT,
    }
    for folder, pixels in images.items():
        save_png(domain_path(root, building, folder, point, view), pixels)
    class_path = domain_path(root, building, "class_object", point, view, ".npy")
    class_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(class_path, CLASS_PROBABILITIES)


@pytest.fixture
def taskonomy_root(tmp_path: Path) -> Path:
    """3 buildings x 2 views x 12 domains, 4 x 4 pixels."""
    for building in BUILDINGS:
        for point, view in VIEWS:
            write_view(tmp_path, building, point, view)
    return tmp_path


def load_one(root: Path, domains: list[str], **options) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first view of the first building."""
    return TaskonomyViews(root, [BUILDINGS[0]], domains, **options)[0]


# --- decoding -------------------------------------------------------------------------------------


def test_views_are_every_building_and_view_in_order(taskonomy_root):
    views = TaskonomyViews(taskonomy_root, list(BUILDINGS), ["normal"]).views
    assert [(v.building, v.point, v.view) for v in views] == [(b, p, v) for b in BUILDINGS for p, v in VIEWS]


def test_depth_in_metres_with_invalid_masked(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["depth_zbuffer", "depth_euclidean"])
    depth, mask = targets["depth_zbuffer"], targets["depth_zbuffer_mask"]
    assert depth.shape == (1, SIZE, SIZE) and depth.dtype == torch.float32 and mask.dtype == torch.bool
    assert depth[0, 0, 0] == 2.0 and depth[0, 0, 2] == 3 / 512
    assert not mask[0, 0, 1] and depth[0, 0, 1] == 0.0
    assert int(mask.sum()) == SIZE * SIZE - 1
    assert targets["depth_euclidean"][0, 0, 0] == 3.0  # (1024 + 512) / 512


def test_normals_are_unit_vectors_and_grey_is_masked(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["normal"])
    normal, mask = targets["normal"], targets["normal_mask"]
    assert normal.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(normal[:, 0, 0], [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)], atol=5e-3)
    np.testing.assert_allclose(normal[:, 1, 1], [0.0, 0.0, 1.0], atol=5e-3)
    lengths = normal.norm(dim=0)
    np.testing.assert_allclose(lengths[mask[0]], 1.0, atol=1e-6)
    assert not mask[0, 0, 1] and lengths[0, 1] == 0.0


def test_curvature_signed_around_128(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["curvature"])
    curvature = targets["curvature"]
    assert curvature.shape == (2, SIZE, SIZE) and "curvature_mask" not in targets
    assert curvature[:, 0, 0].tolist() == [1.0, -1.0]
    assert curvature[:, 1, 1].tolist() == [0.0, 0.0]


def test_curvature_folder_named_as_the_reference_is_read(taskonomy_root):
    for building in BUILDINGS:
        (taskonomy_root / building / "principal_curvature").rename(taskonomy_root / building / "curvature")
        for path in (taskonomy_root / building / "curvature").iterdir():
            path.rename(path.with_name(path.name.replace("principal_curvature", "curvature")))
    _, targets = load_one(taskonomy_root, ["curvature"])
    assert targets["curvature"][:, 0, 0].tolist() == [1.0, -1.0]


def test_domain_first_layout_of_the_reference_is_read(taskonomy_root, tmp_path_factory):
    domain_first = tmp_path_factory.mktemp("domain_first")
    for building in BUILDINGS:
        for folder in (taskonomy_root / building).iterdir():
            (domain_first / folder.name).mkdir(exist_ok=True)
            folder.rename(domain_first / folder.name / building)
    assert find_buildings(domain_first) == list(BUILDINGS)
    dataset = TaskonomyViews(domain_first, list(BUILDINGS), ["depth_zbuffer", "curvature"])
    assert len(dataset) == 6 and dataset[0][1]["depth_zbuffer"][0, 0, 0] == 2.0
    (domain_first / "normal" / "beechwood").rename(domain_first / "beechwood_elsewhere")
    assert "domain folders missing: normal/beechwood" in error_of(domain_first, list(BUILDINGS), ["normal"])


def test_reshading_keypoints_edges_scaled_to_unit_interval(taskonomy_root):
    domains = ["reshading", "keypoints2d", "keypoints3d", "edge_texture", "edge_occlusion"]
    _, targets = load_one(taskonomy_root, domains)
    assert torch.allclose(targets["reshading"], torch.full((1, SIZE, SIZE), 0.2))
    for domain in domains[1:]:
        assert targets[domain].shape == (1, SIZE, SIZE)
        assert targets[domain][0, 0, 0] == 1.0 and targets[domain][0, 1, 1] == 0.0


def test_segmentation_indices_round_trip(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["segment_semantic"])
    assert targets["segment_semantic"].dtype == torch.int64
    assert targets["segment_semantic"].tolist() == SEGMENT.astype(np.int64).tolist()


def test_class_object_is_a_distribution(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["class_object"])
    distribution = targets["class_object"]
    assert distribution.shape == (1000,) and distribution.dtype == torch.float32
    assert distribution.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert int(distribution.argmax()) == 7 and distribution[7].item() == pytest.approx(0.5, abs=1e-6)


def test_class_object_logits_are_softmaxed(taskonomy_root):
    logits = np.zeros(1000, dtype=np.float32)
    logits[3] = math.log(999.0)  # softmax: 999 / (999 + 999) at index 3
    np.save(domain_path(taskonomy_root, BUILDINGS[0], "class_object", 0, 0, ".npy"), logits)
    _, targets = load_one(taskonomy_root, ["class_object"])
    assert targets["class_object"][3].item() == pytest.approx(0.5, abs=1e-6)
    assert targets["class_object"].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_rgb_input_normalised_and_rgb_target_in_unit_interval(taskonomy_root):
    rgb, targets = load_one(taskonomy_root, ["rgb"])
    pixels = rgb_of(BUILDINGS[0], 0)
    expected = (pixels[1, 2, 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert rgb.shape == (3, SIZE, SIZE) and rgb[0, 1, 2].item() == pytest.approx(expected, abs=1e-6)
    assert targets["rgb"][0, 1, 2].item() == pytest.approx(pixels[1, 2, 0] / 255.0, abs=1e-7)
    minus_one_to_one, _ = load_one(taskonomy_root, [], input_scaling="minus_one_to_one")
    assert minus_one_to_one[0, 1, 2].item() == pytest.approx(pixels[1, 2, 0] / 127.5 - 1.0, abs=1e-6)


def test_mask_with_depth_masks_every_continuous_domain(taskonomy_root):
    _, targets = load_one(taskonomy_root, ["reshading", "normal", "segment_semantic"], mask_with_depth=True)
    assert not targets["reshading_mask"][0, 0, 1] and int(targets["reshading_mask"].sum()) == SIZE * SIZE - 1
    assert targets["normal_mask"].equal(targets["reshading_mask"])  # grey pixel (0, 1) is also invalid depth
    assert "segment_semantic_mask" not in targets and "depth_zbuffer" not in targets


# --- resizing -------------------------------------------------------------------------------------


def test_resize_keeps_integer_labels(taskonomy_root):
    for size in (2, 6, (3, 5)):
        _, targets = load_one(taskonomy_root, ["segment_semantic"], image_size=size)
        labels = targets["segment_semantic"]
        expected_shape = (size, size) if isinstance(size, int) else size
        assert labels.dtype == torch.int64 and tuple(labels.shape) == expected_shape
        assert set(labels.unique().tolist()) <= set(SEGMENT.ravel().tolist())


def test_resize_masks_every_pixel_touched_by_invalid_depth(taskonomy_root):
    rgb, targets = load_one(taskonomy_root, ["depth_zbuffer", "normal", "class_object"], image_size=2)
    # the invalid source pixel (0, 1) lies under the 2x-downsampling filter of outputs (0, 0) and (0, 1)
    assert rgb.shape == (3, 2, 2)
    assert targets["depth_zbuffer_mask"].tolist() == [[[False, False], [True, True]]]
    assert targets["depth_zbuffer"][0, 1].tolist() == pytest.approx([2.0, 2.0], abs=1e-6)
    assert targets["depth_zbuffer"][0, 0].tolist() == [0.0, 0.0]
    normal_lengths = targets["normal"].norm(dim=0)[targets["normal_mask"][0]]
    np.testing.assert_allclose(normal_lengths, 1.0, atol=1e-5)
    assert targets["class_object"].shape == (1000,)


def test_batches_through_a_dataloader(taskonomy_root):
    dataset = TaskonomyViews(taskonomy_root, list(BUILDINGS), ["depth_zbuffer", "segment_semantic", "class_object"])
    rgb, targets = next(iter(DataLoader(dataset, batch_size=4)))
    assert rgb.shape == (4, 3, SIZE, SIZE)
    assert targets["depth_zbuffer_mask"].shape == (4, 1, SIZE, SIZE)
    assert targets["segment_semantic"].shape == (4, SIZE, SIZE) and targets["class_object"].shape == (4, 1000)


# --- splits ---------------------------------------------------------------------------------------


def test_split_is_disjoint_deterministic_and_order_free():
    names = [f"building_{k:02d}" for k in range(10)]
    split = split_buildings(names)
    assert split == split_buildings(list(reversed(names))) == split_buildings(names + names[:3])
    assert (len(split.train), len(split.val), len(split.test)) == (6, 2, 2)  # round(1.5) == 2
    assert sorted(split.train + split.val + split.test) == names
    assert not set(split.train) & set(split.val) and not set(split.train) & set(split.test)
    assert not set(split.val) & set(split.test)
    assert list(split.train) == sorted(split.train)


def test_split_of_the_buildings_found(taskonomy_root):
    assert find_buildings(taskonomy_root) == list(BUILDINGS)
    split = split_buildings(find_buildings(taskonomy_root))
    assert (len(split.train), len(split.val), len(split.test)) == (1, 1, 1)


def test_split_errors():
    with pytest.raises(ConfigError, match="cannot split 2 buildings"):
        split_buildings(["a", "b"])
    with pytest.raises(ConfigError, match=r"buildings \['b'\] are in both the train and test splits"):
        BuildingSplit(train=("a", "b"), val=("c",), test=("b",))


# --- missing or wrong data: one error, one line ---------------------------------------------------


def error_of(root: Path, buildings: list[str], domains: list[str]) -> str:
    with pytest.raises(DataRootError) as caught:
        TaskonomyViews(root, buildings, domains)
    message = str(caught.value)
    assert "\n" not in message and "download or render the missing data" in message
    return message


def test_missing_building_names_it_and_the_buildings_found(taskonomy_root):
    message = error_of(taskonomy_root, ["allensville", "zebulon"], ["normal"])
    assert "buildings not found: zebulon; buildings found: allensville, beechwood, cosmos" in message


def test_missing_domain_folder_names_it(taskonomy_root):
    for path in (taskonomy_root / "beechwood" / "normal").iterdir():
        path.unlink()
    (taskonomy_root / "beechwood" / "normal").rmdir()
    message = error_of(taskonomy_root, list(BUILDINGS), ["normal", "depth_zbuffer"])
    assert "domain folders missing: beechwood/normal" in message
    assert "view files missing" not in message


def test_missing_view_file_names_it(taskonomy_root):
    domain_path(taskonomy_root, "cosmos", "depth_zbuffer", 1, 2).unlink()
    message = error_of(taskonomy_root, list(BUILDINGS), ["normal", "depth_zbuffer"])
    assert "1 view files missing: cosmos/depth_zbuffer/point_1_view_2_domain_depth_zbuffer.png" in message


def test_many_missing_files_are_counted_and_the_first_listed(taskonomy_root):
    for building in BUILDINGS:
        for point, view in VIEWS:
            domain_path(taskonomy_root, building, "class_object", point, view, ".npy").unlink()
    domain_path(taskonomy_root, "allensville", "rgb", 0, 0).unlink()  # the view is still in normal/
    message = error_of(taskonomy_root, list(BUILDINGS) + ["zebulon"], ["class_object", "normal"])
    assert "buildings not found: zebulon" in message
    assert "7 view files missing: allensville/rgb/point_0_view_0_domain_rgb.png, " in message
    assert "and 4 more" in message


def test_file_in_the_wrong_bit_depth_is_named(taskonomy_root):
    path = domain_path(taskonomy_root, "allensville", "depth_zbuffer", 0, 0)
    save_png(path, np.zeros((SIZE, SIZE), dtype=np.uint8))
    with pytest.raises(DataRootError, match="expected a 16-bit greyscale PNG"):
        load_one(taskonomy_root, ["depth_zbuffer"])


def test_unknown_domain_and_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="unknown Taskonomy domains \\['depth'\\]"):
        TaskonomyViews(tmp_path, ["a"], ["depth"])
    with pytest.raises(DataRootError, match="no such directory"):
        TaskonomyViews(tmp_path / "absent", ["a"], ["normal"])


def test_manifest_checksums(taskonomy_root):
    files = sorted(p for p in taskonomy_root.rglob("*") if p.is_file())
    manifest = {"files": {p.relative_to(taskonomy_root).as_posix(): file_sha256(p) for p in files}}
    (taskonomy_root / "manifest.json").write_text(json.dumps(manifest))
    assert len(TaskonomyViews(taskonomy_root, list(BUILDINGS), ["normal"], verify_checksums=True)) == 6
    save_png(domain_path(taskonomy_root, "beechwood", "normal", 1, 2), NORMAL[::-1].copy())
    with pytest.raises(DataRootError, match="1 files with a sha256 other than the manifest's: "
                                            "beechwood/normal/point_1_view_2_domain_normal.png"):
        TaskonomyViews(taskonomy_root, list(BUILDINGS), ["normal"], verify_checksums=True)


# --- losses ---------------------------------------------------------------------------------------


def test_task_table_covers_the_paper_order_and_the_loader():
    assert list(TASK_LOSSES) == list(ITASKONOMY_ORDER)
    assert set(ITASKONOMY_ORDER) == set(DOMAIN_FORMATS) and len(ITASKONOMY_ORDER) == 12
    assert ITASKONOMY_ORDER[0] == "curvature" and ITASKONOMY_ORDER[-1] == "rgb"


def test_decoded_targets_fit_the_task_table(taskonomy_root):
    _, targets = load_one(taskonomy_root, list(ITASKONOMY_ORDER))
    for task, spec in TASK_LOSSES.items():
        if task == "segment_semantic":
            assert int(targets[task].max()) < spec.out_channels
        else:
            assert targets[task].shape[0] == spec.out_channels, task


def test_masked_l1_ignores_invalid_pixels():
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [0.0, 10.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    assert masked_l1(prediction, target, mask).item() == 2.0  # (1 + 2 + 3) / 3
    assert masked_l1(prediction, target).item() == 3.0  # (1 + 2 + 3 + 6) / 4
    assert masked_l2(prediction, target, mask).item() == pytest.approx(14 / 3)  # (1 + 4 + 9) / 3
    assert masked_l1(prediction, target, torch.zeros_like(mask)).item() == 0.0


def test_masked_l1_one_mask_for_all_channels():
    prediction = torch.zeros(1, 3, 1, 2)
    target = torch.tensor([[[[1.0, 100.0]], [[2.0, 100.0]], [[3.0, 100.0]]]])
    mask = torch.tensor([[[[True, False]]]])  # (N, 1, H, W)
    assert masked_l1(prediction, target, mask).item() == 2.0  # (1 + 2 + 3) / 3 channels x 1 pixel


def test_cross_entropy_ignores_unlabelled_pixels():
    labels = torch.tensor([[[1, 0]]])  # (N, H, W): pixel 1 unlabelled
    logits = torch.zeros(1, 3, 1, 2)
    assert segmentation_cross_entropy(logits, labels).item() == pytest.approx(math.log(3))
    logits[0, 2, 0, 1] = 50.0  # any logits at the unlabelled pixel
    assert segmentation_cross_entropy(logits, labels).item() == pytest.approx(math.log(3))
    assert segmentation_cross_entropy(logits, torch.zeros_like(labels)).item() == 0.0


def test_distribution_loss_zero_only_for_identical_distributions():
    target = torch.tensor([[0.5, 0.5, 0.0]])
    assert distribution_kl(torch.log(torch.tensor([[0.5, 0.5, 1e-30]])), target).item() == pytest.approx(0.0, abs=1e-7)
    logits = torch.tensor([[0.0, math.log(3.0), -1e9]])  # softmax (0.25, 0.75, 0)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert distribution_kl(logits, target).item() == pytest.approx(expected, abs=1e-6) and expected > 0


def test_task_loss_uses_the_loader_masks(taskonomy_root):
    dataset = TaskonomyViews(taskonomy_root, list(BUILDINGS), ["depth_zbuffer", "reshading"])
    _, targets = next(iter(DataLoader(dataset, batch_size=6)))
    prediction = targets["depth_zbuffer"] + 1.0
    prediction[targets["depth_zbuffer_mask"].logical_not()] = 1e6  # masked pixels must not count
    assert task_loss("depth_zbuffer", prediction, targets).item() == pytest.approx(1.0)
    assert task_loss("reshading", targets["reshading"], targets).item() == 0.0
    with pytest.raises(ConfigError, match="unknown iTaskonomy task 'depth'"):
        task_loss("depth", prediction, targets)


def test_correct_and_count_by_hand():
    targets = {"segment_semantic": torch.tensor([[[1, 2, 0]]]), "class_object": torch.tensor([[0.1, 0.9], [0.8, 0.2]])}
    logits = torch.zeros(1, 3, 1, 3)
    logits[0, 1, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 0, 2] = 1.0  # predicts class 1 everywhere
    assert correct_and_count("segment_semantic", logits, targets) == (1, 2)  # unlabelled pixel not counted
    assert correct_and_count("class_object", torch.tensor([[0.0, 1.0], [0.0, 1.0]]), targets) == (1, 2)
    with pytest.raises(ConfigError, match="classification-like task"):
        correct_and_count("normal", logits, targets)


# --- loss-matrix metrics (dyadic values: exact in float64) ---------------------------------------

L3 = np.array([
    [1.0, NAN, NAN],
    [1.5, 0.5, NAN],
    [2.0, 0.75, 0.25],
])

# Task 0's loss is lowest after step 1, not on the diagonal; task 2 ends below its diagonal value.
L4 = np.array([
    [2.0, NAN, NAN, NAN],
    [1.0, 1.0, NAN, NAN],
    [1.5, 0.5, 1.0, NAN],
    [1.75, 1.0, 0.75, 0.5],
])


def test_loss_forgetting_three_tasks_by_hand():
    # g0 = 2.0 - min(1.0, 1.5) = 1.0 ; g1 = 0.75 - 0.5 = 0.25 ; mean 0.625
    np.testing.assert_array_equal(loss_forgetting_per_task(L3), [1.0, 0.25])
    assert loss_forgetting(L3) == 0.625


def test_loss_forgetting_lowest_loss_off_the_diagonal():
    # g0 = 1.75 - min(2.0, 1.0, 1.5) = 0.75 ; g1 = 1.0 - min(1.0, 0.5) = 0.5 ; g2 = 0.75 - 1.0 = -0.25
    np.testing.assert_array_equal(loss_forgetting_per_task(L4), [0.75, 0.5, -0.25])
    assert loss_forgetting(L4) == 1.0 / 3


def test_unchanged_losses_forget_exactly_nothing():
    column = np.array([0.1, 0.3, 0.7])  # not dyadic: exact only because the values never change
    constant = np.tril(np.broadcast_to(column, (3, 3)))
    np.testing.assert_array_equal(loss_forgetting_per_task(constant), [0.0, 0.0])
    assert loss_forgetting(constant) == 0.0
    assert loss_forgetting(np.array([[0.3]])) == 0.0 and loss_forgetting_per_task([[0.3]]).size == 0


def test_loss_curves_and_bad_matrices():
    curves = loss_curves(L3)
    assert [c.tolist() for c in curves] == [[1.0, 1.5, 2.0], [0.5, 0.75], [0.25]]
    bad = L3.copy()
    bad[2, 1] = -0.5
    with pytest.raises(ConfigError, match=r"L\[2, 1\] = -0.5 is not a finite non-negative loss"):
        loss_forgetting(bad)
    with pytest.raises(ConfigError, match="non-empty square"):
        loss_forgetting(np.zeros((2, 3)))


def test_accuracy_summary_reads_only_the_classification_columns():
    # column 0 is a regression task (no accuracy); tasks 1 and 2 are classification-like
    R = np.array([
        [NAN, NAN, NAN],
        [NAN, 0.75, NAN],
        [NAN, 0.5, 0.25],
    ])
    assert accuracy_summary(R, [1, 2]) == {
        "accuracy[1]": 0.5, "accuracy[2]": 0.25, "forgetting[1]": 0.25,
        "average_accuracy": 0.375, "forgetting": 0.25,
    }
    with pytest.raises(ConfigError, match=r"R\[1, 1\] = nan"):
        accuracy_summary(np.where(np.eye(3, dtype=bool), NAN, R), [1, 2])
    with pytest.raises(ConfigError, match="distinct task indices in 0..2"):
        accuracy_summary(R, [1, 3])
