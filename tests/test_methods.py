"""Every registered method trains exactly the parameters it claims to, and forgets only if it shares them."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EWCPlugin, SupervisedPlugin

from continual_side.errors import ConfigError
from continual_side.methods import METHODS, MethodConfig, build_strategy
from continual_side.methods.lwf import LwFPlugin
from continual_side.streams import make_stream

# What training task 1 may change, by parameter/buffer name; everything else must stay bit-identical.
TRAINED_BY_TASK_1: dict[str, Callable[[str], bool]] = {
    "finetune": lambda name: name.startswith(("base.", "tasks.1.")),
    "ewc": lambda name: name.startswith(("base.", "tasks.1.")),
    "lwf": lambda name: name.startswith(("base.", "tasks.1.")),
    "features": lambda name: name.startswith("tasks.1."),
    "independent": lambda name: name.startswith(("tasks.1.base.", "tasks.1.head.")),
    "sidetune": lambda name: name.startswith(("tasks.1.side.", "tasks.1.merge.", "tasks.1.head.")),
    "pnn": lambda name: name.startswith("tasks.1."),
}
FROZEN_BASE = {"features", "sidetune", "pnn"}  # the pre-trained base never trains nor updates BatchNorm
SHARES_TRAINED_BASE = {"finetune", "ewc", "lwf"}  # task 0's outputs move when task 1 trains


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


class Recorder(SupervisedPlugin):
    """Snapshots the model when a task's training starts (after Avalanche added its modules) and
    records whether a frozen base was ever in training mode."""

    def __init__(self):
        super().__init__()
        self.at_start: dict[int, dict[str, torch.Tensor]] = {}
        self.base_modes: set[bool] = set()

    def before_training_exp(self, strategy, **kwargs):
        self.at_start[strategy.experience.current_experience] = tensors(strategy.model)

    def after_forward(self, strategy, **kwargs):
        network = getattr(strategy.model.base, "network", None)
        self.base_modes.add(bool(network is not None and network.training))


@dataclass
class TwoTasks:
    strategy: object
    recorder: Recorder
    after_task0: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor]
    task0_logits_before: torch.Tensor  # task 0's test logits after training task 0
    task0_logits_after: torch.Tensor  # ... and after training task 1


@pytest.fixture(scope="module")
def stream(cifar10_jpeg):
    return make_stream("split_cifar10", root=str(cifar10_jpeg), n_tasks=5, images_per_class=16,
                       test_images_per_class=8)


def task0_test_images(stream) -> torch.Tensor:
    dataset = stream.test_stream[0].dataset
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def task0_logits(strategy, stream) -> torch.Tensor:
    strategy.model.eval()
    with torch.no_grad():
        return strategy.model(task0_test_images(stream), 0)


def train_two_tasks(method: str, stream, **config) -> TwoTasks:
    RNGManager.set_random_seeds(0)
    recorder = Recorder()
    options = dict(base="resnet20", epochs=1, batch_size=8) | config
    strategy = build_strategy(method, MethodConfig(**options), plugins=[recorder], evaluator=None)
    strategy.train(stream.train_stream[0], num_workers=0)
    after_task0, before = tensors(strategy.model), task0_logits(strategy, stream)
    strategy.train(stream.train_stream[1], num_workers=0)
    return TwoTasks(strategy, recorder, after_task0, tensors(strategy.model), before, task0_logits(strategy, stream))


_runs: dict[str, TwoTasks] = {}  # one training per method, shared by the tests below


@pytest.fixture(params=sorted(METHODS))
def run(request, stream) -> tuple[str, TwoTasks]:
    """Each registered method trained on tasks 0 and 1 (once per test session)."""
    if request.param not in _runs:
        _runs[request.param] = train_two_tasks(request.param, stream)
    return request.param, _runs[request.param]


def test_exactly_the_intended_tensors_change(run):
    method, result = run
    trains = TRAINED_BY_TASK_1[method]  # a new method needs an entry here
    start, end = result.recorder.at_start[1], result.after
    # starting task 1 only adds its modules: everything from task 0 is as it was
    assert all(torch.equal(start[name], value) for name, value in result.after_task0.items())
    assert start.keys() == end.keys()
    changed = {name for name in start if not torch.equal(start[name], end[name])}
    intended = {name for name in start if trains(name)}
    assert intended, f"{method}: no tensor matches its expectation"
    assert changed == intended, (
        f"{method}: changed but not intended {sorted(changed - intended)[:5]}, "
        f"intended but unchanged {sorted(intended - changed)[:5]}"
    )


def test_frozen_base_stays_in_eval_mode(run):
    method, result = run
    if method in FROZEN_BASE:
        assert result.recorder.base_modes == {False}
        assert not any(n.startswith("base.") and not torch.equal(result.recorder.at_start[0][n], result.after[n])
                       for n in result.recorder.at_start[0] if n.startswith("base."))
    elif method in SHARES_TRAINED_BASE:
        assert result.recorder.base_modes == {True}


def test_only_methods_sharing_a_trained_base_change_task0_outputs(run):
    method, result = run
    same = torch.equal(result.task0_logits_before, result.task0_logits_after)
    assert same == (method not in SHARES_TRAINED_BASE)
    if method == "finetune":
        assert not torch.equal(result.task0_logits_before.argmax(1), result.task0_logits_after.argmax(1))


def test_evaluating_an_unseen_task_changes_nothing_trained(run, stream):
    """The run loop evaluates future tasks too: their new modules must not touch existing ones."""
    method, result = run
    result.strategy.eval(stream.test_stream[2:3], num_workers=0)
    now = tensors(result.strategy.model)
    assert all(torch.equal(now[name], value) for name, value in result.after.items())
    if method == "independent":  # task 2's copy starts from the pre-trained network, BatchNorm included
        fresh = {n.removeprefix("tasks.2.base."): v for n, v in now.items() if n.startswith("tasks.2.base.")}
        pretrained = {n.removeprefix("pretrained."): v for n, v in now.items() if n.startswith("pretrained.")}
        assert fresh and all(torch.equal(v, pretrained[n]) for n, v in fresh.items() if n in pretrained)


def test_pnn_column_takes_laterals_from_every_column_trained_before_it(stream):
    RNGManager.set_random_seeds(0)
    strategy = build_strategy("pnn", MethodConfig(base="resnet20", epochs=1, batch_size=16), evaluator=None)
    model = strategy.model
    strategy.train(stream.train_stream[0], num_workers=0)
    strategy.eval(stream.test_stream, num_workers=0)  # placeholders for tasks 1-4, laterals from column 0
    strategy.train(stream.train_stream[1], num_workers=0)
    strategy.train(stream.train_stream[2], num_workers=0)
    assert model.trained == ["0", "1", "2"]
    assert [model.task(t).n_earlier for t in range(5)] == [0, 1, 2, 1, 1]
    assert len(model.task(2).output.adapter.alphas) == 2  # Avalanche's MLP adapter over columns 0 and 1


def test_ewc_penalty_keeps_the_base_closer_than_finetuning(stream):
    finetune = _runs.get("finetune") or train_two_tasks("finetune", stream)
    ewc = train_two_tasks("ewc", stream, ewc_lambda=1e4)
    fisher = next(p for p in ewc.strategy.plugins if isinstance(p, EWCPlugin)).importances[0]
    start = ewc.recorder.at_start[1]
    base = [name for name in fisher if name.startswith("base.")]
    assert base and all(torch.equal(start[n], finetune.recorder.at_start[1][n]) for n in base)

    def moved(result, weight) -> float:
        return sum(float((weight(n) * (result.after[n] - start[n]) ** 2).sum()) for n in base)

    # what EWC penalises (Fisher-weighted distance) shrinks a lot; the plain distance shrinks too
    assert moved(ewc, lambda n: fisher[n].data) < 0.5 * moved(finetune, lambda n: fisher[n].data)
    assert moved(ewc, lambda n: 1.0) < 0.95 * moved(finetune, lambda n: 1.0)


def test_lwf_teacher_is_the_previous_model_in_eval_mode(stream):
    result = _runs.get("lwf") or train_two_tasks("lwf", stream)
    plugin = next(p for p in result.strategy.plugins if isinstance(p, LwFPlugin))
    teacher = plugin.lwf.prev_model
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():  # the model as it was after the last task, as it predicts at test time
        assert torch.equal(teacher(task0_test_images(stream), 0), result.task0_logits_after)
    # it distils exactly the heads (and classes) trained so far
    assert dict(plugin.lwf.prev_classes_by_task) == {0: {0, 1}, 1: {0, 1}}


def test_unknown_method_is_a_config_error_listing_the_methods():
    with pytest.raises(ConfigError, match="unknown method 'nope'; choose one of") as error:
        build_strategy("nope", MethodConfig())
    assert str(error.value).endswith(", ".join(METHODS)) and "pnn" in METHODS and "ewc" in METHODS
