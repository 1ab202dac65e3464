"""The side-by-side speed and memory benchmark (``continual-side perf``): what it measures, not how fast."""

import json

import pytest
import torch

from continual_side.methods import TrainConfig
from continual_side.models.backbones import resnet20
from continual_side.perf import PerfConfig, format_table, profiler_peak_bytes, run_perf
from continual_side.streams.split_cifar10 import SplitCifar10Options


def test_profiler_peak_is_the_running_maximum_of_allocations():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        a = torch.empty(1 << 20, dtype=torch.uint8)
        del a
        b = torch.empty(3 << 18, dtype=torch.uint8)
        c = torch.empty(1 << 18, dtype=torch.uint8)
        del b, c
    assert profiler_peak_bytes(prof) == 1 << 20


def test_perf_measures_every_variant_on_the_same_batches(cifar10_jpeg, tmp_path):
    out = tmp_path / "perf"
    report = run_perf(
        PerfConfig(train=TrainConfig(base="resnet20", epochs=2, batch_size=16),
                   variants=("naive", "finetune", "sidetune", "features"), out=str(out)),
        "split_cifar10",
        SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=2, classes_per_task=2, images_per_class=16,
                            test_images_per_class=2),
    )
    v = report["variants"]
    assert report["same_batches"] and json.loads((out / "perf_cl.json").read_text())["variants"] == v
    # counted independently: ResNet-20 without its 10-way classifier, plus one 2-way head over the 64-d feature
    head = 64 * 2 + 2
    finetune = sum(p.numel() for p in resnet20().parameters()) - (64 * 10 + 10) + head
    assert v["naive"]["trainable_parameters"] == v["finetune"]["trainable_parameters"] == finetune
    assert v["features"]["trainable_parameters"] == head
    assert all(r["images_per_epoch"] == 32 for r in v.values())
    # no base activations kept for backward: the frozen-base methods need a fraction of fine-tuning's memory
    assert v["features"]["peak_mb"] < v["sidetune"]["peak_mb"] < 0.5 * v["finetune"]["peak_mb"]
    assert report["ratios_vs_finetune"]["features"]["trainable_parameters"] == pytest.approx(head / finetune)
    assert {t["ratio"] for t in report["targets"]} == {"sidetune/finetune epoch_s", "sidetune/finetune peak_mb",
                                                       "finetune/naive epoch_s"}
    assert "| sidetune |" in format_table(report)


def test_perf_runs_through_the_cli_and_prints_the_ratio_table(cifar10_jpeg, tmp_path, capsys):
    from continual_side.cli import main

    out = tmp_path / "perf"
    main(["perf", "--stream", "split_cifar10", "--data-root", str(cifar10_jpeg), "--n-tasks", "5",
          "--images-per-class", "8", "--test-images-per-class", "2", "--base", "resnet20", "--epochs", "2",
          "--batch-size", "8", "--variants", "finetune", "features", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads((out / "perf_cl.json").read_text())
    assert report["stream"] == "split_cifar10" and report["stream_options"]["images_per_class"] == 8
    ratio = report["ratios_vs_finetune"]["features"]["epoch_s"]
    assert "| features |" in printed and f"{ratio:.3f}" in printed
