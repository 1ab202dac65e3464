"""Every registered method trains exactly the parameters it claims to, and forgets only if it shares them."""

from dataclasses import dataclass

import pytest
import torch
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EWCPlugin, SupervisedPlugin

from continual_side.errors import ConfigError
from continual_side.methods import METHODS, TrainConfig, build_strategy
from continual_side.methods.ewc import EWCOptions
from continual_side.methods.lwf import LwFOptions, LwFPlugin
from continual_side.models.sidetuned import FrozenBase
from continual_side.streams import make_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options


def shares_trained_base(method: str) -> bool:
    """Task 0's outputs move when task 1 trains exactly when the method trains the shared base."""
    return METHODS[method].trainable("base.anything", "1")


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}


class Recorder(SupervisedPlugin):
    """Snapshots the model when a task's training starts (after Avalanche added its modules) and
    records, at every training forward, the mode of every FrozenBase and of a trained shared base."""

    def __init__(self):
        super().__init__()
        self.at_start: dict[int, dict[str, torch.Tensor]] = {}
        self.frozen_modes: set[bool] = set()
        self.frozen_seen = 0
        self.shared_base_modes: set[bool] = set()

    def before_training_exp(self, strategy, **kwargs):
        self.at_start[strategy.experience.current_experience] = tensors(strategy.model)

    def after_forward(self, strategy, **kwargs):
        frozen = [m for m in strategy.model.modules() if isinstance(m, FrozenBase)]
        self.frozen_seen = max(self.frozen_seen, len(frozen))
        self.frozen_modes |= {module.network.training for module in frozen}
        base = getattr(strategy.model, "base", None)
        if base is not None and not isinstance(base, FrozenBase):
            self.shared_base_modes.add(base.training)


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
    return make_stream("split_cifar10", SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=5,
                                                            images_per_class=16, test_images_per_class=8))


def task0_test_images(stream) -> torch.Tensor:
    dataset = stream.test_stream[0].dataset
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def task0_logits(strategy, stream) -> torch.Tensor:
    strategy.model.eval()
    with torch.no_grad():
        return strategy.model(task0_test_images(stream), 0)


def train_two_tasks(method: str, stream, options=None) -> TwoTasks:
    RNGManager.set_random_seeds(0)
    recorder = Recorder()
    train = TrainConfig(base="resnet20", epochs=1, batch_size=8)
    strategy = build_strategy(method, options, train, plugins=[recorder], evaluator=None)
    strategy.train(stream.train_stream[0], num_workers=0)
    after_task0, before = tensors(strategy.model), task0_logits(strategy, stream)
    strategy.train(stream.train_stream[1], num_workers=0)
    return TwoTasks(strategy, recorder, after_task0, tensors(strategy.model), before, task0_logits(strategy, stream))


@pytest.fixture(scope="module")
def trained_runs() -> dict[str, TwoTasks]:
    """One training per method, shared by this module's tests (a fresh dict per test session)."""
    return {}


@pytest.fixture(params=sorted(METHODS))
def run(request, stream, trained_runs) -> tuple[str, TwoTasks]:
    """Each registered method trained on tasks 0 and 1 (once per module)."""
    if request.param not in trained_runs:
        trained_runs[request.param] = train_two_tasks(request.param, stream)
    return request.param, trained_runs[request.param]


def test_exactly_the_intended_tensors_change(run):
    method, result = run
    trains = lambda name: METHODS[method].trainable(name, "1")  # noqa: E731 - read from the registry
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


def test_frozen_bases_stay_in_eval_mode_and_trained_bases_train(run):
    method, result = run
    has_frozen = any(isinstance(m, FrozenBase) for m in result.strategy.model.modules())
    assert result.recorder.frozen_modes == ({False} if has_frozen else set())
    assert not (has_frozen and shares_trained_base(method))  # a base that trains is never held frozen
    assert has_frozen or shares_trained_base(method) or method == "hst"  # hst freezes its ViT itself
    # a FrozenBase's tensors (BatchNorm buffers included) are bit-identical to the pre-trained ones
    frozen = {f"{name}.{t}" for name, m in result.strategy.model.named_modules() if isinstance(m, FrozenBase)
              for t, _ in [*m.named_parameters(), *m.named_buffers()]}
    assert all(torch.equal(result.recorder.at_start[0][n], result.after[n]) for n in frozen)
    assert result.recorder.shared_base_modes == ({True} if shares_trained_base(method) else set())


