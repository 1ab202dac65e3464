"""Named pre-trained weights: where they are published, their sha256, their licence, and how to find them.

`resolve_weights(name)` looks, in this order, at: a path the user gives; the folder named by
$CONTINUAL_SIDE_WEIGHTS; the copies packaged in `continual_side/assets/weights/` (so the demo runs
offline); the download cache ($CONTINUAL_SIDE_CACHE, default ~/.cache/continual_side/weights); and
finally downloads the published file into the cache. Every file found by name is checked against
its sha256; a file the user names explicitly is trusted as given.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from continual_side.errors import ChecksumError, ConfigError, WeightsError

WEIGHTS_DIR_ENV = "CONTINUAL_SIDE_WEIGHTS"
CACHE_DIR_ENV = "CONTINUAL_SIDE_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/continual_side/weights")
PACKAGED_DIR = Path(__file__).resolve().parent / "assets" / "weights"
_TIMEOUT_S = 60  # seconds without data before a download gives up

_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models"
_SIDE_TUNING = "https://github.com/jozhang97/side-tuning/raw/master/assets/pytorch/distillation"


@dataclass(frozen=True)
class WeightsSpec:
    """One published weights file.

    :param name: the name users ask for, e.g. "resnet44-cifar10".
    :param filename: the file's name in the weights folder, the packaged assets and the cache.
    :param url: where to download exactly this file (sha256 below), or None where no such URL exists.
    :param sha256: the full sha256 of the file.
    :param licence: the licence's name.
    :param licence_file: the licence text's file name, beside the packaged weights.
    :param source: where the weights come from, for people.
    """

    name: str
    filename: str
    url: str | None
    sha256: str
    licence: str
    licence_file: str
    source: str


WEIGHTS: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            name="resnet44-cifar10",
            filename="resnet44-cifar10-akamaster.th",
            url=f"{_AKAMASTER}/resnet44-014dd654.th",
            sha256="014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
            licence="BSD-2-Clause",
            licence_file="LICENSE-akamaster",
            source="akamaster/pytorch_resnet_cifar10, pretrained_models/resnet44-014dd654.th",
        ),
        WeightsSpec(
            name="resnet20-cifar10",
            filename="resnet20-cifar10-akamaster.th",
            url=f"{_AKAMASTER}/resnet20-12fca82f.th",
            sha256="12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
            licence="BSD-2-Clause",
            licence_file="LICENSE-akamaster",
            source="akamaster/pytorch_resnet_cifar10, pretrained_models/resnet20-12fca82f.th",
        ),
        # The side-tuning repository publishes this network inside a pickled training checkpoint
        # ({'state_dict', 'epoch', 'model', 'optimizer'}, sha256 ebd89aec...), which cannot be read
        # with weights_only=True. Our file is its 'state_dict' alone (tensors identical), so there is
        # no URL that serves exactly it: the packaged copy is the way to get it.
        WeightsSpec(
            name="fcn4-cifar",
            filename="fcn4-cifar-side-tuning.pt",
            url=None,
            sha256="d98256e5709b8b81dfaaaefd412936d1ccb1ca3872fd564bded5f47e84e10597",
            licence="MIT",
            licence_file="LICENSE-side-tuning",
            source=f"the 'state_dict' of jozhang97/side-tuning {_SIDE_TUNING}/fcn4-cifar.pth",
        ),
        # Made by this project on the default mini-Taskonomy (`continual-side taskonomy render`) with the
        # commands in `source`, and published nowhere else: the packaged copies are the way to get them.
        WeightsSpec(
            name="midlevel-curvature",
            filename="midlevel-curvature.pt",
            url=None,
            sha256="9f69f5ac94bb60469692d59982c5c6c811b2dfe59541dd45d3679fc8a3c918ef",
            licence="MIT",
            licence_file="LICENSE-continual-side",
            source="made by continual-side, no published URL: OMP_NUM_THREADS=1 continual-side pretrain --task "
                   "curvature --epochs 20 --weights continual_side/assets/weights/midlevel-curvature.pt",
        ),
        WeightsSpec(
            name="fcn5-midlevel",
            filename="fcn5-midlevel.pt",
            url=None,
            sha256="e1c9a7066c51975403b1e0e502543fe870da42c5f1af645732409602e89f1ea2",
            licence="MIT",
            licence_file="LICENSE-continual-side",
            source="made by continual-side, no published URL: OMP_NUM_THREADS=1 continual-side distill "
                   "--encoder-weights continual_side/assets/weights/midlevel-curvature.pt --epochs 100 "
                   "--weights continual_side/assets/weights/fcn5-midlevel.pt",
        ),
        WeightsSpec(
            name="vit-cifar-distilled",
            filename="vit-cifar-distilled-resnet44.pt",
            url=None,
            sha256="ada5b9f2c45ba3ce883c90841bca86259321b35663cd605dc36d5a6eadc35606",
            licence="BSD-2-Clause",
            licence_file="LICENSE-akamaster",
            source="made by continual-side, no published URL: the akamaster ResNet-44 distilled into "
                   "continual_side.models.hst.vit_cifar() on the CIFAR-10 training images for 8 epochs (65.41% on "
                   "the 10,000 test JPEGs), by OMP_NUM_THREADS=2 python -m benchmarks.pretrain_vit_cifar --data-root "
                   "../shared/data/cifar10-jpeg --epochs 8 --warmup-epochs 1 --bf16 --max-minutes 88 --out "
                   "vit-cifar-distilled-resnet44.pt (card: vit-cifar-distilled-resnet44.pt.json beside the file)",
        ),
    )
}


def get_spec(name: str) -> WeightsSpec:
    """The spec of a named weights file.

    :param name: one of the keys of WEIGHTS.
    :raises ConfigError: for an unknown name.
    """
    if name not in WEIGHTS:
        raise ConfigError(f"unknown weights {name!r}: choose one of {', '.join(WEIGHTS)}")
    return WEIGHTS[name]


def cache_dir() -> Path:
    """The download cache: $CONTINUAL_SIDE_CACHE, else ~/.cache/continual_side/weights."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, spec: WeightsSpec) -> Path:
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {spec.sha256} for {spec.name}: "
            "delete or replace the file"
        )
    return path


