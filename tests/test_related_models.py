"""Models of the related methods: SpotTune, Res-Tuning (and its Bypass), CST and HST.

Small, fast checks of each model's defining property on a random ResNet-20 or small ViT; ViT-B/16 is
built once, for its parameter count and weight loading.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from continual_side import hub
from continual_side.errors import ConfigError, WeightsError
from continual_side.models import resnet20
from continual_side.models.backbones import CifarResNet
from continual_side.models.cst import CalibrationSideTuning, TransitionGate
from continual_side.models.hst import CIFAR_SIDE, HierarchicalSideTuning, vit_b16, vit_cifar
from continual_side.models.restuning import BypassTuner, ResTuning, ResTuningBypass
from continual_side.models.spottune import SpotTune, gumbel_straight_through, gumbel_top_k

B, CLASSES = 6, 4


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _base() -> CifarResNet:
    """A random ResNet-20 (9 blocks) with non-trivial BatchNorm statistics, as a pre-trained base has."""
    base = resnet20()
    for module in base.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return base.eval()


def _images(size: int = 16) -> torch.Tensor:
    return torch.randn(B, 3, size, size)


def _labels() -> torch.Tensor:
    return torch.arange(B) % CLASSES


def _perturb(module: nn.Module, scale: float = 0.05) -> None:
    """Move every parameter away from its initial value, as training would."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


def _train(model: nn.Module, images: torch.Tensor, steps: int = 3) -> None:
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(images), _labels()).backward()
        optimizer.step()


def _assert_training_changes_only_trainable_parts(model: nn.Module, images: torch.Tensor) -> None:
    """requires_grad is set exactly on the declared prefixes; 3 SGD steps change nothing else (buffers too)."""
    prefixes = model.trainable_prefixes
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if name.startswith(prefixes)}
    before = {key: value.clone() for key, value in model.state_dict().items()}
    _train(model, images)
    after = model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed, "training changed nothing"
    assert [key for key in changed if not key.startswith(prefixes)] == []
    assert any(key.startswith("head.") or key.startswith("tuner.head.") for key in changed)


# ---------------------------------------------------------------------------------------------- SpotTune


