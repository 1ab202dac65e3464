"""The weights hub: registry, resolution order, file:// download with sha256 check."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from continual_side import hub
from continual_side.errors import ChecksumError, ConfigError, WeightsError

R20 = "resnet20-cifar10"
R44 = "resnet44-cifar10"


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """No weights dir, an empty cache under tmp_path; returns the cache folder."""
    monkeypatch.delenv(hub.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv(hub.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _with(monkeypatch, name: str, **changes) -> hub.WeightsSpec:
    spec = dataclasses.replace(hub.WEIGHTS[name], **changes)
    monkeypatch.setitem(hub.WEIGHTS, name, spec)
    return spec


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError, match="unknown weights 'resnet99'") as info:
        hub.resolve_weights("resnet99")
    assert all(name in str(info.value) for name in ("resnet44-cifar10", "resnet20-cifar10", "fcn4-cifar"))


def test_registry_has_full_checksums_and_packaged_files_match_them():
    assert all(len(spec.sha256) == 64 for spec in hub.WEIGHTS.values())
    packaged = sorted(p.name for p in hub.PACKAGED_DIR.iterdir())
    assert packaged == [
        "LICENSE-akamaster", "LICENSE-continual-side", "LICENSE-side-tuning", "fcn4-cifar-side-tuning.pt",
        "fcn5-midlevel.pt", "midlevel-curvature.pt", "resnet44-cifar10-akamaster.th",
        "vit-cifar-distilled-resnet44.pt", "vit-cifar-distilled-resnet44.pt.json",
    ]
    for name in (R44, "fcn4-cifar", "midlevel-curvature", "fcn5-midlevel", "vit-cifar-distilled"):
        spec = hub.WEIGHTS[name]
        assert hub.file_sha256(hub.PACKAGED_DIR / spec.filename) == spec.sha256
        assert (hub.PACKAGED_DIR / spec.licence_file).is_file()


def test_file_url_download_into_cache_is_verified(isolated, monkeypatch, shared_weights):
    spec = _with(monkeypatch, R20, url=(shared_weights / hub.WEIGHTS[R20].filename).as_uri())
    path = hub.resolve_weights(R20, progress=False)
    assert path == isolated / spec.filename
    assert hub.file_sha256(path) == spec.sha256
    assert [p.name for p in isolated.iterdir()] == [spec.filename]  # no temp file left
    assert hub.resolve_weights(R20, download=False) == path  # now found in the cache


def test_wrong_checksum_raises_and_keeps_nothing(isolated, monkeypatch, shared_weights):
    source = shared_weights / hub.WEIGHTS[R20].filename
    _with(monkeypatch, R20, url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(ChecksumError) as info:
        hub.resolve_weights(R20, progress=False)
    message = str(info.value)
    assert "resnet20-cifar10-akamaster.th" in message and "0" * 64 in message
    assert hub.file_sha256(source) in message
    assert list(isolated.iterdir()) == []


def test_unreachable_url_and_no_download_raise_weights_error(isolated, monkeypatch, tmp_path):
    _with(monkeypatch, R20, url=(tmp_path / "absent.th").as_uri())
    with pytest.raises(WeightsError, match="could not download resnet20-cifar10"):
        hub.resolve_weights(R20, progress=False)
    with pytest.raises(WeightsError, match="downloading is off"):
        hub.resolve_weights(R20, download=False)
    with pytest.raises(WeightsError, match="fcn4-cifar has no download URL"):
        hub.download_weights(hub.WEIGHTS["fcn4-cifar"], tmp_path, progress=False)


def test_resolution_order(isolated, monkeypatch, tmp_path, shared_weights):
    filename = hub.WEIGHTS[R44].filename
    env_dir, explicit = tmp_path / "env", tmp_path / "mine.th"
    for target in (env_dir / filename, isolated / filename, explicit):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_weights / filename, target)

    assert hub.resolve_weights(R44) == hub.PACKAGED_DIR / filename  # packaged beats cache
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(env_dir))
    assert hub.resolve_weights(R44) == env_dir / filename  # env dir beats packaged
    assert hub.resolve_weights(R44, explicit) == explicit  # explicit path beats everything
    monkeypatch.delenv(hub.WEIGHTS_DIR_ENV)
    monkeypatch.setattr(hub, "PACKAGED_DIR", tmp_path / "no-assets")
    assert hub.resolve_weights(R44, download=False) == isolated / filename  # then the cache


def test_bad_files_found_by_name_or_path_raise(isolated, monkeypatch, tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / hub.WEIGHTS[R44].filename).write_bytes(b"not weights")
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(env_dir))
    with pytest.raises(ChecksumError, match=f"expected {hub.WEIGHTS[R44].sha256}"):
        hub.resolve_weights(R44)
    monkeypatch.setenv(hub.WEIGHTS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="is not a folder"):
        hub.resolve_weights(R44)
    with pytest.raises(WeightsError, match="missing.th does not exist"):
        hub.resolve_weights(R44, tmp_path / "missing.th")