def test_only_methods_sharing_a_trained_base_change_task0_outputs(run):
    method, result = run
    same = torch.equal(result.task0_logits_before, result.task0_logits_after)
    assert same == (not shares_trained_base(method))
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
    strategy = build_strategy("pnn", None, TrainConfig(base="resnet20", epochs=1, batch_size=16), evaluator=None)
    model = strategy.model
    strategy.train(stream.train_stream[0], num_workers=0)
    strategy.eval(stream.test_stream, num_workers=0)  # placeholders for tasks 1-4, laterals from column 0
    strategy.train(stream.train_stream[1], num_workers=0)
    strategy.train(stream.train_stream[2], num_workers=0)
    assert model.trained == ["0", "1", "2"]
    assert [model.task(t).n_earlier for t in range(5)] == [0, 1, 2, 1, 1]
    assert len(model.task(2).output.adapter.alphas) == 2  # Avalanche's MLP adapter over columns 0 and 1


def test_ewc_penalty_keeps_the_base_closer_than_finetuning(stream, trained_runs):
    finetune = trained_runs.get("finetune") or train_two_tasks("finetune", stream)
    ewc = train_two_tasks("ewc", stream, EWCOptions(lambda_=1e4))
    fisher = next(p for p in ewc.strategy.plugins if isinstance(p, EWCPlugin)).importances[0]
    start = ewc.recorder.at_start[1]
    base = [name for name in fisher if name.startswith("base.")]
    assert base and all(torch.equal(start[n], finetune.recorder.at_start[1][n]) for n in base)

    def moved(result, weight) -> float:
        return sum(float((weight(n) * (result.after[n] - start[n]) ** 2).sum()) for n in base)

    # what EWC penalises (Fisher-weighted distance) shrinks a lot; the plain distance shrinks too
    assert moved(ewc, lambda n: fisher[n].data) < 0.5 * moved(finetune, lambda n: fisher[n].data)
    assert moved(ewc, lambda n: 1.0) < 0.95 * moved(finetune, lambda n: 1.0)


def test_lwf_teacher_is_the_previous_model_in_eval_mode(stream, trained_runs):
    result = trained_runs.get("lwf") or train_two_tasks("lwf", stream)
    plugin = next(p for p in result.strategy.plugins if isinstance(p, LwFPlugin))
    teacher = plugin.lwf.prev_model
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():  # the model as it was after the last task, as it predicts at test time
        assert torch.equal(teacher(task0_test_images(stream), 0), result.task0_logits_after)
    # it distils exactly the heads (and classes) trained so far
    assert dict(plugin.lwf.prev_classes_by_task) == {0: {0, 1}, 1: {0, 1}}


def test_ewc_with_lambda_0_trains_exactly_as_finetuning(stream, trained_runs):
    finetune = trained_runs.get("finetune") or train_two_tasks("finetune", stream)
    ewc = train_two_tasks("ewc", stream, EWCOptions(lambda_=0.0))
    assert finetune.after.keys() == ewc.after.keys()
    assert all(torch.equal(finetune.after[n], ewc.after[n]) for n in finetune.after)


def test_ewc_loss_exceeds_the_cross_entropy_when_the_penalty_is_on(stream):
    class LossRecorder(SupervisedPlugin):
        def __init__(self):
            super().__init__()
            self.pairs = []  # (training loss after the penalty, plain cross-entropy) per iteration

        def after_backward(self, strategy, **kwargs):
            with torch.no_grad():
                self.pairs.append((float(strategy.loss), float(strategy._criterion(strategy.mb_output, strategy.mb_y))))

    recorder = LossRecorder()
    RNGManager.set_random_seeds(0)
    strategy = build_strategy("ewc", EWCOptions(lambda_=1e4), TrainConfig(base="resnet20", epochs=1, batch_size=8),
                              plugins=[recorder], evaluator=None)
    strategy.train(stream.train_stream[0], num_workers=0)
    assert all(loss == ce for loss, ce in recorder.pairs)  # no earlier task: no penalty
    first_task = len(recorder.pairs)
    strategy.train(stream.train_stream[1], num_workers=0)
    later = recorder.pairs[first_task + 1:]  # the first step of task 1 starts at the anchor: penalty 0
    assert later and all(loss > ce for loss, ce in later)


def test_lwf_with_alpha_0_is_finetuning_and_alpha_1_changes_the_weights(stream, trained_runs):
    finetune = trained_runs.get("finetune") or train_two_tasks("finetune", stream)
    off = train_two_tasks("lwf", stream, LwFOptions(alpha=0.0))
    on = trained_runs.get("lwf") or train_two_tasks("lwf", stream)
    assert all(torch.equal(finetune.after[n], off.after[n]) for n in finetune.after)
    assert any(not torch.equal(finetune.after[n], on.after[n]) for n in finetune.after if n.startswith("base."))


def test_unknown_method_is_a_config_error_listing_the_methods():
    with pytest.raises(ConfigError, match="unknown method 'nope'; choose one of") as error:
        build_strategy("nope")
    assert all(name in str(error.value) for name in ("finetune", "ewc", "sidetune", "pnn"))


def test_options_of_another_method_are_refused():
    with pytest.raises(ConfigError, match="method 'sidetune' takes SideTuneOptions, got EWCOptions"):
        build_strategy("sidetune", EWCOptions())
