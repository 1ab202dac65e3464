"""Run checkpoints: after every finished experience, everything needed to continue the run exactly.

A checkpoint holds state_dicts and plain values only (model tensors, each checkpointable plugin's
state, Avalanche's clock, the RNG states, the accuracy rows so far and, for a dense stream, the loss
rows), saved with ``torch.save`` and loaded with ``weights_only=True``. Avalanche 0.6's own
checkpointing pickles the whole strategy with dill and fails on these strategies, so it is not used.
The model's per-task modules are created by Avalanche's adaptation, not by ``__init__``:
:func:`restore` replays the adaptations the run made (train mode for each finished task, eval mode
over the test stream after each) before loading the tensors strictly. Each task starts with a fresh
optimizer state (``PerTaskStrategy``), so the optimizer at a task boundary holds nothing to save.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from avalanche.models.dynamic_modules import avalanche_model_adaptation

from continual_side.atomic import atomic_write_bytes
from continual_side.results import RunFolderError

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = 1
CLOCK_FIELDS = ("train_iterations", "train_exp_counter", "train_exp_epochs", "train_exp_iterations",
                "train_epoch_iterations", "total_iterations")


@dataclass
class RunProgress:
    """What a run has produced so far, saved in every checkpoint.

    :param settings: the run's configuration as recorded in config.json (a JSON string).
    :param acc_rows: accuracy rows of the finished experiences (k x T).
    :param trainable_parameters: trainable parameters while training each finished experience.
    :param wall_time_s: training and evaluation time so far, over every process that ran it.
    :param events: lines of metrics.jsonl written up to this checkpoint (later ones are dropped on resume).
    :param loss_rows: a dense stream's test-loss rows of the finished experiences (k x T); None otherwise.
    """

    settings: str
    acc_rows: np.ndarray
    trainable_parameters: list[int]
    wall_time_s: float
    events: int
    loss_rows: np.ndarray | None = None

    @property
    def experiences_done(self) -> int:
        return len(self.acc_rows)


def _rng_state() -> dict[str, Any]:
    version, keys, gauss = random.getstate()
    name, mt, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(mt.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "keys": list(keys), "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["keys"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpointed_plugins(strategy) -> dict[str, Any]:
    """Plugins with ``checkpoint_state()``/``restore_state(state, strategy)``, by class name."""
    return {type(p).__name__: p for p in strategy.plugins if hasattr(p, "checkpoint_state")}


def save(folder: Path, strategy, progress: RunProgress) -> Path:
    """Write ``folder/checkpoint.pt`` atomically: the strategy after its last finished experience."""
    document = {
        "format": FORMAT,
        "settings": progress.settings,
        "acc_rows": torch.from_numpy(np.asarray(progress.acc_rows, dtype=np.float64)),
        "trainable_parameters": list(progress.trainable_parameters),
        "wall_time_s": float(progress.wall_time_s),
        "events": int(progress.events),
        **({} if progress.loss_rows is None else
           {"loss_rows": torch.from_numpy(np.asarray(progress.loss_rows, dtype=np.float64))}),
        "model": strategy.model.state_dict(),
        "plugins": {name: plugin.checkpoint_state() for name, plugin in _checkpointed_plugins(strategy).items()},
        "clock": {name: int(getattr(strategy.clock, name)) for name in CLOCK_FIELDS},
        "rng": _rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(document, buffer)
    atomic_write_bytes(folder / CHECKPOINT_FILE, buffer.getvalue())
    return folder / CHECKPOINT_FILE


def load(folder: Path) -> dict[str, Any]:
    """Read ``folder/checkpoint.pt`` (``weights_only=True``) or raise a RunFolderError that says what to do."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise RunFolderError(f"{folder} has no checkpoint to resume from (the run stopped before its first task "
                             "finished, or never started): rerun with --overwrite instead of --resume")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign file: the message says what torch found
        raise RunFolderError(f"{path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0]}); "
                             "rerun with --overwrite") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RunFolderError(f"{path} is not a continual-side run checkpoint (format {FORMAT}); rerun with --overwrite")
    return document


def progress_of(document: dict[str, Any]) -> RunProgress:
    loss_rows = document.get("loss_rows")
    return RunProgress(settings=document["settings"], acc_rows=document["acc_rows"].numpy(),
                       trainable_parameters=list(document["trainable_parameters"]),
                       wall_time_s=document["wall_time_s"], events=document["events"],
                       loss_rows=None if loss_rows is None else loss_rows.numpy())


def restore(document: dict[str, Any], strategy, benchmark) -> None:
    """Bring a freshly built strategy to the checkpoint: modules, tensors, plugin states, clock and RNGs."""
    model = strategy.model
    done = len(document["acc_rows"])
    for i in range(done):
        model.train()
        avalanche_model_adaptation(model, benchmark.train_stream[i])
        model.eval()
        for experience in benchmark.test_stream:
            avalanche_model_adaptation(model, experience)
    model.load_state_dict(document["model"], strict=True)
    model.to(strategy.device)
    plugins = _checkpointed_plugins(strategy)
    if set(plugins) != set(document["plugins"]):
        raise RunFolderError(f"the checkpoint holds state for plugins {sorted(document['plugins'])} but this run has "
                             f"{sorted(plugins)}: it was written by another method; rerun with --overwrite")
    for name, plugin in plugins.items():
        plugin.restore_state(document["plugins"][name], strategy)
    for name, value in document["clock"].items():
        setattr(strategy.clock, name, value)
    _set_rng_state(document["rng"])
