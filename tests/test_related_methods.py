"""The related methods as registered methods: SpotTune, Res-Tuning, Res-Tuning-Bypass, CST and HST.

Each trains over a 3-task stream through its Avalanche strategy (ResNet-20 or the small ViT, 1 epoch,
8 images a task): no task's outputs move after it was trained (forgetting exactly 0) and the outputs
have each task's shape. The parameter test (tests/test_methods.py) and the determinism test
(tests/test_runs.py) pick these methods up from the registry by themselves.
"""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from avalanche.training.determinism.rng_manager import RNGManager

from continual_side import checkpoint
from continual_side.cost import cost_rows, method_cost
from continual_side.errors import ConfigError
from continual_side.methods import TrainConfig, build_strategy
from continual_side.methods.hst import HSTOptions
from continual_side.methods.spottune import RoutingRecorder, SpotTuneOptions
from continual_side.models.hst import vit_cifar
from continual_side.streams import make_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options

NEW_METHODS = ["spottune", "restuning", "restuning_bypass", "cst", "hst"]
TRAIN = TrainConfig(base="resnet20", epochs=1, batch_size=4)


@pytest.fixture(scope="module")
def stream(cifar10_jpeg):
    return make_stream("split_cifar10", SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=3, classes_per_task=2,
                                                            images_per_class=4, test_images_per_class=3))


def task_test_images(stream, task: int) -> torch.Tensor:
    dataset = stream.test_stream[task].dataset
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def logits(strategy, stream, task: int) -> torch.Tensor:
    strategy.model.eval()
    with torch.no_grad():
        return strategy.model(task_test_images(stream, task), task)


@dataclass
class StreamRun:
    strategy: object
    logits_after: list[list[torch.Tensor]]  # [i][j]: task j's test logits after training task i (j <= i)


def run_stream(method: str, stream, options=None) -> StreamRun:
    """Train every task in turn, evaluating the whole test stream after each, as the run loop does."""
    RNGManager.set_random_seeds(0)
    strategy = build_strategy(method, options, TRAIN, evaluator=None)
    logits_after = []
    for i, experience in enumerate(stream.train_stream):
        strategy.train(experience, num_workers=0)
        strategy.eval(stream.test_stream, num_workers=0)
        logits_after.append([logits(strategy, stream, j) for j in range(i + 1)])
    return StreamRun(strategy, logits_after)


@pytest.fixture(scope="module")
def runs() -> dict[str, StreamRun]:
    return {}


@pytest.fixture(params=NEW_METHODS)
def run(request, stream, runs) -> tuple[str, StreamRun]:
    if request.param not in runs:
        runs[request.param] = run_stream(request.param, stream)
    return request.param, runs[request.param]


def test_no_task_forgets_and_outputs_have_each_tasks_shape(run, stream):
    method, result = run
    for j in range(3):
        trained = [result.logits_after[i][j] for i in range(j, 3)]
        assert all(torch.equal(trained[0], later) for later in trained[1:]), f"{method} forgot task {j}"
        assert trained[0].shape == (len(stream.test_stream[j].dataset), 2)
        assert torch.isfinite(trained[0]).all()


@pytest.mark.parametrize("method", ["restuning_bypass", "cst"])
def test_the_backbone_gets_no_grad_and_one_backbone_pass_serves_every_task(method, stream, runs):
    result = runs.get(method) or run_stream(method, stream)
    model = result.strategy.model
    assert all(p.grad is None for p in model.base.parameters())
    assert any(p.grad is not None for p in model.task(2).parameters())  # the last step reached the task
    calls = []
    model.base.network.conv1.register_forward_hook(lambda *_: calls.append(1))
    images = task_test_images(stream, 0)
    with torch.no_grad():
        together = model.eval().forward_all_tasks(images)
        assert len(calls) == 1 and sorted(together) == [0, 1, 2]
        assert all(torch.equal(together[task], model(images, task)) for task in together)


def test_spottune_records_the_routed_fraction_per_block_and_task(stream, runs):
    result = runs.get("spottune") or run_stream("spottune", stream)
    recorder = next(p for p in result.strategy.plugins if isinstance(p, RoutingRecorder))
    blocks = result.strategy.model.task(0).num_blocks
    final = [r for r in recorder.routing if r["after_experience"] == 2]
    assert [r["task"] for r in final] == [0, 1, 2]
    assert all(len(r["fractions"]) == blocks and all(0.0 <= f <= 1.0 for f in r["fractions"]) for r in final)
    evaluated = [(r["after_experience"], r["task"]) for r in recorder.routing]
    assert evaluated == [(i, j) for i in range(3) for j in range(3)]  # every task, after each task's training
    assert recorder.checkpoint_state() == {"routing": recorder.routing}


