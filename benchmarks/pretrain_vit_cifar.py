"""Pre-train the small CIFAR ViT that HST runs on by distilling the shipped ResNet-44 into it.

No published weights exist for :func:`continual_side.models.hst.vit_cifar` (patch 4, 32 px, 8 blocks
of width 192), so this script makes them: the student learns the ResNet-44 teacher's softened outputs
(Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv:1503.02531; temperature ``T``,
loss ``T^2 KL(teacher || student)`` mixed with cross-entropy on the labels by ``label_weight``) on the
CIFAR-10 training JPEGs with random crops (padding 4) and horizontal flips, AdamW and a cosine schedule
with a linear warm-up. At the end it reports the student's and the teacher's test accuracy, writes the
state_dict atomically, its sha256 in ``<out>.sha256`` and a JSON card (command, accuracies, settings,
licence) in ``<out>.json``. Use the file with ``continual-side stream --method hst --hst.vit-weights FILE``.

The weights derive from CIFAR-10 (Krizhevsky 2009) and from the akamaster ResNet-44 (BSD 2-clause,
continual_side/assets/weights/LICENSE-akamaster); ship them with that licence beside them.

The packaged weights (the hub's ``vit-cifar-distilled``; 78 minutes on 2 CPU cores, 65.41% test accuracy
against the teacher's 82.67%)::

    OMP_NUM_THREADS=2 python -m benchmarks.pretrain_vit_cifar --data-root ../shared/data/cifar10-jpeg \\
        --epochs 8 --warmup-epochs 1 --bf16 --max-minutes 88 --out vit-cifar-distilled-resnet44.pt

A longer run, for better weights (7.3 minutes per epoch on 2 idle CPU cores with ``--bf16``; minutes on a
GPU)::

    python -m benchmarks.pretrain_vit_cifar --data-root ../shared/data/cifar10-jpeg --epochs 100 \\
        --device cuda --bf16 --out vit-100.pt   # then --hst.vit-weights vit-100.pt

A one-minute smoke run (checks the pipeline, not the accuracy)::

    OMP_NUM_THREADS=1 python -m benchmarks.pretrain_vit_cifar --data-root ../shared/data/cifar10-jpeg \\
        --images-per-class 64 --test-images-per-class 20 --max-minutes 1 --out /tmp/vit-smoke.pt
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import tyro

from continual_side.atomic import atomic_write_bytes, atomic_write_text
from continual_side.methods.common import check_device
from continual_side.models import resnet44
from continual_side.models.hst import vit_cifar
from continual_side.streams.imagefolder import load_image_folder
from continual_side.streams.transforms import normalise


@dataclass
class PretrainConfig:
    """Distil ResNet-44 into the small CIFAR ViT.

    :param data_root: CIFAR-10 image-folder tree with train/ and test/.
    :param out: where the student's state_dict goes (plus .sha256 and .json beside it).
    :param epochs: passes over the training images.
    :param batch_size: images per step.
    :param lr: AdamW peak learning rate.
    :param weight_decay: AdamW weight decay.
    :param warmup_epochs: epochs of linear learning-rate warm-up.
    :param temperature: distillation temperature T.
    :param label_weight: weight of the label cross-entropy (1 - it: the distillation term).
    :param images_per_class: training images per class (None: all 5,000).
    :param test_images_per_class: test images per class for the reported accuracy (None: all 1,000).
    :param max_minutes: stop training after this many minutes (None: run every epoch).
    :param seed: seed of the student's initialisation and the data order.
    :param device: cpu or cuda.
    :param bf16: run the student's forward under bfloat16 autocast (about 1.5x faster on a CPU with
        AVX512-BF16, more on a GPU); the loss, the weights and the reported accuracy stay float32.
    """

    data_root: str
    out: str = "vit-cifar-distilled-resnet44.pt"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    temperature: float = 4.0
    label_weight: float = 0.1
    images_per_class: int | None = None
    test_images_per_class: int | None = None
    max_minutes: float | None = None
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32 px crops of the 4-pixel zero-padded images, and horizontal flips with probability 1/2."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (4, 4, 4, 4))
    rows = torch.randint(0, 9, (batch,), generator=generator)
    cols = torch.randint(0, 9, (batch,), generator=generator)
    crops = torch.stack([padded[i, :, r : r + height, c : c + width] for i, (r, c) in enumerate(zip(rows, cols))])
    flip = torch.rand(batch, generator=generator) < 0.5
    crops[flip] = crops[flip].flip(-1)
    return crops


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                      label_weight: float) -> torch.Tensor:
    """(1 - w) T^2 KL(softmax(teacher / T) || softmax(student / T)) + w CE(student, labels)."""
    soft = F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature**2
    return (1 - label_weight) * soft + label_weight * F.cross_entropy(student, labels)


@torch.no_grad()
def accuracy(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    network.eval()
    correct = sum(int((network(normalise(images[i : i + 500].to(device))).argmax(1).cpu() == labels[i : i + 500]).sum())
                  for i in range(0, len(images), 500))
    return correct / len(images)


def pretrain(config: PretrainConfig) -> dict:
    """Distil, evaluate and save; returns the card written beside the weights."""
    device = check_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    root = Path(config.data_root)
    train = load_image_folder(root / "train", images_per_class=config.images_per_class, progress=True)
    test = load_image_folder(root / "test", classes=train.class_names, images_per_class=config.test_images_per_class)
    teacher = resnet44(weights=True).to(device).eval()
    student = vit_cifar().to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        (step + 1) / max(1, warmup), 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))))
    start, epochs_done, stopped_early = time.monotonic(), 0, False
    for epoch in range(config.epochs):
        student.train()
        order = torch.randperm(len(train), generator=generator)
        for begin in range(0, len(order), config.batch_size):
            index = order[begin : begin + config.batch_size]
            images = normalise(augment(train.images[index], generator).to(device))
            with torch.no_grad():
                teacher_logits = teacher(images)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                student_logits = student(images)
            loss = distillation_loss(student_logits.float(), teacher_logits, train.targets[index].to(device),
                                     config.temperature, config.label_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
                stopped_early = True
                break
        epochs_done = epoch + 1
        print(f"epoch {epochs_done}: last loss {loss.item():.4f}, {time.monotonic() - start:.0f} s", flush=True)
        if stopped_early:
            break
    card = {
        "command": shlex.join([sys.executable, "-m", "benchmarks.pretrain_vit_cifar", *sys.argv[1:]]),
        "settings": asdict(config),
        "epochs_done": epochs_done,
        "stopped_early": stopped_early,
        "training_minutes": (time.monotonic() - start) / 60,
        "test_images": len(test),
        "student_test_accuracy": accuracy(student, test.images, test.targets, device),
        "teacher_test_accuracy": accuracy(teacher, test.images, test.targets, device),
        "licence": "derived from CIFAR-10 and the akamaster ResNet-44 (BSD 2-clause, see LICENSE-akamaster)",
    }
    buffer = io.BytesIO()
    torch.save({key: value.cpu() for key, value in student.state_dict().items()}, buffer)
    out = Path(config.out)
    atomic_write_bytes(out, buffer.getvalue())
    card["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    atomic_write_text(out.with_name(out.name + ".sha256"), f"{card['sha256']}  {out.name}\n")
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: card[k] for k in ("epochs_done", "student_test_accuracy", "teacher_test_accuracy", "sha256")}))
    return card


if __name__ == "__main__":
    pretrain(tyro.cli(PretrainConfig))
