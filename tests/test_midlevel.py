"""The mid-level base: shipped weights, pre-training and distillation on a tiny rendered set, the
Taskonomy ResNet-50 from a visualpriors checkpoint, the FCN5 side, and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from continual_side.cli import main
from continual_side.errors import ConfigError, WeightsError
from continual_side.hub import PACKAGED_DIR, file_sha256, get_spec
from continual_side.methods.common import BASES
from continual_side.midlevel_training import (
    DistillConfig, PretrainConfig, ViewTensors, decode_views, distill, frozen_outputs, pretrain,
)
from continual_side.models.midlevel import FCN5, MidLevelEncoder, TaskonomyEncoder, midlevel, taskonomy_encoder
from continual_side.models.side import FCN4, make_side
from continual_side.streams.taskonomy_data import find_buildings
from envs.taskonomy_render import TaskonomyRenderConfig, render_taskonomy

SHIPPED = {"midlevel-curvature": MidLevelEncoder, "fcn5-midlevel": FCN5}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """3 buildings x 4 views at 128 px (split 1/1/1); training tests read them resized to 32 px."""
    out = tmp_path_factory.mktemp("taskonomy") / "set"
    config = TaskonomyRenderConfig(buildings=("apartment_0", "apartment_1", "apartment_2"), views_per_building=4,
                                   resolution=128, out=out, workers=1)
    return render_taskonomy(config).root


def _events(run: Path, phase: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["phase"] == phase]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_their_sha256_and_load_strictly(name):
    spec = get_spec(name)
    path = PACKAGED_DIR / spec.filename
    assert file_sha256(path) == spec.sha256
    assert spec.url is None and spec.licence == "MIT" and (PACKAGED_DIR / spec.licence_file).is_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = SHIPPED[name]().state_dict()
    assert list(state) == list(expected)
    assert all(state[key].shape == value.shape for key, value in expected.items())


def test_distilled_fcn5_reproduces_the_shipped_encoder_better_than_a_random_one(tiny_set):
    encoder = midlevel(weights=True)
    views = decode_views(tiny_set, find_buildings(tiny_set), [], image_size=128, mask_with_depth=False, label="all")
    target = frozen_outputs(encoder, views, 12, torch.device("cpu"))
    assert target.shape == (12, 8, 16, 16)
    distilled = make_side("distilled", encoder)
    torch.manual_seed(0)
    random_side = make_side("random", encoder)
    assert type(distilled) is FCN5 and type(random_side) is FCN5
    distilled_mse = F.mse_loss(frozen_outputs(distilled, views, 12, torch.device("cpu")), target)
    random_mse = F.mse_loss(frozen_outputs(random_side, views, 12, torch.device("cpu")), target)
    mean_map_mse = F.mse_loss(target.mean(dim=0).expand_as(target), target)
    # measured: 0.022, 0.84 and 0.043; below the mean map's: the side follows the image, not only the average
    assert distilled_mse < 0.1 * random_mse and distilled_mse < 0.75 * mean_map_mse


def test_cifar_bases_keep_fcn4():
    assert type(make_side("random", BASES["resnet20"]())) is FCN4
    assert type(make_side("distilled", None)) is FCN4


def test_pretrain_learns_and_writes_its_run_folder(tiny_set, tmp_path):
    weights = tmp_path / "encoder.pt"
    config = PretrainConfig(data_root=str(tiny_set), image_size=32, epochs=8, batch_size=2, lr=3e-3,
                            out=str(tmp_path / "runs"), weights=str(weights))
    summary = pretrain(config)
    run = tmp_path / "runs" / "pretrain" / "curvature" / "seed-0"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "loss_curves.png", "metrics.jsonl", "summary.json"]
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["views"] == {"train": 4, "val": 4, "test": 4}
    assert summary["weights_sha256"] == file_sha256(weights)
    pretraining = _events(run, "pre-training")
    assert [event["epoch"] for event in pretraining] == list(range(1, 9))
    assert pretraining[-1]["train_loss"] < 0.5 * pretraining[0]["train_loss"]
    assert len(_events(run, "decoder on the random encoder")) == 8
    for key in ("pretraining_test_loss", "frozen_pretrained_test_loss", "frozen_random_test_loss",
                "blank_feature_test_loss"):
        assert 0 < summary[key] < 1
    loaded = midlevel(weights=weights)
    assert loaded.features(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 4, 4)


def test_distill_learns_the_feature_map(tiny_set, tmp_path):
    config = DistillConfig(data_root=str(tiny_set), image_size=32, epochs=10, batch_size=2, lr=3e-3,
                           out=str(tmp_path / "runs"))
    summary = distill(config)
    run = tmp_path / "runs" / "distill" / "fcn5" / "seed-0"
    assert summary["teacher"] == "hub: midlevel-curvature"
    assert summary["distilled_test_mse"] < 0.5 * summary["untrained_test_mse"]
    distillation = _events(run, "distillation")
    assert distillation[-1]["train_loss"] < distillation[0]["train_loss"]
    side = FCN5()
    side.load_state_dict(torch.load(run / "fcn5.pt", weights_only=True), strict=True)


def test_frozen_outputs_and_view_tensors_keep_the_view_order():
    data = ViewTensors(torch.arange(10.0).view(10, 1), {"y": torch.arange(10)})
    inputs, targets = data.batch(torch.tensor([3, 1]), torch.device("cpu"))
    assert inputs.flatten().tolist() == [3.0, 1.0] and targets["y"].tolist() == [3, 1]
    doubled = frozen_outputs(torch.nn.Identity(), data, 3, torch.device("cpu"))
    assert torch.equal(doubled, data.inputs)


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--task", "curvatur"], "unknown or non-pixel task 'curvatur'"),
    (["pretrain", "--task", "class_object"], "unknown or non-pixel task 'class_object'"),
    (["pretrain", "--image-size", "30"], "image_size=30 must be a multiple of 8"),
    (["distill", "--epochs", "0"], "epochs=0 must be a positive integer"),
    (["distill", "--encoder-weights", "/nonexistent/encoder.pt"], "/nonexistent/encoder.pt does not exist"),
])
def test_cli_refuses_bad_input_in_one_line(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not any(tmp_path.iterdir())  # nothing written before the input was checked


def _visualpriors_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """A file in visualpriors' format: a dict with the encoder's state_dict under 'state_dict'."""
    torch.save({"state_dict": state, "epoch": 0}, path)
    return path


def test_taskonomy_encoder_loads_a_visualpriors_checkpoint_strictly(tmp_path):
    torch.manual_seed(0)
    source = TaskonomyEncoder().eval()
    with torch.no_grad():
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # not the defaults, so a load that skips them shows
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = _visualpriors_checkpoint(tmp_path / "curvature_encoder.pth", source.state_dict())
    assert BASES["taskonomy"] is taskonomy_encoder
    loaded = taskonomy_encoder(weights=path).eval()
    images = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected, features = source(images), loaded.features(images)
    assert features.shape == (1, 8, 16, 16)
    assert torch.equal(features, expected)
    assert len(loaded.residual_blocks()) == 16 and loaded.feature_stride == 16


def test_taskonomy_encoder_refuses_wrong_or_missing_weights(tmp_path):
    state = TaskonomyEncoder().state_dict()
    state["compress1.weight"] = torch.zeros(16, 2048, 3, 3)
    path = _visualpriors_checkpoint(tmp_path / "wide.pth", state)
    with pytest.raises(WeightsError, match=r"shape mismatch compress1.weight \(16, 2048, 3, 3\) vs \(8, 2048, 3, 3\)"):
        taskonomy_encoder(weights=path)
    with pytest.raises(WeightsError, match="does not exist"):
        taskonomy_encoder(weights=tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="--base-weights PATH"):
        taskonomy_encoder(weights=True)
    with pytest.raises(ConfigError, match="base_copy"):
        make_side("random", TaskonomyEncoder())
