"""Speed and memory of the methods on one stream, side by side (``continual-side perf``).

Every variant trains on the same experiences with the same batches (the shuffle is re-seeded before
each epoch, and a digest of each epoch's targets proves it). A plain Avalanche ``Naive`` over the
fine-tuning model is the reference for the harness overhead; our variants run with the run loop's
evaluator and progress plugin, as ``continual-side stream`` does. Measured per variant: seconds per
epoch (first epoch, and the steady state of the later ones, when a feature cache is warm), images per
second, peak training memory and trainable parameters. Peak memory is taken over the first
``memory_iterations`` iterations of a fresh strategy (gradients and Adam state included), above what
was allocated before: CUDA's peak allocated bytes on a GPU, the torch profiler's tensor allocations
on a CPU; that profile also names the top operators by self CPU time.

Any registered stream can be measured, with the stream's default base unless ``--base`` names one: on
``--stream itaskonomy`` every variant trains the first dense task (curvature) with its own loss over
the mid-level base, and side-tuning's epoch reads the frozen base's features from the cache.

Each epoch's CPU time (this process's, all its threads) is recorded beside its wall time: on a machine
whose cores other jobs share, wall times swing with their load while CPU times move much less
(measured on 2 cores at a load average of 3-4, five runs of one itaskonomy measurement: the
side-tuning/fine-tuning ratio of epoch wall times ranged over a factor 2.3, of CPU times over 1.15), so the
CPU-time ratio is the stabler estimate of the wall-time ratio on a quiet machine (on a GPU it counts
the host's work only).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Callable

import torch
import tyro
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate

from continual_side.errors import ConfigError
from continual_side.methods import TrainConfig, build_strategy
from continual_side.methods.common import (
    SharedBaseModel,
    TaskCriterion,
    check_device,
    pretrained_base,
    trainable_features,
)
from continual_side.models.feature_cache import clear_memory_caches
from continual_side.atomic import atomic_write_text
from continual_side.runner import EpochProgress, is_dense, run_evaluator, stream_train_config, trainable_parameters
from continual_side.streams import get_stream, make_stream

RESULTS_FILE = "perf_cl.json"
VARIANTS = ("naive", "finetune", "sidetune_nocache", "sidetune", "features")
TARGETS = {  # (variant, reference, quantity): the targets, ratio at most
    ("sidetune", "finetune", "epoch_s"): 0.20,
    ("sidetune", "finetune", "peak_mb"): 0.30,
    ("finetune", "naive", "epoch_s"): 1.10,
}


@dataclass
class PerfConfig:
    """Side-by-side speed and memory: fine-tuning, side-tuning (feature cache off/on), fixed features, Avalanche Naive.

    :param variants: any of naive (plain Avalanche Naive over the fine-tuning model), finetune,
        sidetune_nocache, sidetune (with the configured feature cache; memory if off), features.
    :param experiences: experiences each variant trains on (from the first).
    :param memory_iterations: training iterations in the memory measurement.
    :param repeats: time every variant this many times (in turn); epoch times are medians.
    :param seed: seed of initialisation and of every epoch's shuffle.
    :param threads: torch intra-op CPU threads; None keeps torch's default. On a CPU shared with other
        jobs, 1 avoids OpenMP threads waiting on each other (measured here: 25x slower iterations
        with 2 threads on 2 busy cores).
    :param out: folder the results go into (``perf_cl.json``), as every command's ``--out`` is a folder.
    """

    train: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=lambda: TrainConfig(epochs=2))
    variants: tuple[str, ...] = VARIANTS
    experiences: int = 1
    memory_iterations: int = 2
    repeats: int = 1
    seed: int = 0
    threads: int | None = None
    out: str = "runs/perf"


class EpochRecorder(SupervisedPlugin):
    """Re-seeds each epoch's shuffle; records epoch wall times, images and a digest of the targets."""

    def __init__(self, seed: int, device: torch.device) -> None:
        super().__init__()
        self.seed, self.device = seed, device
        self.epoch_s: list[float] = []
        self.epoch_cpu_s: list[float] = []
        self.images: list[int] = []
        self.targets: list[torch.Tensor] = []
        self.digest = hashlib.sha256()
        self.trainable = 0
        self._start = self._start_cpu = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def before_training_epoch(self, strategy, **kwargs):
        torch.manual_seed(self.seed + 1000 * strategy.clock.train_exp_counter + strategy.clock.train_exp_epochs)
        self.targets = []
        self._sync()
        self._start, self._start_cpu = time.perf_counter(), time.process_time()

    def after_training_iteration(self, strategy, **kwargs):
        self.targets.append(strategy.mb_y.detach())

    def after_training_epoch(self, strategy, **kwargs):
        self._sync()
        self.epoch_s.append(time.perf_counter() - self._start)
        self.epoch_cpu_s.append(time.process_time() - self._start_cpu)
        targets = torch.cat(self.targets).cpu()
        self.images.append(len(targets))
        self.digest.update(targets.numpy().tobytes())


