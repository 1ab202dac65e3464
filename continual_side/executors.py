"""Where the runs of a sweep train: this machine's cores (``local``) or a Ray cluster (``ray``).

Each run trains in a worker with its own torch thread count, its stdout and stderr appended to its
log (``seed-<n>.log`` beside the run folder). A run that raises is reported with its error line
and log; the other runs go on. Runs are independent and share nothing but the filesystem, so the
same sweep fans out over a cluster whose nodes mount the same ``--out``.

- ``local``, ``--workers 1``: one run after another in this process, as ``bench`` always did, with
  this process's torch thread count.
- ``local``, ``--workers N``: N runs at once, each with ``cores // N`` torch threads so they do not
  stall each other: this process trains one, N-1 worker processes (started with ``spawn``, safe with
  CUDA) the others.
- ``ray``: each run is one Ray task requesting ``--cpus-per-run`` CPUs (its torch threads) and
  ``--gpus-per-run`` GPUs; ``--ray-address`` joins a running cluster, otherwise a local Ray starts
  (or the one this process already started is used).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
from collections.abc import Iterator, Sequence
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing import get_context
from typing import IO, Any, Literal

import torch
from tqdm.auto import tqdm

from continual_side.errors import ConfigError
from continual_side.grid import RunJob

Executor = Literal["local", "ray"]


@dataclass
class ExecutorConfig:
    """Where a sweep's runs train.

    :param executor: ``local`` (this machine) or ``ray`` (a Ray cluster, or a local Ray).
    :param workers: local: runs training at once, one in this process and the others in worker processes
        (1: one after another in this process).
    :param ray_address: ray: the cluster to join (``auto``, ``HOST:6379``); None starts a local Ray.
    :param cpus_per_run: ray: CPUs each run's task requests; also its torch thread count.
    :param gpus_per_run: ray: GPUs each run's task requests (0.5: two runs share a GPU); set
        ``--device cuda`` for the runs to use it.
    """

    executor: Executor = "local"
    workers: int = 1
    ray_address: str | None = None
    cpus_per_run: int = 1
    gpus_per_run: float = 0.0

    def check(self) -> ExecutorConfig:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor {self.executor!r}: choose local or ray")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers} must be at least 1")
        if self.cpus_per_run < 1 or self.gpus_per_run < 0:
            raise ConfigError(f"--cpus-per-run {self.cpus_per_run} must be at least 1 and --gpus-per-run "
                              f"{self.gpus_per_run} at least 0")
        if self.executor == "local" and self.ray_address is not None:
            raise ConfigError("--ray-address needs --executor ray")
        return self


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _output_to(log: IO[str]) -> Iterator[None]:
    """Send this process's stdout and stderr (Python's and the C libraries', file descriptors 1 and 2) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def train_job(job: RunJob, threads: int) -> str | None:
    """Train one job in this process with ``threads`` torch threads, its output appended to ``job.log``.

    :param job: the run, its config already set to start, resume or restart.
    :param threads: torch intra-op threads while it trains.
    :return: None when it completed, else its error as one line (the traceback is in the log).
    """
    job.log.parent.mkdir(parents=True, exist_ok=True)
    previous = torch.get_num_threads()
    with open(job.log, "a", buffering=1, encoding="utf-8") as log, _output_to(log):
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        print(f"=== {started} {job.name} in {job.folder} on {socket.gethostname()} (pid {os.getpid()}, "
              f"{threads} torch threads, resume={getattr(job.config, 'resume', False)})", flush=True)
        torch.set_num_threads(threads)
        try:
            job.kind.train(job.config)
        except Exception as error:  # reported, so that the other runs go on
            traceback.print_exc()
            return f"{type(error).__name__}: {error}".splitlines()[0]
        finally:
            torch.set_num_threads(previous)
        print("=== complete", flush=True)
    return None


class _Deferred:
    """A job the in-process pool trains when it is waited for."""

    def __init__(self, job: RunJob) -> None:
        self.job = job
        self.error: str | None = None


class _InProcessPool:
    """One run after another in this process, with its torch thread count (``OMP_NUM_THREADS`` if set)."""

    def capacity(self) -> int:
        return 1

    def lanes(self) -> int:
        return 1

    def submit(self, job: RunJob) -> _Deferred:
        return _Deferred(job)

    def wait(self, handles: Sequence[_Deferred]) -> list[_Deferred]:
        handles[0].error = train_job(handles[0].job, torch.get_num_threads())
        return [handles[0]]

    def result(self, handle: _Deferred) -> str | None:
        return handle.error

    def close(self) -> None:
        pass