def download_weights(spec: WeightsSpec, dest_dir: Path, *, progress: bool = True) -> Path:
    """Download `spec.url` into `dest_dir/spec.filename`, keeping it only if its sha256 matches.

    The bytes go to a temporary file in `dest_dir`, which replaces the target only once verified.

    :param spec: the weights to fetch; any URL urllib opens works, file:// included.
    :param dest_dir: the folder to put the file in (created if needed).
    :param progress: show a tqdm progress bar.
    :raises WeightsError: when the spec has no URL or the download fails.
    :raises ChecksumError: when the downloaded bytes have the wrong sha256 (nothing is kept).
    """
    if spec.url is None:
        raise WeightsError(
            f"{spec.name} has no download URL (source: {spec.source}); reinstall continual-side to get "
            f"the packaged {spec.filename}, or put it in ${WEIGHTS_DIR_ENV}"
        )
    target = dest_dir / spec.filename
    digest = hashlib.sha256()
    part: Path | None = None
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=dest_dir, prefix=f".{spec.filename}.", suffix=".part", delete=False
        ) as tmp:
            part = Path(tmp.name)
            with urllib.request.urlopen(spec.url, timeout=_TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=spec.filename, disable=not progress) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        tmp.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        if digest.hexdigest() != spec.sha256:
            raise ChecksumError(
                f"{spec.url} gave sha256 {digest.hexdigest()}, expected {spec.sha256} for {spec.filename}: "
                f"file discarded; download it by hand into ${WEIGHTS_DIR_ENV}"
            )
        os.replace(part, target)
    except OSError as err:  # urllib's URLError included
        raise WeightsError(
            f"could not download {spec.name} from {spec.url} into {dest_dir} ({err}); "
            f"put {spec.filename} in ${WEIGHTS_DIR_ENV} or pass a path"
        ) from err
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
    return target


def resolve_weights(
    name: str, path: str | Path | None = None, *, download: bool = True, progress: bool = True
) -> Path:
    """The local path of the named weights, downloading them into the cache if needed.

    :param name: one of the keys of WEIGHTS.
    :param path: a file to use instead; it must exist, and its checksum is not checked.
    :param download: allow the last step, downloading into the cache.
    :param progress: show a progress bar while downloading.
    :raises ConfigError: for an unknown name.
    :raises WeightsError: when the file is nowhere to be found.
    :raises ChecksumError: when a file found by name has the wrong sha256.
    """
    spec = get_spec(name)
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist: give the path of a {spec.filename}")
        return path
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        if not Path(weights_dir).is_dir():
            raise WeightsError(
                f"${WEIGHTS_DIR_ENV}={weights_dir} is not a folder: point it at the folder holding {spec.filename}"
            )
        if (Path(weights_dir) / spec.filename).is_file():
            return _verified(Path(weights_dir) / spec.filename, spec)
    for folder in (PACKAGED_DIR, cache_dir()):
        if (folder / spec.filename).is_file():
            return _verified(folder / spec.filename, spec)
    if not download:
        raise WeightsError(
            f"{spec.filename} not found in ${WEIGHTS_DIR_ENV}, {PACKAGED_DIR} or {cache_dir()}, "
            "and downloading is off: allow downloading or pass a path"
        )
    return download_weights(spec, cache_dir(), progress=progress)
