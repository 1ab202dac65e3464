"""Strict loading of weights files into modules, with one-line errors that say what did not fit."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from continual_side.errors import WeightsError

_SHOWN = 3  # how many offending keys a message names


def _reason(err: Exception) -> str:
    """The informative line of a torch.load error (weights_only errors are many lines of advice)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0]
        return f"not loadable with weights_only=True: {' '.join(detail.split()).split('. ')[0]}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_state_dict(path: Path, expected: str) -> dict[str, torch.Tensor]:
    """The state_dict in a weights file, on the CPU.

    Accepts a plain state_dict or a checkpoint dict holding one under 'state_dict', and strips the
    'module.' prefix that nn.DataParallel adds.

    :param path: a file written by torch.save.
    :param expected: what file would fit, for error messages, e.g. "a ResNet-44 CIFAR-10 checkpoint".
    :raises WeightsError: when the file cannot be read safely or holds no state_dict.
    """
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses anyway
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(
            f"cannot read {path} as a PyTorch weights file ({_reason(err)}); expected {expected}"
        ) from err
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise WeightsError(
            f"{path} holds a {type(content).__name__}, not a state_dict of tensors; expected {expected}"
        )
    if content and all(key.startswith("module.") for key in content):
        content = {key.removeprefix("module."): value for key, value in content.items()}
    return content


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_weights_file(module: nn.Module, path: Path, expected: str) -> None:
    """Load a weights file into `module` with strict=True.

    :param module: the network to fill.
    :param path: the weights file.
    :param expected: what file would fit, for error messages.
    :raises WeightsError: naming the file, the missing/unexpected/mis-shaped keys and what was expected.
    """
    state = read_state_dict(path, expected)
    own = module.state_dict()
    problems = []
    # BatchNorm fills in num_batches_tracked itself for checkpoints older than PyTorch 0.4.
    if missing := [key for key in own if key not in state and not key.endswith(".num_batches_tracked")]:
        problems.append(f"missing {_listed(missing)}")
    if unexpected := [key for key in state if key not in own]:
        problems.append(f"unexpected {_listed(unexpected)}")
    if mismatched := [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]:
        problems.append(f"shape mismatch {_listed(mismatched)}")
    if problems:
        raise WeightsError(
            f"{path} does not fit {type(module).__name__}: {'; '.join(problems)}; expected {expected}"
        )
    module.load_state_dict(state, strict=True)