class _ProcessPool:
    """N runs at once, each with ``cores // N`` torch threads: N-1 spawned worker processes, and this process.

    This process trains one run at a time itself while the workers start, so their start-up (importing
    torch and Avalanche: seconds, as long as a short run) overlaps with training instead of delaying every
    lane. Each worker keeps one more run queued, so that it does not idle while this process trains.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.threads = max(1, available_cores() // workers)
        self.pool: futures.ProcessPoolExecutor | None = None
        self.pool_of: dict[futures.Future, futures.ProcessPoolExecutor] = {}
        self.here: _Deferred | None = None  # the run this process trains next

    def capacity(self) -> int:
        return 1 + 2 * (self.workers - 1)

    def lanes(self) -> int:
        return self.workers

    def submit(self, job: RunJob) -> futures.Future | _Deferred:
        if self.here is None:
            self.here = _Deferred(job)
            return self.here
        if self.pool is None:
            self.pool = futures.ProcessPoolExecutor(self.workers - 1, mp_context=get_context("spawn"))
        future = self.pool.submit(train_job, job, self.threads)
        self.pool_of[future] = self.pool
        return future

    def wait(self, handles: Sequence[futures.Future | _Deferred]) -> list[futures.Future | _Deferred]:
        running = [handle for handle in handles if isinstance(handle, futures.Future)]
        done, _ = futures.wait(running, timeout=0)
        if done or self.here is None:  # hand finished runs back first, so that their workers get new ones
            return list(done) or list(futures.wait(running, return_when=futures.FIRST_COMPLETED)[0])
        here, self.here = self.here, None
        here.error = train_job(here.job, self.threads)
        return [here, *futures.wait(running, timeout=0)[0]]

    def result(self, handle: futures.Future | _Deferred) -> str | None:
        if isinstance(handle, _Deferred):
            return handle.error
        pool = self.pool_of.pop(handle)
        try:
            return handle.result()
        except BrokenProcessPool as error:  # a worker died (killed, out of memory): a fresh pool goes on
            if pool is self.pool:
                self.pool.shutdown(wait=False)
                self.pool = None
            return f"the worker process died while training ({error})"

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """Each run one Ray task; as many in flight as the cluster has room for."""

    def __init__(self, config: ExecutorConfig) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'continual-side[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=config.ray_address, log_to_driver=False, include_dashboard=False)
        self.config = config
        self.task = ray.remote(train_job).options(num_cpus=config.cpus_per_run, num_gpus=config.gpus_per_run,
                                                  max_retries=0)

    def capacity(self) -> int:
        resources = self.ray.cluster_resources()
        room = resources.get("CPU", 0) // self.config.cpus_per_run
        if self.config.gpus_per_run:
            room = min(room, resources.get("GPU", 0) // self.config.gpus_per_run)
        return max(1, int(room))

    def lanes(self) -> int:
        return self.capacity()

    def submit(self, job: RunJob) -> Any:
        return self.task.remote(job, self.config.cpus_per_run)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        return ready

    def result(self, handle: Any) -> str | None:
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayError as error:  # the task's worker or node died
            return f"the Ray task failed: {str(error).splitlines()[0]}"

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _pool(config: ExecutorConfig) -> _InProcessPool | _ProcessPool | _RayPool:
    if config.executor == "ray":
        return _RayPool(config)
    return _InProcessPool() if config.workers == 1 else _ProcessPool(config.workers)


def execute(jobs: Sequence[RunJob], config: ExecutorConfig, bar: tqdm) -> list[str | None]:
    """Train every job, as many at once as the executor allows, and update ``bar`` as they finish.

    :param jobs: prepared runs (each config set to start, resume or restart).
    :param config: the executor.
    :param bar: the grid's progress bar; its postfix shows done, failed and running counts.
    :return: per job, None when it completed, else its error line.
    """
    errors: list[str | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    running: dict[Any, int] = {}
    failed = 0
    pool = _pool(config.check())
    try:
        while pending or running:
            while pending and len(running) < pool.capacity():
                index = pending.pop(0)
                running[pool.submit(jobs[index])] = index
            training = min(len(running), pool.lanes())
            bar.set_postfix(done=bar.n - failed, failed=failed, running=training, queued=len(running) - training)
            for handle in pool.wait(list(running)):
                index = running.pop(handle)
                errors[index] = pool.result(handle)
                failed += errors[index] is not None
                bar.update()
        bar.set_postfix(done=bar.n - failed, failed=failed, running=0, queued=0)
    finally:
        pool.close()
    return errors
