"""A method and a stream added from outside the package (one registration each) run through the CLI.

Nothing in the runner, the CLI, the bench or the report names a method or a stream: this module
registers throwaway ones, runs them through ``continual-side stream`` and ``bench``, and unregisters
them afterwards, so no other test sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from continual_side.cli import main
from continual_side.errors import ConfigError
from continual_side.methods import METHODS, register_method
from continual_side.methods.common import SharedBaseModel, pretrained_base
from continual_side.models.sidetuned import FrozenBase
from continual_side.streams import STREAMS, register_stream
from continual_side.streams.benchmark import task_benchmark
from continual_side.streams.imagefolder import ImageTensors
from continual_side.sweep import SweepConfig, grid_jobs, resolve_methods


@dataclass
class NoisyProbeOptions:
    """Options of the throwaway method.

    :param noise: standard deviation of Gaussian noise added to the frozen feature while training.
    """

    noise: float = 0.1


class NoisyProbe(SharedBaseModel):
    def __init__(self, base, noise: float) -> None:
        super().__init__(FrozenBase(base))
        self.noise = noise

    def forward_single_task(self, x, task_label):
        feature = self.base(x)
        if self.training:
            feature = feature + self.noise * torch.randn_like(feature)
        return self.task(task_label)(feature)


@dataclass
class StripesOptions:
    """Options of the throwaway stream.

    :param n_tasks: number of 2-class tasks.
    :param images: images per class.
    """

    n_tasks: int = 2
    images: int = 6


def stripes(options: StripesOptions, progress: bool = False):
    """Class 0: horizontal stripes, class 1: vertical ones, in a different colour per task."""
    tasks = []
    for task in range(options.n_tasks):
        split = []
        for offset in (0, 100):
            images = torch.zeros(2 * options.images, 3, 32, 32, dtype=torch.uint8)
            images[: options.images, task % 3, ::4, :] = 200 + offset // 10
            images[options.images:, task % 3, :, ::4] = 200 + offset // 10
            targets = torch.tensor([0] * options.images + [1] * options.images)
            split.append(ImageTensors(images, targets, [f"h{task}", f"v{task}"]))
        tasks.append(tuple(split))
    return task_benchmark("stripes", tasks)


@pytest.fixture()
def throwaway():
    """Register the method and the stream for one test, then remove them (test order never matters)."""
    register_method("noisy_probe", options=NoisyProbeOptions,
                    model=lambda options, train: NoisyProbe(pretrained_base(train), options.noise),
                    trained="the current task's linear head, on a noisy frozen feature",
                    trainable=lambda name, task: name.startswith(f"tasks.{task}."))
    register_stream("stripes", options=StripesOptions, build=stripes)
    yield
    METHODS.pop("noisy_probe")
    STREAMS.pop("stripes")


def test_a_registered_method_and_stream_run_through_stream_and_bench(throwaway, tmp_path, capsys):
    common = ["--stream", "stripes", "--n-tasks", "3", "--images", "4", "--base", "resnet20", "--epochs", "2",
              "--batch-size", "4", "--out", str(tmp_path), "--no-progress"]
    main(["stream", "--method", "noisy_probe", "--noisy_probe.noise", "0.5", *common])
    folder = tmp_path / "stripes" / "noisy_probe" / "seed-0"
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["method"] == {"name": "noisy_probe", "noise": 0.5}
    assert config["stream"] == {"name": "stripes", "n_tasks": 3, "images": 4}

    main(["bench", "--methods", "noisy_probe", "features", "--seeds", "1", "--noisy_probe.noise", "0.5", *common])
    table = (tmp_path / "stripes" / "comparison" / "table.md").read_text()
    assert "| noisy_probe | 1 |" in table and "| features | 1 |" in table
    assert "- noisy_probe: the current task's linear head, on a noisy frozen feature" in table
    assert "- noisy_probe: noise=0.5" in table and "Runs differ in" not in table

    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["stream", "--method", "noisy_probe", "--help"])
    assert "--noisy-probe.noise" in capsys.readouterr().out  # tyro writes dashes; both spellings parse


def test_registration_refuses_taken_names_and_options_without_defaults(throwaway):
    with pytest.raises(ValueError, match="'noisy_probe' is registered already"):
        register_method("noisy_probe", model=lambda o, t: None, trained="", trainable=lambda n, t: False)

    @dataclass
    class Required:
        size: int

    with pytest.raises(TypeError):
        register_stream("needs_size", options=Required, build=stripes)
    assert "needs_size" not in STREAMS
    with pytest.raises(ValueError, match="unknown base 'resnet50'"):
        register_stream("big_base", options=StripesOptions, build=stripes, base="resnet50")
    assert "big_base" not in STREAMS


@pytest.fixture()
def classes_only_and_dense(throwaway):
    """A method registered for classes only and a stream registered as dense, beside the throwaway ones."""
    register_method("classes_only", model=lambda options, train: None, trained="", trainable=lambda n, t: False,
                    dense=False)
    register_stream("dense_stripes", options=StripesOptions, build=stripes, dense=True)
    yield
    METHODS.pop("classes_only")
    STREAMS.pop("dense_stripes")


def test_all_runs_each_stream_with_the_methods_its_kind_of_task_suits(classes_only_and_dense, tmp_path):
    assert METHODS["noisy_probe"].dense and not STREAMS["stripes"].dense  # the defaults: any task; classes
    assert "classes_only" not in resolve_methods(["all"], ["dense_stripes"])
    assert "classes_only" in resolve_methods(["all"], ["stripes"])
    assert "classes_only" in resolve_methods(["all"], ["stripes", "dense_stripes"])
    jobs = grid_jobs(SweepConfig(streams=("stripes", "dense_stripes"), methods=("all",), seeds=1, out=str(tmp_path)))
    runs = {(job.config.stream, job.config.method) for job in jobs}
    assert {("stripes", "classes_only"), ("stripes", "noisy_probe"), ("dense_stripes", "noisy_probe")} <= runs
    assert ("dense_stripes", "classes_only") not in runs
    with pytest.raises(ConfigError, match="classes_only cannot run the dense stream 'dense_stripes'"):
        resolve_methods(["noisy_probe", "classes_only"], ["stripes", "dense_stripes"])


def test_demo_imports_neither_habitat_nor_envs_nor_gymnasium_registrations(tmp_path):
    code = ("import sys; from continual_side.cli import main; main(['demo', '--epochs', '1', '--out', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('habitat', 'envs', 'agents', 'gym')))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=900,
                            env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "average accuracy" in result.stdout and (tmp_path / "demo" / "sidetune" / "seed-0" / "summary.json").is_file()
