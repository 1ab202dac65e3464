"""The frozen-base feature cache: same results as without it, hits when it should, misses when weights,
pixels or transform change, warm starts from disk, and corrupt files rebuilt with a warning."""

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin

from continual_side.errors import ConfigError
from continual_side.methods import TrainConfig, build_strategy
from continual_side.models.backbones import resnet20
from continual_side.models.feature_cache import FeatureCache, clear_memory_caches
from continual_side.models.sidetuned import FrozenBase
from continual_side.streams import make_stream
from continual_side.streams.split_cifar10 import SplitCifar10Options
from continual_side.streams.transforms import normalise

TRAIN_PER_CLASS, TEST_PER_CLASS = 24, 10


@pytest.fixture(scope="module")
def bench(cifar10_jpeg):
    return make_stream("split_cifar10", SplitCifar10Options(
        data_root=str(cifar10_jpeg), n_tasks=2, classes_per_task=2, images_per_class=TRAIN_PER_CLASS,
        test_images_per_class=TEST_PER_CLASS))


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_memory_caches()
    yield
    clear_memory_caches()


class EpochStats(SupervisedPlugin):
    """(hits, misses, base_calls) of the model's feature cache after every training epoch."""

    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def after_training_epoch(self, strategy, **kwargs):
        stats = strategy.model.base.cache.stats
        self.per_epoch.append((stats.hits, stats.misses, stats.base_calls))


def run_stream(bench, config, plugins=()):
    """Side-tuning over the stream as the runner does it; returns the accuracy matrix and the strategy."""
    torch.manual_seed(0)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True))
    strategy = build_strategy("sidetune", None, config, plugins=list(plugins), evaluator=evaluator)
    n = len(bench.train_stream)
    acc = np.zeros((n, n))
    for i, experience in enumerate(bench.train_stream):
        torch.manual_seed(100 + i)  # same batches with and without the cache
        strategy.train(experience, **config.loader_options())
        metrics = strategy.eval(bench.test_stream, **config.loader_options())
        for j in range(n):
            acc[i, j] = metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task{j:03d}/Exp{j:03d}"]
    return acc, strategy


def config(**kwargs):
    return TrainConfig(**{"base": "resnet20", "epochs": 2, "batch_size": 16, "eval_batch_size": 32, **kwargs})