class MemoryWindow(SupervisedPlugin):
    """Peak bytes allocated above the start, over the first ``iterations`` training iterations, then stops."""

    def __init__(self, iterations: int, device: torch.device) -> None:
        super().__init__()
        self.iterations, self.device = iterations, device
        self.peak_bytes = 0
        self.top_ops: list[dict] = []
        self._profiler: torch.profiler.profile | None = None
        self._base = 0
        self._done = 0

    def before_training_epoch(self, strategy, **kwargs):
        if self._done or self._profiler is not None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                profile_memory=self.device.type == "cpu")
        self._profiler.__enter__()

    def after_training_iteration(self, strategy, **kwargs):
        self._done += 1
        if self._done < self.iterations:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        self._profiler.__exit__(None, None, None)
        if self.device.type == "cpu":
            self.peak_bytes = profiler_peak_bytes(self._profiler)
        events = sorted(self._profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        self.top_ops = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3 / self._done, "calls": e.count}
                        for e in events[:6]]
        strategy.stop_training()


def profiler_peak_bytes(profiler: torch.profiler.profile) -> int:
    """Peak of the running sum of CPU tensor allocations (+) and frees (-) the profiler recorded."""
    events = [e for e in profiler.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def variant_builders(config: TrainConfig, *, dense: bool = False) -> dict[str, Callable[[list], SupervisedTemplate]]:
    """Each variant's strategy factory, given extra plugins.

    :param config: the shared training settings, base resolved.
    :param dense: the stream's tasks are dense (the run loop's evaluator then records no accuracy).
    """
    cache = config.feature_cache if config.feature_cache != "off" else "memory"

    def ours(method: str, train: TrainConfig):
        return lambda plugins: build_strategy(
            method, None, train, plugins=[EpochProgress(enabled=False), *plugins], evaluator=run_evaluator(dense=dense)
        )

    def naive(plugins):
        # TaskCriterion: each task's own loss (cross entropy for classes, Naive's default)
        model = SharedBaseModel(trainable_features(pretrained_base(config)))
        return Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
                     train_mb_size=config.batch_size, train_epochs=config.epochs, eval_mb_size=config.eval_batch_size,
                     device=config.device, plugins=[TaskCriterion(), *plugins], evaluator=EvaluationPlugin())

    return {
        "naive": naive,
        "finetune": ours("finetune", config),
        "sidetune_nocache": ours("sidetune", replace(config, feature_cache="off")),
        "sidetune": ours("sidetune", replace(config, feature_cache=cache)),
        "features": ours("features", replace(config, feature_cache=cache)),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def results_file(config: PerfConfig) -> Path:
    """Where :func:`run_perf` writes its JSON."""
    return Path(config.out) / RESULTS_FILE


def run_perf(config: PerfConfig, stream: str = "demo", stream_options: Any = None) -> dict:
    """Measure every variant and write ``<config.out>/perf_cl.json``.

    :param config: training settings and variants.
    :param stream: a registered stream; its first ``config.experiences`` experiences are trained (with its
        default base when ``config.train.base`` is None).
    :param stream_options: that stream's options; None for its defaults.
    :return: the results: machine, per-variant measurements, ratios against fine-tuning, targets.
    """
    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown or not config.variants:
        raise ConfigError(f"unknown perf variants {unknown}; choose from {', '.join(VARIANTS)}")
    if config.experiences < 1 or config.memory_iterations < 1 or config.repeats < 1:
        raise ConfigError("experiences, memory_iterations and repeats must be at least 1")
    config = replace(config, train=stream_train_config(config.train, stream))
    device = check_device(config.train.check().device)
    if config.threads is not None:
        if config.threads < 1:
            raise ConfigError(f"threads={config.threads}; use a positive count or None for torch's default")
        torch.set_num_threads(config.threads)
    benchmark = make_stream(stream, stream_options)
    experiences = list(benchmark.train_stream)[: config.experiences]
    load_start = _load()
    builders = variant_builders(config.train, dense=is_dense(benchmark))
    timings: dict[str, list[EpochRecorder]] = {v: [] for v in config.variants}
    memory: dict[str, tuple[int, list[dict]]] = {}
    for _, variant in itertools.product(range(config.repeats), config.variants):
        timings[variant].append(_timed(builders[variant], experiences, config, device))
        if variant not in memory:  # right after timing: a feature cache is still warm, as in later epochs
            memory[variant] = _memory(builders[variant], experiences[0], config, device)
    results = {v: _summary(timings[v], *memory[v]) for v in config.variants}
    report = {
        "machine": machine(),
        "load_average": {"start": load_start, "end": _load()},
        "config": asdict(config),
        "stream_options": asdict(get_stream(stream).check_options(stream_options)),
        "stream": stream,
        "same_batches": len({r["batches_digest"] for r in results.values()}) == 1,
        "variants": results,
        "ratios_vs_finetune": _ratios(results, "finetune"),
        "targets": _targets(results),
    }
    Path(config.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_file(config), json.dumps(report, indent=2) + "\n")
    return report


def _timed(build, experiences, config: PerfConfig, device: torch.device) -> EpochRecorder:
    clear_memory_caches()  # every variant starts cold; its later epochs show the warm cache
    RNGManager.set_random_seeds(config.seed)
    recorder = EpochRecorder(config.seed, device)
    strategy = build([recorder])
    for experience in experiences:
        strategy.train(experience, **config.train.loader_options())
    recorder.trainable = trainable_parameters(strategy.model)
    return recorder


def _memory(build, experience, config: PerfConfig, device: torch.device) -> tuple[int, list[dict]]:
    RNGManager.set_random_seeds(config.seed)
    window = MemoryWindow(config.memory_iterations, device)
    strategy = build([window])
    strategy.train(experience, **config.train.loader_options())
    return window.peak_bytes, window.top_ops


def _summary(recorders: list[EpochRecorder], peak_bytes: int, top_ops: list[dict]) -> dict:
    first = statistics.median(r.epoch_s[0] for r in recorders)
    later = [s for r in recorders for s in r.epoch_s[1:]]
    steady = statistics.median(later) if later else first
    later_cpu = [s for r in recorders for s in r.epoch_cpu_s[1:]] or [r.epoch_cpu_s[0] for r in recorders]
    images = recorders[0].images[-1]
    return {
        "epoch_s_first": first,
        "epoch_s": steady,
        "epoch_cpu_s": statistics.median(later_cpu),
        "images_per_epoch": images,
        "images_per_s": images / steady,
        "peak_mb": peak_bytes / 2**20,
        "trainable_parameters": recorders[0].trainable,
        "batches_digest": recorders[0].digest.hexdigest(),
        "epochs_timed": sum(len(r.epoch_s) for r in recorders),
        "top_ops": top_ops,
    }


def _ratios(results: dict, reference: str) -> dict:
    if reference not in results:
        return {}
    ref = results[reference]
    return {v: {"epoch_s": r["epoch_s"] / ref["epoch_s"], "epoch_cpu_s": r["epoch_cpu_s"] / ref["epoch_cpu_s"],
                "peak_mb": r["peak_mb"] / ref["peak_mb"],
                "trainable_parameters": r["trainable_parameters"] / ref["trainable_parameters"]}
            for v, r in results.items()}


def _targets(results: dict) -> list[dict]:
    checks = []
    for (variant, reference, quantity), limit in TARGETS.items():
        if variant in results and reference in results:
            ratio = results[variant][quantity] / results[reference][quantity]
            checks.append({"ratio": f"{variant}/{reference} {quantity}", "value": ratio, "target": limit,
                           "met": ratio <= limit})
    return checks


def format_table(report: dict) -> str:
    """The results as a Markdown table plus the target checks."""
    ratios = report["ratios_vs_finetune"]
    header = ("| variant | s/epoch (first) | s/epoch | CPU s/epoch | images/s | peak train MB | trainable params "
              "| epoch time / FT | CPU time / FT | peak memory / FT |")
    lines = [header, "|" + " --- |" * 10]
    for name, r in report["variants"].items():
        ratio = ratios.get(name, {})
        lines.append(
            f"| {name} | {r['epoch_s_first']:.2f} | {r['epoch_s']:.2f} | {r['epoch_cpu_s']:.2f} "
            f"| {r['images_per_s']:.0f} | {r['peak_mb']:.1f} | {r['trainable_parameters']:,} "
            f"| {ratio.get('epoch_s', float('nan')):.3f} | {ratio.get('epoch_cpu_s', float('nan')):.3f} "
            f"| {ratio.get('peak_mb', float('nan')):.3f} |"
        )
    lines.append("")
    for check in report["targets"]:
        verdict = "met" if check["met"] else f"MISSED by {check['value'] / check['target'] - 1:.0%}"
        lines.append(f"- {check['ratio']} = {check['value']:.3f} (target <= {check['target']}): {verdict}")
    m = report["machine"]
    lines.append(f"- machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)"
                 + (f", {m['gpu']}" if "gpu" in m else "") + f"; load average {report['load_average']}")
    lines.append(f"- same batches for every variant: {report['same_batches']}")
    return "\n".join(lines)
