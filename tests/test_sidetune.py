"""Side-tuning as an Avalanche strategy: it never forgets and never touches the base."""

import numpy as np
import pytest
import torch

from continual_side.methods import TrainConfig, build_strategy
from continual_side.methods.sidetune import SideTuneModel, SideTuning
from continual_side.metrics import forgetting
from continual_side.models.backbones import resnet20
from continual_side.runner import RunConfig, run
from continual_side.streams import make_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options


@pytest.fixture(scope="module")
def three_task_run(cifar10_jpeg, tmp_path_factory):
    """Side-tuning (ResNet-20 base, distilled FCN4 side, alpha merge) over a 3-task CIFAR-10 split."""
    config = RunConfig(
        stream="split_cifar10",
        stream_options=SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=3, classes_per_task=3,
                                           images_per_class=40, test_images_per_class=20),
        method="sidetune",
        train=TrainConfig(base="resnet20", epochs=2, batch_size=32),
        out=str(tmp_path_factory.mktemp("runs")),
        progress=False,
    )
    return run(config)


def test_side_tuning_has_exactly_zero_forgetting(three_task_run):
    acc = three_task_run.acc_matrix
    for j in range(3):
        assert np.all(acc[j:, j] == acc[j, j]), f"task {j} accuracy changed after later tasks: {acc[:, j]}"
    assert forgetting(acc) == 0.0
    assert three_task_run.summary["forgetting"] == 0.0
    # it learned something: 3-way tasks, chance is 1/3
    assert np.diag(acc).mean() > 0.5


def test_every_base_tensor_is_bit_identical_to_the_pretrained_weights_after_three_tasks(three_task_run):
    pretrained = resnet20(weights=True).state_dict()
    base = three_task_run.model.base.network.state_dict()
    assert base.keys() == pretrained.keys()
    for name, value in base.items():
        assert torch.equal(value, pretrained[name]), f"base tensor {name} changed during the stream"
    assert set(three_task_run.model.tasks) == {"0", "1", "2"}


def test_run_folder_holds_every_file(three_task_run):
    names = {p.name for p in three_task_run.run_dir.iterdir()}
    assert {"config.json", "metrics.jsonl", "acc_matrix.csv", "summary.json",
            "accuracy_over_stream.png", "acc_matrix.png"} <= names
    assert three_task_run.run_dir.parts[-3:] == ("split_cifar10", "sidetune", "seed-0")


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_current_task_modules_train_and_base_is_bit_identical(cifar10_jpeg):
    bench = make_stream("split_cifar10", SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=5,
                                                             images_per_class=16, test_images_per_class=4))
    strategy = build_strategy("sidetune", None, TrainConfig(base="resnet20", epochs=1, batch_size=16, lr=1e-2),
                              evaluator=None)
    model = strategy.model
    base_before = _snapshot(model.base)
    strategy.train(bench.train_stream[0], num_workers=0)
    task0_after_first = _snapshot(model.task(0))
    strategy.train(bench.train_stream[1], num_workers=0)

    for name, value in _snapshot(model.base).items():
        assert torch.equal(value, base_before[name]), f"base tensor {name} changed"
    for name, value in _snapshot(model.task(0)).items():
        assert torch.equal(value, task0_after_first[name]), f"task 0 tensor {name} changed while training task 1"
    assert not model.base.network.training, "the frozen base must stay in eval mode during training"
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(n.startswith("tasks.1.") for n in trained)
    assert {n.split(".")[2] for n in trained} == {"side", "merge", "head"}


def test_usable_from_user_code_like_any_avalanche_strategy(cifar10_jpeg):
    bench = make_stream("split_cifar10", SplitCifar10Options(data_root=str(cifar10_jpeg), n_tasks=5,
                                                             images_per_class=8, test_images_per_class=4))
    model = SideTuneModel(resnet20(weights=True), merge="sum", side_init="random")
    strategy = SideTuning(model=model, train_mb_size=16, train_epochs=1, eval_mb_size=64, device="cpu", evaluator=None)
    strategy.train(bench.train_stream[0], num_workers=0)
    assert set(model.tasks) == {"0"}
    with pytest.raises(TypeError, match="SideTuneModel"):
        SideTuning(model=resnet20(), train_mb_size=16)