def test_cache_gives_the_same_accuracy_matrix_and_computes_each_image_once(bench):
    acc_off, strategy_off = run_stream(bench, config(feature_cache="off"))
    assert strategy_off.model.base.cache is None
    stats = EpochStats()
    acc_on, strategy_on = run_stream(bench, config(feature_cache="memory"), [stats])

    np.testing.assert_allclose(acc_on, acc_off, rtol=0, atol=1e-6)
    assert np.diag(acc_on).mean() > 0.5  # 2-way tasks: it learned something
    n_train = 2 * TRAIN_PER_CLASS
    # task 0: epoch 1 computes every training image, epoch 2 only hits (no base forward at all)
    assert stats.per_epoch[0] == (0, n_train, n_train // 16)
    hits, misses, calls = stats.per_epoch[1]
    assert (hits, misses) == (n_train, n_train) and calls == n_train // 16
    # over the whole run every distinct image went through the base exactly once
    assert strategy_on.model.base.cache.stats.misses == 2 * n_train + 2 * 2 * TEST_PER_CLASS


@pytest.fixture(scope="module")
def images(bench):
    """8 decoded uint8 test images of task 0 (both classes)."""
    return bench.task_images[0][1].images[TEST_PER_CLASS - 4 : TEST_PER_CLASS + 4]


@pytest.fixture
def network():
    return FrozenBase(resnet20(weights=True)).network


def reference(network, x):
    with torch.no_grad():
        return network.features(x)


def test_hits_serve_exactly_the_computed_features_in_any_order(network, images):
    x = normalise(images)
    cache = FeatureCache("memory")
    assert torch.equal(cache.features(network, x), reference(network, x))
    perm = torch.tensor([3, 0, 7, 1])
    out = cache.features(network, x[perm])
    assert (cache.stats.hits, cache.stats.misses, cache.stats.base_calls) == (4, 8, 1)
    assert torch.equal(out, reference(network, x)[perm])
    # another cache object in the same process shares the store: another method or seed starts warm
    other = FeatureCache("memory")
    other.features(network, x)
    assert (other.stats.hits, other.stats.base_calls) == (8, 0)


def test_changed_weights_pixels_or_transform_miss(network, images):
    x = normalise(images)
    cache = FeatureCache("memory")
    cache.features(network, x)

    changed = x.clone()
    changed[2, :, :8, :8] = 0.0
    out = cache.features(network, changed)
    assert (cache.stats.hits, cache.stats.misses) == (7, 9)
    # computed alone rather than in a batch of 8: equal up to the rounding of batched convolutions
    torch.testing.assert_close(out, reference(network, changed), rtol=0, atol=1e-5)
    assert (out[2] - reference(network, x)[2]).abs().max() > 1e-2

    other_transform = (images.float() / 255 - 0.5) / 0.5
    cache.features(network, other_transform)
    assert cache.stats.misses == 9 + 8

    with torch.no_grad():
        network.layer1[0].conv1.weight.mul_(1.01)  # in place: same tensor objects, new version counter
    out = cache.features(network, x)
    assert cache.stats.misses == 17 + 8
    assert torch.equal(out, reference(network, x))

    network.load_state_dict(resnet20().state_dict())  # other weights loaded into the same network
    cache.features(network, x)
    assert cache.stats.misses == 25 + 8


def test_features_cached_during_inference_mode_train_later(network, images):
    x = normalise(images)
    cache = FeatureCache("memory")
    with torch.inference_mode():
        cache.features(network, x)
    head = torch.nn.Linear(64, 2)
    loss = head(cache.features(network, x)).sum()
    loss.backward()  # inference tensors in the graph would raise here
    assert cache.stats.hits == 8 and head.weight.grad.abs().sum() > 0


def test_disk_cache_starts_warm_and_only_for_the_same_weights(network, images, tmp_path):
    x = normalise(images)
    first = FeatureCache("disk", tmp_path)
    expected = first.features(network, x)
    first.save()
    [path] = tmp_path.glob("*.pt")
    clear_memory_caches()  # a new process

    warm = FeatureCache("disk", tmp_path)
    assert torch.equal(warm.features(network, x), expected)
    assert (warm.stats.hits, warm.stats.base_calls) == (8, 0)

    with torch.no_grad():
        network.conv1.weight.add_(0.01)
    cold = FeatureCache("disk", tmp_path)
    assert torch.equal(cold.features(network, x), reference(network, x))
    assert (cold.stats.hits, cold.stats.misses) == (0, 8)
    cold.save()
    assert len(list(tmp_path.glob("*.pt"))) == 2 and path.exists()


def test_second_run_with_disk_cache_runs_no_base_forward(bench, tmp_path):
    acc_first, _ = run_stream(bench, config(feature_cache="disk", cache_dir=str(tmp_path), epochs=1))
    clear_memory_caches()
    acc_second, strategy = run_stream(bench, config(feature_cache="disk", cache_dir=str(tmp_path), epochs=1))
    stats = strategy.model.base.cache.stats
    assert stats.base_calls == 0 and stats.misses == 0 and stats.hits > 0
    np.testing.assert_array_equal(acc_second, acc_first)


@pytest.mark.parametrize("damage", ["garbage", "tampered"])
def test_corrupt_disk_cache_is_rebuilt_with_a_warning(network, images, tmp_path, damage):
    x = normalise(images)
    cache = FeatureCache("disk", tmp_path)
    cache.features(network, x)
    cache.save()
    [path] = tmp_path.glob("*.pt")
    if damage == "garbage":
        path.write_bytes(b"not a feature cache")
    else:
        payload = torch.load(path, weights_only=True)
        payload["features"] += 1.0  # plausible but wrong features, old checksum
        torch.save(payload, path)
    clear_memory_caches()

    rebuilt = FeatureCache("disk", tmp_path)
    with pytest.warns(UserWarning, match="corrupt feature cache"):
        out = rebuilt.features(network, x)
    assert torch.equal(out, reference(network, x)) and rebuilt.stats.hits == 0
    rebuilt.save()
    clear_memory_caches()
    again = FeatureCache("disk", tmp_path)
    assert torch.equal(again.features(network, x), out) and again.stats.base_calls == 0


@pytest.mark.parametrize("method", ["sidetune", "features", "pnn"])
def test_every_frozen_base_method_gets_the_cache(method):
    strategy = build_strategy(method, None, TrainConfig(base="resnet20", feature_cache="memory"))
    bases = [m for m in strategy.model.modules() if isinstance(m, FrozenBase)]
    assert bases and all(isinstance(b.cache, FeatureCache) for b in bases)
    finetune = build_strategy("finetune", None, TrainConfig(base="resnet20"))
    assert not any(isinstance(m, FrozenBase) for m in finetune.model.modules())


def test_bad_cache_and_loader_options_are_config_errors():
    with pytest.raises(ConfigError, match="feature_cache='ram'"):
        build_strategy("sidetune", None, TrainConfig(base="resnet20", feature_cache="ram"))
    with pytest.raises(ConfigError, match="num_workers=-1"):
        TrainConfig(num_workers=-1).check()
