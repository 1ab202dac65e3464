"""What a method costs per task, counted rather than timed alone: parameters, training memory, MACs.

Complements :mod:`continual_side.perf` (wall time and allocator peaks of whole runs) with numbers that do
not depend on the machine's load or allocator:

* trainable parameters of the task being trained;
* training memory of one step: the bytes autograd saves for backward (distinct storages, counted with
  ``torch.autograd.graph.saved_tensors_hooks``), plus the gradients, plus Adam's state after a step;
* seconds per training step on a fixed batch (forward, backward, Adam), a stand-in for epoch time when
  every method sees the same batches, and the only number here that the machine's load moves;
* inference multiply-accumulates per image (``torch.utils.flop_counter``, MACs = FLOPs / 2), for the
  last task alone and for every task's prediction on the same image. Models with ``forward_all_tasks``
  (fine-tuning's shared base, Res-Tuning-Bypass) run the backbone once for all tasks; so does every
  method whose frozen base goes through :class:`~continual_side.models.sidetuned.FrozenBase`'s feature
  cache (side-tuning, fixed features), which is on for this count. The others run their whole network
  per task.

Each method is built from the registry over the first ``n_tasks`` experiences of a stream, with the
feature cache off for the training counts (it would hide the base's cost).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.models.dynamic_modules import avalanche_model_adaptation
from avalanche.training.determinism.rng_manager import RNGManager
from torch.utils.flop_counter import FlopCounterMode

from continual_side.methods import TrainConfig, get_method
from continual_side.methods.common import attach_feature_cache
from continual_side.models.feature_cache import clear_memory_caches

REFERENCE = "finetune"


@dataclass
class MethodCost:
    """One method's counted costs (see the module docstring).

    :param method: registry name.
    :param trainable_parameters: parameters trained for the current task.
    :param saved_bytes: bytes autograd keeps for backward in one training forward.
    :param gradient_bytes: bytes of the gradients after the backward.
    :param optimizer_bytes: bytes of Adam's state after one step.
    :param step_seconds: median seconds of one training step.
    :param macs_one_task: inference MACs per image, one task.
    :param macs_all_tasks: inference MACs per image, every task's logits for it.
    """

    method: str
    trainable_parameters: int
    saved_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    step_seconds: float
    macs_one_task: int
    macs_all_tasks: int

    @property
    def training_bytes(self) -> int:
        return self.saved_bytes + self.gradient_bytes + self.optimizer_bytes


def saved_for_backward_bytes(forward) -> tuple[torch.Tensor, int]:
    """Run ``forward()`` and count the bytes of the distinct storages autograd saves for its backward.

    :returns: forward's output and the byte count.
    """
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        output = forward()
    return output, sum(storages.values())


def inference_macs(forward) -> int:
    """Multiply-accumulates of ``forward()`` (FLOPs / 2 as torch's flop counter counts them), without a graph."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    return counter.get_total_flops() // 2


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _batch(experience, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = experience.dataset
    items = [dataset[i] for i in range(min(size, len(dataset)))]
    return torch.stack([item[0] for item in items]), torch.tensor([item[1] for item in items])


def method_cost(method: str, stream, *, options: Any = None, train: TrainConfig | None = None, n_tasks: int = 5,
                batch_size: int = 32, steps: int = 5, seed: int = 0) -> MethodCost:
    """Count one method's costs while it trains task ``n_tasks - 1`` of ``stream`` (CPU).

    :param method: a registered method.
    :param stream: a benchmark with at least ``n_tasks`` experiences.
    :param options: the method's options; None for its defaults.
    :param train: shared settings (base, lr); the feature cache is turned off for the training counts.
    :param n_tasks: tasks the model holds; the last one is trained and measured.
    :param batch_size: images per training step.
    :param steps: timed training steps (after one untimed).
    :param seed: seed of the model's initialisation.
    """
    spec = get_method(method)
    train = replace(train or TrainConfig(), feature_cache="off").check()
    RNGManager.set_random_seeds(seed)
    model = spec.model(spec.check_options(options), train)
    model.train()
    for experience in stream.train_stream[:n_tasks]:
        avalanche_model_adaptation(model, experience)
    task = n_tasks - 1
    images, labels = _batch(stream.train_stream[task], batch_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=train.lr)

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(images, task), labels).backward()
        optimizer.step()

    logits, saved = saved_for_backward_bytes(lambda: model(images, task))
    F.cross_entropy(logits, labels).backward()
    optimizer.step()
    gradient_bytes = _tensor_bytes(p.grad for p in trainable)
    optimizer_bytes = sum(_tensor_bytes(state.values()) for state in optimizer.state.values())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)

    model.eval()
    attach_feature_cache(model, replace(train, feature_cache="memory"))
    image = images[:1]
    clear_memory_caches()  # each count starts with a cold feature cache
    one = inference_macs(lambda: model(image, task))
    clear_memory_caches()
    if hasattr(model, "forward_all_tasks"):
        every = inference_macs(lambda: model.forward_all_tasks(image))
    else:
        every = inference_macs(lambda: [model(image, t) for t in range(n_tasks)])
    return MethodCost(method=method, trainable_parameters=sum(p.numel() for p in trainable), saved_bytes=saved,
                      gradient_bytes=gradient_bytes, optimizer_bytes=optimizer_bytes,
                      step_seconds=sorted(times)[len(times) // 2], macs_one_task=one, macs_all_tasks=every)


def cost_rows(costs: list[MethodCost]) -> list[dict]:
    """Each method's costs with its training-memory and step-time ratios to fine-tuning's (which must be there)."""
    reference = next(cost for cost in costs if cost.method == REFERENCE)
    return [{**asdict(cost), "training_bytes": cost.training_bytes,
             "memory_ratio": cost.training_bytes / reference.training_bytes,
             "time_ratio": cost.step_seconds / reference.step_seconds} for cost in costs]


def format_cost_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`cost_rows`."""
    lines = ["| method | trainable params / task | training MB (saved+grad+Adam) | memory ratio | step time ratio "
             "| MMACs/image, 1 task | MMACs/image, all tasks |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['trainable_parameters']:,} | {row['training_bytes'] / 2**20:.1f} "
                     f"| {row['memory_ratio']:.2f} | {row['time_ratio']:.2f} | {row['macs_one_task'] / 1e6:.1f} "
                     f"| {row['macs_all_tasks'] / 1e6:.1f} |")
    return "\n".join(lines)