def test_gumbel_straight_through_is_exactly_one_hot_with_a_soft_gradient():
    logits = torch.randn(500, 2, requires_grad=True)
    sample = gumbel_straight_through(logits, temperature=5.0)
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample.sum(-1), torch.ones(500))
    (sample[:, 1] * torch.randn(500)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    scores = torch.zeros(9, requires_grad=True)
    mask = gumbel_top_k(scores, 3, temperature=5.0)
    assert set(mask.unique().tolist()) == {0.0, 1.0} and mask.sum().item() == 3
    (mask * torch.randn(9)).sum().backward()
    assert scores.grad.abs().sum() > 0


def test_spottune_with_every_decision_zero_is_exactly_the_frozen_base():
    base = _base()
    model = SpotTune(base, base.linear.out_features)
    _perturb(model.finetuned_blocks)  # the copies now differ from the originals
    with torch.no_grad():  # the policy prefers the frozen path (logit 0) by a margin Gumbel noise cannot flip
        model.policy.linear.weight.zero_()
        model.policy.linear.bias.copy_(torch.tensor([50.0, -50.0]).repeat(model.num_blocks))
    model.head.load_state_dict(base.linear.state_dict())
    images = _images()
    for train_mode in (True, False):
        model.train(train_mode)
        assert not model.decisions(images).any()
        assert torch.equal(model.features(images), base.features(images))
        assert torch.equal(model(images), base(images))


def test_spottune_training_decisions_are_exactly_binary_and_the_gradient_reaches_the_policy():
    model = SpotTune(_base(), CLASSES).train()
    images = _images()
    decisions = model.decisions(images)
    assert decisions.shape == (B, model.num_blocks)
    assert set(decisions.unique().tolist()) == {0.0, 1.0}
    F.cross_entropy(model(images), _labels()).backward()
    assert model.policy.linear.weight.grad.abs().sum() > 0


def test_spottune_sample_alone_gives_its_batch_output_and_routing_is_counted():
    model = SpotTune(_base(), CLASSES)
    _perturb(model.finetuned_blocks)
    model.eval()
    images = _images()
    with torch.no_grad():
        decisions = model.decisions(images)
        assert ((decisions > 0).any(0) & (decisions == 0).any(0)).any(), "no block routes the batch both ways"
        model.reset_routing_stats()
        batch_logits = model(images)
        assert torch.equal(model.routed_fraction(), decisions.mean(0))
        for index in range(B):
            alone = images[index : index + 1]
            assert torch.equal(model.decisions(alone)[0], decisions[index])
            torch.testing.assert_close(model(alone)[0], batch_logits[index], rtol=1e-5, atol=1e-6)


def test_spottune_eval_is_deterministic_unless_sampling_is_asked_for():
    images = _images()
    deterministic = SpotTune(_base(), CLASSES).eval()
    assert torch.equal(deterministic.decisions(images), deterministic.decisions(images))
    sampling = SpotTune(_base(), CLASSES, sample_at_eval=True).eval()
    with torch.no_grad():
        sampling.policy.linear.weight.zero_()
        sampling.policy.linear.bias.zero_()  # p = 0.5 per block: 20 draws of 54 decisions always differ
    draws = [sampling.decisions(images) for _ in range(20)]
    assert any(not torch.equal(draws[0], draw) for draw in draws[1:])


def test_spottune_global_variant_fine_tunes_k_blocks_on_a_toy_task():
    k = 3
    model = SpotTune(_base(), 2, global_k=k)
    images = torch.randn(32, 3, 8, 8)
    labels = (images[:, 0].mean((1, 2)) > 0).long()  # toy task: is the red channel bright?
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        assert model.decisions(images).sum(1).tolist() == [k] * 32  # the same k blocks for every image
    assert model.global_scores.abs().sum() > 0  # the choice was learned
    chosen = model.drop_unused_copies()
    assert len(chosen) == k
    assert sorted(int(key) for key in model.finetuned_blocks) == chosen
    model.eval()
    expected = torch.zeros(model.num_blocks)
    expected[chosen] = 1.0
    assert torch.equal(model.decisions(images), expected.expand(32, -1))
    assert model(images).shape == (32, 2)
    copy_parameters = sum(p.numel() for p in model.finetuned_blocks.parameters())
    head_parameters = sum(p.numel() for p in model.head.parameters())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == copy_parameters + head_parameters


def test_spottune_changes_only_its_copies_policy_and_head():
    model = SpotTune(_base(), CLASSES)
    _assert_training_changes_only_trainable_parts(model, _images())
    assert not model.base.network.training
    global_model = SpotTune(_base(), CLASSES, global_k=2)
    _assert_training_changes_only_trainable_parts(global_model, _images())


# -------------------------------------------------------------------------------------------- Res-Tuning


@pytest.mark.parametrize("model_class", [ResTuning, ResTuningBypass])
def test_zero_initialised_tuners_give_exactly_the_base(model_class):
    base = _base()
    model = model_class(base, base.linear.out_features)
    head = model.tuner.head if model_class is ResTuningBypass else model.head
    head.load_state_dict(base.linear.state_dict())
    images = _images()
    for train_mode in (True, False):
        model.train(train_mode)
        assert torch.equal(model.features(images), base.features(images))
        assert torch.equal(model(images), base(images))


def test_bypass_leaves_every_backbone_grad_none_while_in_backbone_tuning_backpropagates_through_it():
    base = _base()
    bypass = ResTuningBypass(base, CLASSES).train()
    F.cross_entropy(bypass(_images()), _labels()).backward()
    assert all(p.grad is None for p in base.parameters())
    assert bypass.tuner.head.weight.grad is not None
    assert all(p.grad is not None for p in bypass.tuner.lateral[-1].parameters())
    in_backbone = ResTuning(base, CLASSES).train()
    F.cross_entropy(in_backbone(_images()), _labels()).backward()
    assert all(p.grad is None for p in base.parameters())
    assert in_backbone.tuners[0].up.weight.grad.abs().sum() > 0  # reached through every frozen block


def test_forward_tasks_runs_the_backbone_once_and_matches_each_task_alone():
    base = _base()
    model = ResTuningBypass(base, CLASSES).eval()
    tuners = [BypassTuner(base, classes) for classes in (2, 3, 5)]
    for tuner in tuners:
        _perturb(tuner)
    calls = []
    base.conv1.register_forward_hook(lambda *_: calls.append(1))
    images = _images()
    with torch.no_grad():
        together = model.forward_tasks(images, tuners)
        assert len(calls) == 1
        for tuner, logits in zip(tuners, together):
            model.tuner = tuner
            assert torch.equal(model(images), logits)
    assert [logits.shape for logits in together] == [(B, 2), (B, 3), (B, 5)]


def _saved_for_backward_bytes(model: nn.Module, images: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one training forward."""
    storages = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(images)
    return sum(storages.values())


@pytest.mark.parametrize(
    ("make", "low", "high"),
    [
        (lambda base: ResTuningBypass(base, CLASSES), 0.0, 0.55),
        (lambda base: ResTuning(base, CLASSES), 1.0, math.inf),
        (lambda base: CalibrationSideTuning(base, CLASSES), 0.0, 0.30),
    ],
    ids=["bypass", "in-backbone", "cst"],
)
def test_activation_memory_relative_to_fine_tuning(make, low, high):
    images = _images(32)
    ratio = _saved_for_backward_bytes(make(_base()), images) / _saved_for_backward_bytes(resnet20(), images)
    assert low <= ratio <= high


@pytest.mark.parametrize("model_class", [ResTuning, ResTuningBypass])
def test_restuning_changes_only_its_tuners_and_head(model_class):
    model = model_class(_base(), CLASSES)
    _assert_training_changes_only_trainable_parts(model, _images())


# ------------------------------------------------------------------------------------------------- CST


def test_transition_gate_by_hand():
    gate = TransitionGate(2)
    backbone = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [2.0, 2.0]]]])
    side = torch.tensor([[[[0.0, 5.0], [3.0, -1.0]], [[1.0, 1.0], [1.0, 4.0]]]])
    assert torch.equal(gate(backbone, side), backbone)  # alpha = 0: exactly the backbone
    with torch.no_grad():
        gate.alpha.copy_(torch.atanh(torch.tensor([0.5, -0.5])))
    # channel 0: max(h, s) - h = [[0, 3], [0, 0]], times 0.5; channel 1: [[2, 1], [0, 2]], times -0.5
    expected = torch.tensor([[[[1.0, 3.5], [3.0, 4.0]], [[-2.0, -0.5], [2.0, 1.0]]]])
    torch.testing.assert_close(gate(backbone, side), expected)


def test_cst_starts_at_the_base_and_the_backbone_gets_no_gradient():
    base = _base()
    model = CalibrationSideTuning(base, CLASSES).train()
    images = _images()
    assert torch.equal(model.features(images), base.features(images))
    F.cross_entropy(model(images), _labels()).backward()
    assert all(p.grad is None for p in base.parameters())
    assert model.gate.alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.side.parameters())


def test_cst_changes_only_its_side_gate_and_head():
    model = CalibrationSideTuning(_base(), CLASSES)
    _assert_training_changes_only_trainable_parts(model, _images())


# ------------------------------------------------------------------------------------------------- HST


@pytest.fixture(scope="module")
def torchvision_vit_b16_file(tmp_path_factory):
    """torchvision's ViT-B/16 state_dict (random weights) in a file, and the state_dict."""
    state = torchvision.models.vit_b_16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("vit") / "vit_b_16.pt"
    torch.save(state, path)
    return path, state


def test_hst_on_vit_b16_trains_the_papers_078m_parameters_and_loads_torchvision_weights(torchvision_vit_b16_file):
    path, state = torchvision_vit_b16_file
    vit = vit_b16(path)
    assert all(torch.equal(vit.state_dict()[key], value) for key, value in state.items())
    model = HierarchicalSideTuning(vit, 100)  # a 100-class task, e.g. VTAB-1k CIFAR-100
    trainable = model.trainable_parameter_count()
    print(f"HST trainable parameters on ViT-B/16, 100 classes: {trainable:,}")
    assert abs(trainable - 0.78e6) <= 0.02 * 0.78e6
    assert not any(p.requires_grad for p in vit.parameters())
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 100)


def test_vit_b16_with_a_wrong_state_dict_says_what_to_save_in_one_line(tmp_path):
    wrong = tmp_path / "small_vit.pt"
    torch.save(vit_cifar().state_dict(), wrong)
    with pytest.raises(WeightsError) as error:
        vit_b16(wrong)
    message = str(error.value)
    assert "\n" not in message
    assert "conv_proj.weight (192, 3, 4, 4) vs (768, 3, 16, 16)" in message
    assert "torch.save(torchvision.models.vit_b_16(" in message  # the fix


def _small_hst() -> HierarchicalSideTuning:
    return HierarchicalSideTuning(vit_cifar(), CLASSES, CIFAR_SIDE)


def test_hst_meta_token_of_block_l_changes_block_l_and_later_but_not_earlier():
    model = _small_hst().eval()
    images = _images(32)
    layer = 3
    with torch.no_grad():
        before = model.block_outputs(images)
        logits = model(images)
        model.meta_tokens[layer] += 1.0
        after = model.block_outputs(images)
        assert not torch.equal(model(images), logits)
    assert all(torch.equal(before[i], after[i]) for i in range(layer))
    assert all(not torch.equal(before[i], after[i]) for i in range(layer, len(after)))
    assert after[0].shape == (B, 2 + 64, 192)


def test_hst_leaves_the_vit_bit_identical_and_trains_only_its_own_parts():
    model = _small_hst()
    vit_before = {key: value.clone() for key, value in model.vit.state_dict().items()}
    _assert_training_changes_only_trainable_parts(model, _images(32))
    assert all(torch.equal(model.vit.state_dict()[key], value) for key, value in vit_before.items())
    assert not model.vit.training
    assert not torch.equal(model.block_norms[0][0].weight, model.vit.encoder.layers[0].ln_1.weight)


def test_hst_needs_blocks_that_split_over_four_stages():
    odd_vit = torchvision.models.VisionTransformer(32, 4, 6, 2, 32, 64)
    with pytest.raises(ConfigError, match="split evenly"):
        HierarchicalSideTuning(odd_vit, CLASSES, CIFAR_SIDE)


def test_vit_pretraining_script_writes_weights_that_load_with_their_sha256_and_card(cifar10_jpeg, tmp_path):
    from benchmarks.pretrain_vit_cifar import PretrainConfig, pretrain

    out = tmp_path / "vit.pt"
    card = pretrain(PretrainConfig(data_root=str(cifar10_jpeg), out=str(out), epochs=1, batch_size=20,
                                   images_per_class=2, test_images_per_class=1, bf16=True))
    assert card["epochs_done"] == 1 and card["test_images"] == 10 and 0 <= card["student_test_accuracy"] <= 1
    assert card["sha256"] == hub.file_sha256(out)
    assert (tmp_path / "vit.pt.sha256").read_text().split() == [card["sha256"], "vit.pt"]
    assert json.loads((tmp_path / "vit.pt.json").read_text())["sha256"] == card["sha256"]
    assert vit_cifar(out).conv_proj.weight.dtype == torch.float32  # loads strictly into the architecture