def test_spottune_global_variant_keeps_k_copies_and_resumes_from_a_checkpoint(stream, tmp_path):
    options = SpotTuneOptions(global_k=2)
    RNGManager.set_random_seeds(0)
    trained = build_strategy("spottune", options, TRAIN, evaluator=None)
    assert trained.model.policy_lr_scale == 50.0
    for experience in stream.train_stream[:2]:
        trained.train(experience, num_workers=0)
        trained.eval(stream.test_stream, num_workers=0)
    lrs = [group["lr"] for group in trained.optimizer.param_groups]
    assert lrs == [TRAIN.lr, 50.0 * TRAIN.lr]
    assert [len(trained.model.task(t).finetuned_blocks) for t in range(3)] == [2, 2, 9]  # task 2 not trained yet
    progress = checkpoint.RunProgress(settings="{}", acc_rows=np.zeros((2, 3)), trainable_parameters=[],
                                      wall_time_s=0.0, events=0)
    checkpoint.save(tmp_path, trained, progress)
    resumed = build_strategy("spottune", options, TRAIN, evaluator=None)
    checkpoint.restore(checkpoint.load(tmp_path), resumed, stream)
    for task in range(3):
        assert torch.equal(logits(resumed, stream, task), logits(trained, stream, task))


def test_spottune_global_k_outside_the_blocks_is_a_config_error():
    with pytest.raises(ConfigError, match="global_k=10: choose 1 to 9 blocks"):
        build_strategy("spottune", SpotTuneOptions(global_k=10), TRAIN, evaluator=None)


def test_hst_leaves_the_shared_vit_bit_identical(stream, runs):
    result = runs.get("hst") or run_stream("hst", stream)
    model = result.strategy.model
    packaged = vit_cifar(True).state_dict()  # the ViT every run starts from
    assert all(torch.equal(packaged[key], value) for key, value in model.vit.state_dict().items())
    assert not model.vit.training and not any(p.requires_grad for p in model.vit.parameters())


def test_hst_runs_on_the_packaged_distilled_vit_unless_told_otherwise(tmp_path):
    packaged = vit_cifar(True).state_dict()
    default = build_strategy("hst", None, TRAIN, evaluator=None).model.vit.state_dict()
    assert all(torch.equal(packaged[key], value) for key, value in default.items())
    with pytest.warns(UserWarning, match="randomly initialised ViT"):
        random = build_strategy("hst", HSTOptions(random_vit=True), TRAIN, evaluator=None).model.vit
    assert not torch.equal(random.conv_proj.weight, packaged["conv_proj.weight"])
    with pytest.raises(ConfigError, match="contradict each other"):
        HSTOptions(random_vit=True, vit_weights=str(tmp_path / "vit.pt"))


def test_counted_training_memory_and_macs_relative_to_fine_tuning(stream):
    methods = ["finetune", "restuning_bypass", "restuning", "cst", "sidetune"]
    rows = {row["method"]: row for row in cost_rows([method_cost(m, stream, train=TRAIN, n_tasks=3, batch_size=8,
                                                                 steps=1) for m in methods])}
    assert rows["restuning_bypass"]["memory_ratio"] <= 0.55  # the bounds
    # in-backbone tuners save more than fine-tuning for backward; with its tiny gradient and Adam state that is
    # 0.82x of fine-tuning's total at this batch of 8 on ResNet-20, 1.08x at batch 32 on ResNet-44
    assert rows["restuning"]["saved_bytes"] >= rows["finetune"]["saved_bytes"]
    assert rows["cst"]["memory_ratio"] <= 0.30 and rows["sidetune"]["memory_ratio"] <= 0.30
    for method in ("finetune", "restuning_bypass", "cst", "sidetune"):  # one backbone pass serves 3 tasks
        assert rows[method]["macs_all_tasks"] < 1.3 * rows[method]["macs_one_task"]
    assert rows["restuning"]["macs_all_tasks"] > 2.9 * rows["restuning"]["macs_one_task"]  # a pass per task
