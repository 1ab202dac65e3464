"""Every registered method that runs dense tasks on a dense stream (iTaskonomy-like) over the mid-level base,
and over Taskonomy's ResNet-50 (``taskonomy``, slow).

A tiny 3-task stream (curvature: pixel regression, segment_semantic: pixel classes, class_object: a class
distribution per image) of 32 px images, on a random :class:`MidLevelEncoder` standing in for the
pre-trained ``midlevel`` base. Each method trains once per module (1 epoch per task); the tests read
those runs. The ResNet-50 runs use 64 px images on a random :class:`TaskonomyEncoder`.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch
import torchvision
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.templates.base_sgd import PeriodicEval

import continual_side.methods.common as common
from continual_side.errors import ConfigError
from continual_side.hub import resolve_weights
from continual_side.methods import METHODS, TrainConfig, build_strategy
from continual_side.methods.ewc import EWCPlugin
from continual_side.methods.lwf import LwFOptions, LwFPlugin, TaskDistillation
from continual_side.methods.pnn import pixels_as_rows, rows_as_pixels
from continual_side.methods.sidetune import SideTuneOptions
from continual_side.models.backbones import resnet20
from continual_side.models.cst import CalibrationSideTuning
from continual_side.models.dense_losses import PackedTaskLoss, pack_target
from continual_side.models.feature_cache import FeatureCache, clear_memory_caches
from continual_side.models.heads import DenseOutput
from continual_side.models.merge import make_merge
from continual_side.models.midlevel import FCN5, MidLevelEncoder, TaskonomyEncoder
from continual_side.models.restuning import ResTuning, ResTuningBypass, block_shape
from continual_side.streams.benchmark import DenseTaskDataset, dense_task_benchmark
from continual_side.sweep import SweepConfig, resolve_methods, run_sweep

SIZE, IMAGES = 32, 6
OUTPUTS = (DenseOutput("curvature", 2), DenseOutput("segment_semantic", 4),
           DenseOutput("class_object", 5, pixelwise=False))
DENSE_METHODS = sorted(name for name, spec in METHODS.items() if spec.dense)  # not hst (its own tests below)
TASKONOMY_SIZE = 64  # 4 x 4 feature maps at the ResNet-50's stride 16
TASKONOMY_OPTIONS = {"sidetune": SideTuneOptions(side_init="base_copy")}  # the only side for that base


def tiny_dense_stream(size: int = SIZE):
    """Three dense tasks on the same 6 random images of ``size`` px (train = test)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (IMAGES, 3, size, size), dtype=torch.uint8, generator=generator)
    curvature = torch.stack([pack_target("curvature", torch.rand(2, size, size, generator=generator))
                             for _ in range(IMAGES)])
    segments = torch.stack([pack_target("segment_semantic", torch.randint(0, 4, (size, size), generator=generator))
                            for _ in range(IMAGES)])
    objects = torch.softmax(torch.randn(IMAGES, 5, generator=generator), 1)
    tasks = [(output, DenseTaskDataset(images, packed), DenseTaskDataset(images, packed))
             for output, packed in zip(OUTPUTS, (curvature, segments, objects))]
    return dense_task_benchmark("tiny_dense", tasks)


def random_midlevel(weights=None) -> MidLevelEncoder:
    """Stands for the pre-trained midlevel base (BASES["midlevel"]) in these tests."""
    return MidLevelEncoder()


def random_taskonomy(weights=None) -> TaskonomyEncoder:
    """Stands for Taskonomy's pre-trained ResNet-50 (BASES["taskonomy"], none ships) in these tests."""
    return TaskonomyEncoder()


RANDOM_BASES = {"midlevel": random_midlevel, "taskonomy": random_taskonomy}


def tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and saved buffers (not constants such as the taskonomy base's input scaling)."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


class StartSnapshot(SupervisedPlugin):
    """The model's tensors when the current task's training started (after Avalanche added its modules)."""

    def __init__(self):
        super().__init__()
        self.at_start: dict[str, torch.Tensor] = {}

    def before_training_exp(self, strategy, **kwargs):
        self.at_start = tensors(strategy.model)


@dataclass
class TaskChanges:
    """What training one task did to the model's tensors."""

    names_at_start: set[str]
    names_at_end: set[str]
    changed: set[str]


@dataclass
class DenseRun:
    strategy: object
    changes: list[TaskChanges]  # per task
    final: dict[str, torch.Tensor]  # the model's tensors after training all tasks
    task0_after_task0: torch.Tensor  # task 0's test outputs right after training task 0
    outputs: list[torch.Tensor]  # every task's test outputs after training all tasks


def task_images(stream, task: int) -> torch.Tensor:
    dataset = stream.test_stream[task].dataset
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def task_outputs(strategy, stream, task: int) -> torch.Tensor:
    strategy.model.eval()
    with torch.no_grad():
        return strategy.model(task_images(stream, task), task)


def train_dense(method: str, stream, options=None, feature_cache: str = "memory", plugins=(),
                base: str = "midlevel") -> DenseRun:
    """Train ``method`` over the stream as the run loop does: train task k, then evaluate every task.

    :param base: the base, randomly initialised (:data:`RANDOM_BASES`).
    """
    RNGManager.set_random_seeds(0)
    snapshot = StartSnapshot()
    train = TrainConfig(base=base, epochs=1, batch_size=3, feature_cache=feature_cache)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(common.BASES, base, RANDOM_BASES[base])
        strategy = build_strategy(method, options, train, plugins=[snapshot, *plugins], evaluator=None)
    changes, task0 = [], None
    for task, experience in enumerate(stream.train_stream):
        strategy.train(experience, num_workers=0)
        start, end = snapshot.at_start, tensors(strategy.model)
        changes.append(TaskChanges(set(start), set(end), {n for n in start.keys() & end.keys()
                                                          if not torch.equal(start[n], end[n])}))
        if task == 0:
            task0 = task_outputs(strategy, stream, 0)
        strategy.eval(stream.test_stream, num_workers=0)
    outputs = [task_outputs(strategy, stream, task) for task in range(len(OUTPUTS))]
    return DenseRun(strategy, changes, end, task0, outputs)


@pytest.fixture(scope="module")
def stream():
    return tiny_dense_stream()


@pytest.fixture(scope="module")
def dense_runs() -> dict[str, DenseRun]:
    return {}


@pytest.fixture(params=DENSE_METHODS)
def run(request, stream, dense_runs) -> tuple[str, DenseRun]:
    """Each method trained over the three dense tasks with its default options (once per module)."""
    if request.param not in dense_runs:
        dense_runs[request.param] = train_dense(request.param, stream)
    return request.param, dense_runs[request.param]


def assert_each_task_changes_exactly_the_tensors_its_method_trains(method: str, result: DenseRun,
                                                                    starved_tasks: Sequence[int] = ()) -> None:
    """Only the tensors the method trains for a task change while it trains, and all of them do.

    :param starved_tasks: tasks whose gradient is known to vanish before some trained tensors: there, only
        some of them must change.
    """
    for task, changes in enumerate(result.changes):
        assert changes.names_at_start == changes.names_at_end
        changed = changes.changed
        intended = {name for name in changes.names_at_start if METHODS[method].trainable(name, str(task))}
        assert intended, f"{method}: no tensor is trainable for task {task}"
        assert changed <= intended, f"{method}, task {task}: changed but not intended {sorted(changed - intended)[:5]}"
        if task in starved_tasks:
            assert changed, f"{method}, task {task}: nothing changed"
            continue
        unchanged = intended - changed
        if method == "spottune":  # 2 steps: a block copy may be routed no image, so get no gradient; its
            # BatchNorm statistics still move (both paths run in training), so the copy is checked by those
            unchanged = {name for name in unchanged if ".finetuned_blocks." not in name or "running_" in name}
        assert not unchanged, f"{method}, task {task}: intended but unchanged {sorted(unchanged)[:5]}"


def assert_outputs_are_maps_at_input_resolution_or_class_scores(result: DenseRun, size: int) -> None:
    assert [tuple(out.shape) for out in result.outputs] == [
        (IMAGES, 2, size, size), (IMAGES, 4, size, size), (IMAGES, 5)]
    assert all(torch.isfinite(out).all() for out in result.outputs)


def assert_only_methods_sharing_a_trained_base_change_task0_outputs(method: str, result: DenseRun) -> None:
    shares_base = METHODS[method].trainable("base.anything", "1")
    assert torch.equal(result.task0_after_task0, result.outputs[0]) == (not shares_base)


def test_each_task_changes_exactly_the_tensors_its_method_trains(run):
    assert_each_task_changes_exactly_the_tensors_its_method_trains(*run)


def test_outputs_are_maps_at_input_resolution_or_class_scores(run):
    assert_outputs_are_maps_at_input_resolution_or_class_scores(run[1], SIZE)


def test_only_methods_sharing_a_trained_base_change_task0_outputs(run):
    assert_only_methods_sharing_a_trained_base_change_task0_outputs(*run)


def test_taskonomy_feature_pools_to_zero():
    """Why class_object starves on the taskonomy base: its feature map ends in a GroupNorm without affine, so
    each channel's mean over the map is 0 and a pooled head (PooledClassifier) reads the same zero vector for
    every image. Its gradient is only rounding noise, which 16 Bypass tuners shrink to nothing."""
    torch.manual_seed(0)
    features = TaskonomyEncoder().eval().features(torch.randn(2, 3, TASKONOMY_SIZE, TASKONOMY_SIZE))
    assert features.abs().mean() > 0.1 and features.mean((2, 3)).abs().max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("method", DENSE_METHODS)
def test_every_method_trains_dense_tasks_on_taskonomy_resnet50(method):
    """Bottleneck blocks (visualpriors' layout: the stage's last block strided), four stages, stride 16."""
    result = train_dense(method, tiny_dense_stream(TASKONOMY_SIZE), TASKONOMY_OPTIONS.get(method), base="taskonomy")
    class_object = 2  # pooled on a zero-mean map (test_taskonomy_feature_pools_to_zero): the Bypass's first
    # tuners get no update
    starved = [class_object] if method == "restuning_bypass" else []
    assert_each_task_changes_exactly_the_tensors_its_method_trains(method, result, starved)
    assert_outputs_are_maps_at_input_resolution_or_class_scores(result, TASKONOMY_SIZE)
    assert_only_methods_sharing_a_trained_base_change_task0_outputs(method, result)


def test_sidetune_starts_each_dense_task_from_the_distilled_fcn5():
    train = TrainConfig(base="midlevel", epochs=1, batch_size=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(common.BASES, "midlevel", random_midlevel)
        model = build_strategy("sidetune", None, train, evaluator=None).model
    side = model.new_task_module(OUTPUTS[0]).side
    distilled = torch.load(resolve_weights("fcn5-midlevel"), weights_only=True)
    assert isinstance(side, FCN5) and all(torch.equal(side.state_dict()[n], v) for n, v in distilled.items())


@pytest.mark.parametrize("method", ["features", "sidetune"])
def test_the_feature_cache_changes_no_output(method, stream, dense_runs):
    clear_memory_caches()
    cached = train_dense(method, stream, feature_cache="memory")
    uncached = train_dense(method, stream, feature_cache="off")
    assert all(torch.equal(a, b) for a, b in zip(cached.outputs, uncached.outputs))
    assert cached.final.keys() == uncached.final.keys()
    assert all(torch.equal(cached.final[n], uncached.final[n]) for n in cached.final)


def test_every_method_but_hst_runs_dense_tasks_and_all_leaves_hst_out_of_a_dense_stream():
    assert set(METHODS) - set(DENSE_METHODS) == {"hst"}
    assert resolve_methods(["all"], ["itaskonomy"]) == [name for name in METHODS if name != "hst"]
    assert resolve_methods(["all"], ["split_cifar10"]) == list(METHODS)
    assert resolve_methods(["all"], ["split_cifar10", "itaskonomy"]) == list(METHODS)  # hst on the CIFAR one only


def test_naming_hst_for_a_dense_stream_fails_before_anything_is_built(tmp_path):
    config = SweepConfig(streams=("split_cifar10", "itaskonomy"), methods=("features", "hst"), seeds=1,
                         out=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="hst cannot run the dense stream 'itaskonomy'.*leave hst out of --methods"):
        run_sweep(config)
    assert not any(tmp_path.iterdir())


def test_hst_refuses_a_dense_task_and_says_why(stream):
    strategy = build_strategy("hst", None, TrainConfig(base="midlevel", epochs=1, batch_size=3), evaluator=None)
    with pytest.raises(ConfigError, match="hst cannot run the dense task 'curvature'.*leave hst out"):
        strategy.train(stream.train_stream[0], num_workers=0)


# ------------------------------------------------------------------------------------------ LwF and EWC


def test_lwf_distils_each_dense_task_by_its_own_kind_of_output():
    torch.manual_seed(0)
    distillation = TaskDistillation(alpha=1.0, temperature=2.0)
    distillation.task_outputs = dict(enumerate(OUTPUTS))
    maps, other = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    assert torch.equal(distillation.distillation(0, maps, other), (maps - other).square().mean())  # curvature: L2
    segments, old_segments = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    per_pixel = distillation._distillation_loss(pixels_as_rows(segments), pixels_as_rows(old_segments), range(4))
    torch.testing.assert_close(distillation.distillation(1, segments, old_segments), per_pixel)
    scores, old_scores = torch.randn(3, 5), torch.randn(3, 5)
    torch.testing.assert_close(distillation.distillation(2, scores, old_scores),
                               distillation._distillation_loss(scores, old_scores, range(5)))
    for task, value in enumerate((maps, segments, scores)):
        assert distillation.distillation(task, value, value).abs() < 1e-6  # 0 when nothing moved
        assert distillation.distillation(task, value, value + torch.randn_like(value)) > 1e-3


class LossRecorder(SupervisedPlugin):
    """Per task, (training loss, the task's own loss) at every step: their difference is a regulariser's."""

    def __init__(self):
        super().__init__()
        self.pairs: dict[int, list[tuple[float, float]]] = {}

    def after_backward(self, strategy, **kwargs):
        with torch.no_grad():
            task_loss = float(strategy._criterion(strategy.mb_output, strategy.mb_y))
        self.pairs.setdefault(strategy.experience.current_experience, []).append((strategy.loss.item(), task_loss))


def test_lwf_on_a_dense_stream_distils_and_checkpoints_its_task_outputs(stream, dense_runs, tmp_path):
    losses = LossRecorder()
    lwf = train_dense("lwf", stream, plugins=[losses])
    assert all(loss == task_loss for loss, task_loss in losses.pairs[0])  # no earlier task: nothing distilled
    assert all(loss > task_loss for task in (1, 2) for loss, task_loss in losses.pairs[task])
    finetune = dense_runs.get("finetune") or train_dense("finetune", stream)
    off = train_dense("lwf", stream, LwFOptions(alpha=0.0))
    assert all(torch.equal(finetune.final[n], off.final[n]) for n in finetune.final)
    plugin = next(p for p in lwf.strategy.plugins if isinstance(p, LwFPlugin))
    assert plugin.lwf.task_outputs == dict(enumerate(OUTPUTS))
    torch.save(plugin.checkpoint_state(), tmp_path / "lwf.pt")
    restored = LwFPlugin()
    restored.restore_state(torch.load(tmp_path / "lwf.pt", weights_only=True), lwf.strategy)
    assert restored.lwf.task_outputs == plugin.lwf.task_outputs
    assert restored.lwf.expcount == 3 and restored.lwf.prev_model is not None


def ewc_on_task0(stream, plugins=(), eval_streams=None):
    """EWC trained on the curvature task (task 0) over a random mid-level base; its strategy and EWC plugin."""
    RNGManager.set_random_seeds(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(common.BASES, "midlevel", random_midlevel)
        strategy = build_strategy("ewc", None, TrainConfig(base="midlevel", epochs=1, batch_size=3),
                                  plugins=plugins, evaluator=None)
    strategy.train(stream.train_stream[0], eval_streams=eval_streams, num_workers=0)
    return strategy, next(p for p in strategy.plugins if isinstance(p, EWCPlugin))


def fisher_matches(strategy, plugin, stream, loss) -> bool:
    """Whether EWC's stored Fisher of task 0 is the one of ``loss`` on the final model."""
    importances = plugin.compute_importances(strategy.model, loss, strategy.optimizer,
                                             stream.train_stream[0].dataset, "cpu", 3)
    stored = plugin.importances[0]
    return all(torch.equal(stored[name].data, value.data) for name, value in importances.items())


def test_ewc_fisher_is_that_of_the_dense_task_loss(stream):
    strategy, plugin = ewc_on_task0(stream)
    assert any(value.data.abs().sum() > 0 for name, value in plugin.importances[0].items() if name.startswith("base."))
    assert fisher_matches(strategy, plugin, stream, PackedTaskLoss("curvature"))
    # guard: another loss on the same outputs (L1 instead of curvature's L2) gives another Fisher
    assert not fisher_matches(strategy, plugin, stream, PackedTaskLoss("reshading"))


class EvaluatedTasks(SupervisedPlugin):
    """The tasks evaluated, in order (periodic evaluation happens inside training)."""

    def __init__(self):
        super().__init__()
        self.tasks: list[int] = []

    def before_eval_exp(self, strategy, **kwargs):
        self.tasks.append(strategy.experience.current_experience)


class CurvatureLosses(SupervisedPlugin):
    """At every training step, (the loss the strategy trained with, the curvature loss of the same outputs)."""

    def __init__(self):
        super().__init__()
        self.pairs: list[tuple[float, float]] = []

    def after_backward(self, strategy, **kwargs):
        with torch.no_grad():
            curvature = float(PackedTaskLoss("curvature")(strategy.mb_output, strategy.mb_y))
        self.pairs.append((strategy.loss.item(), curvature))


def test_evaluation_during_training_leaves_the_training_task_loss_to_training_and_ewc(stream):
    """Avalanche's eval_every evaluates another task (segment_semantic, its own loss) between the curvature
    task's steps; EWC adds nothing on the first task, so its loss is exactly the curvature loss."""
    losses, evaluated = CurvatureLosses(), EvaluatedTasks()
    periodic = PeriodicEval(eval_every=1, peval_mode="iteration")
    strategy, plugin = ewc_on_task0(stream, plugins=[losses, evaluated, periodic],
                                    eval_streams=[stream.test_stream[1]])
    assert evaluated.tasks == [1, 1, 1, 1]  # before training, after each of the 2 steps, after the task
    assert len(losses.pairs) == 2 and all(loss == curvature for loss, curvature in losses.pairs)
    assert isinstance(strategy._criterion, PackedTaskLoss) and strategy._criterion.task == "curvature"
    assert fisher_matches(strategy, plugin, stream, PackedTaskLoss("curvature"))


# ------------------------------------------------------------------------------------------ the pieces


@pytest.mark.parametrize("base_class, size", [(MidLevelEncoder, SIZE), (TaskonomyEncoder, TASKONOMY_SIZE)])
def test_tuned_networks_start_exactly_at_the_frozen_base_feature_map(base_class, size):
    """The frozen tail on a zero-initialised tuner output (Res-Tuning, Bypass) or an alpha-0 gate (CST)."""
    torch.manual_seed(0)
    base = base_class().eval()
    images = torch.randn(2, 3, size, size)
    for model_class in (ResTuning, ResTuningBypass, CalibrationSideTuning):
        model = model_class(base, OUTPUTS[0])
        assert torch.equal(model.features(images), base.features(images)), model_class.__name__
        assert tuple(model(images).shape) == (2, 2, size, size)


def test_block_shapes_match_what_each_kind_of_block_does_to_a_map():
    """The CIFAR basic block, visualpriors' bottlenecks (widening first block, strided last) and torchvision's."""
    blocks = [*resnet20(weights=None).residual_blocks(), *TaskonomyEncoder().residual_blocks(),
              *torchvision.models.resnet50().layer2]
    assert len({block_shape(block) for block in blocks}) >= 8
    for block in blocks:
        shape = block_shape(block)
        out = block.eval()(torch.randn(1, shape.in_channels, 8, 8))
        assert tuple(out.shape) == (1, shape.out_channels, 8 // shape.stride, 8 // shape.stride), block


def test_cst_reads_every_stage_of_the_base_with_its_stride():
    torch.manual_seed(0)
    network = CalibrationSideTuning(TaskonomyEncoder().eval(), OUTPUTS[0])
    stages = network.stage_outputs(torch.randn(1, 3, TASKONOMY_SIZE, TASKONOMY_SIZE))
    assert [tuple(stage.shape[1:]) for stage in stages] == [(256, 8, 8), (512, 4, 4), (1024, 4, 4), (2048, 4, 4)]
    assert [carry.stride[0] for carry in network.side.carries] == [2, 1, 1]
    assert [tuple(stage.shape[1:]) for stage in CalibrationSideTuning(MidLevelEncoder(), 3).stage_outputs(
        torch.randn(1, 3, SIZE, SIZE))] == [(16, 16, 16), (32, 8, 8), (64, 4, 4)]


@pytest.mark.parametrize("name", ["film", "mlp"])
def test_learned_merges_act_on_each_pixel_of_a_map_as_on_a_vector(name):
    torch.manual_seed(0)
    merge = make_merge(name, 8)
    with torch.no_grad():
        for parameter in merge.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    base_map, side_map = torch.randn(2, 8, 3, 4), torch.randn(2, 8, 3, 4)
    merged = merge(base_map, side_map)
    assert merged.shape == base_map.shape
    torch.testing.assert_close(merged[:, :, 2, 1], merge(base_map[:, :, 2, 1], side_map[:, :, 2, 1]))


def test_pnn_rows_are_the_pixels_of_the_map():
    feature = torch.randn(2, 8, 3, 4)
    rows = pixels_as_rows(feature)
    assert rows.shape == (2 * 3 * 4, 8) and torch.equal(rows[12 + 2 * 4 + 1], feature[1, :, 2, 1])
    assert torch.equal(rows_as_pixels(rows, feature), feature)
    vector = torch.randn(2, 8)
    assert pixels_as_rows(vector) is vector and rows_as_pixels(vector, vector) is vector


def test_feature_cache_serves_maps_from_memory_and_disk(tmp_path):
    torch.manual_seed(0)
    network = MidLevelEncoder().eval()
    images = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = network.features(images)
    clear_memory_caches()
    cache = FeatureCache("disk", tmp_path)
    cache.features(network, images[:2])
    assert torch.equal(cache.features(network, images), expected)  # 2 hits, 2 misses
    assert (cache.stats.hits, cache.stats.misses) == (2, 4)
    cache.save()
    clear_memory_caches()
    reloaded = FeatureCache("disk", tmp_path)
    assert torch.equal(reloaded.features(network, images), expected)
    assert (reloaded.stats.hits, reloaded.stats.misses) == (4, 0)
