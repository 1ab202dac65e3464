"""Speed-up of a sweep's executors: the same grid of short runs with ``--workers 1``, ``--workers 2`` and Ray.

Each executor trains the whole grid into its own fresh folder (nothing reused), timed end to end as a
user sees it (worker start-up and imports included). Prints a Markdown table of wall times and their
ratio to ``--workers 1``, with the load average before and after (other processes on the machine slow
every number), then the best ratio the grid allows (:func:`ratio_bound`: one run of each method timed
with a worker's thread count and with ``--workers 1``'s), and writes the numbers as JSON. The issue's
target on 2 cores: 8 short runs at most 0.65x the time of ``--workers 1`` with 2 workers, on both
executors::

    OMP_NUM_THREADS=1 python -m benchmarks.perf_sweep --data-root ../shared/data/cifar10-jpeg --out runs/perf-sweep
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import tyro

from continual_side.executors import ExecutorConfig, available_cores
from continual_side.methods import TrainConfig
from continual_side.perf import machine
from continual_side.streams.split_cifar10 import SplitCifar10Options
from continual_side.sweep import SweepConfig, run_sweep


@dataclass
class SweepSpeedConfig:
    """The grid timed on each executor: methods x seeds short split-CIFAR-10 runs, ResNet-20, one epoch.

    :param data_root: the CIFAR-10 JPEG tree (train/ and test/).
    :param out: folder of the three sweeps' run folders and of speed.json.
    :param methods: methods of the grid.
    :param seeds: seeds per method.
    :param images_per_class: training images per class (2 tasks x 2 classes).
    :param test_images_per_class: test images per class.
    :param workers: local worker processes compared with one after another (Ray gets every core).
    :param baseline_threads: torch threads of ``--workers 1``'s one run at a time; None: every core (on a
        quiet machine the fair baseline; on a busy one 1 thread can be faster, so measure both).
    """

    data_root: str
    out: str = "runs/perf-sweep"
    methods: tuple[str, ...] = ("sidetune", "finetune")
    seeds: int = 4
    images_per_class: int = 100
    test_images_per_class: int = 50
    workers: int = 2
    baseline_threads: int | None = None


def timed_sweep(config: SweepSpeedConfig, name: str, executor: ExecutorConfig) -> float:
    """Seconds to train the whole grid into ``<out>/<name>`` (emptied first) on ``executor``."""
    out = Path(config.out) / name
    shutil.rmtree(out, ignore_errors=True)
    sweep = SweepConfig(
        streams=("split_cifar10",), methods=config.methods, seeds=config.seeds, out=str(out), progress=False,
        stream_options={"split_cifar10": SplitCifar10Options(
            data_root=config.data_root, n_tasks=2, images_per_class=config.images_per_class,
            test_images_per_class=config.test_images_per_class)},
        train=TrainConfig(base="resnet20", epochs=1, batch_size=32), executor=executor)
    start = time.perf_counter()
    result = run_sweep(sweep)
    seconds = time.perf_counter() - start
    if result.failed:
        raise SystemExit(f"{name}: {len(result.failed)} runs failed, e.g. {result.failed[0].error} "
                         f"(log {result.failed[0].job.log})")
    return seconds


def single_run_seconds(config: SweepSpeedConfig, method: str, threads: int) -> float:
    """Seconds of one run of ``method`` in this process with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed_sweep(replace(config, methods=(method,), seeds=1), f"single-{method}-{threads}",
                           ExecutorConfig(workers=1))
    finally:
        torch.set_num_threads(previous)


def ratio_bound(config: SweepSpeedConfig, baseline_threads: int) -> dict:
    """The best ratio N workers can reach on this grid, from one run's thread scaling alone.

    N lanes of ``cores // N`` threads share the grid's work at best evenly, with no start-up and no idle
    lane at the end: ``sum_m T(m, cores // N) / N`` against ``sum_m T(m, baseline_threads)`` for
    ``--workers 1`` (every method has the same number of seeds). When one run gets nearly N times faster
    from N times the threads, no executor can do much better than ``--workers 1``.
    """
    lane_threads = max(1, available_cores() // config.workers)
    seconds = {method: {"lane": single_run_seconds(config, method, lane_threads),
                        "baseline": single_run_seconds(config, method, baseline_threads)}
               for method in config.methods}
    bound = (sum(s["lane"] for s in seconds.values()) / config.workers
             / sum(s["baseline"] for s in seconds.values()))
    return {"lane_threads": lane_threads, "baseline_threads": baseline_threads, "single_run_seconds": seconds,
            "bound": bound}


def main(config: SweepSpeedConfig) -> dict:
    """Time the grid on each executor and the bound of the ratio; print the tables, write ``<out>/speed.json``."""
    torch.set_num_threads(config.baseline_threads or available_cores())
    load_before = list(os.getloadavg())
    one = f"local, --workers 1 ({torch.get_num_threads()} torch threads)"
    times = {one: timed_sweep(config, "local-1", ExecutorConfig(workers=1)),
             f"local, --workers {config.workers}": timed_sweep(config, f"local-{config.workers}",
                                                               ExecutorConfig(workers=config.workers)),
             "ray (local Ray started by the sweep)": timed_sweep(config, "ray", ExecutorConfig(executor="ray"))}
    bound = ratio_bound(config, torch.get_num_threads())
    baseline = times[one]
    results = {"config": asdict(config), "runs": len(config.methods) * config.seeds, "machine": machine(),
               "cores": available_cores(), "load_before": load_before, "load_after": list(os.getloadavg()),
               "seconds": times, "ratio_to_workers_1": {name: t / baseline for name, t in times.items()},
               "ratio_bound": bound}
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{results['runs']} runs ({', '.join(config.methods)} x {config.seeds} seeds) on {results['cores']} cores, "
          f"load average {load_before[0]:.2f} before, {results['load_after'][0]:.2f} after")
    print("| executor | wall time (s) | ratio to --workers 1 |\n| --- | ---: | ---: |")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.1f} | {seconds / baseline:.2f} |")
    print(f"\none run, {bound['lane_threads']} vs {bound['baseline_threads']} torch threads: "
          + ", ".join(f"{method} {s['lane']:.1f} s vs {s['baseline']:.1f} s"
                      for method, s in bound["single_run_seconds"].items())
          + f"; so --workers {config.workers} can reach at best {bound['bound']:.2f}x of --workers 1 on this grid")
    return results


if __name__ == "__main__":
    main(tyro.cli(SweepSpeedConfig))
