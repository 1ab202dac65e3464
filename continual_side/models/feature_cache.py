"""Cache of a frozen network's features, keyed by the weights and by each input's bytes.

A frozen base in eval mode is a fixed function of (weights, input), so its feature of an input can be
computed once and reused for every epoch, method and seed. The cache is content-addressed: each input
row is keyed by a blake2b digest of its bytes (the normalised pixels, so the data and the transform
are part of the key), inside a store that belongs to one weights identity (sha256 of the state_dict),
one device type and one input shape/dtype. Changing weights, pixels or transform can only miss. A feature
row may have any shape: a pooled vector (D,) or a feature map (C, H, W); within a store it is fixed,
since the input shape is.

Stores live in a process-wide registry (every method and seed in one process shares them); in
``disk`` mode each store is also a file ``<cache_dir>/<store id>.pt`` so a later run starts warm.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from continual_side.atomic import atomic_open
from continual_side.errors import ConfigError

CacheMode = Literal["off", "memory", "disk"]
CACHE_MODES = ("off", "memory", "disk")
FORMAT = 1
DIGEST_BYTES = 16
DEFAULT_MAX_BYTES = 2 << 30  # per store: far above any benchmark here, bounds augmented (never-repeating) inputs


def default_cache_dir() -> Path:
    """$CONTINUAL_SIDE_FEATURE_CACHE, else ~/.cache/continual_side/features."""
    return Path(os.environ.get("CONTINUAL_SIDE_FEATURE_CACHE") or "~/.cache/continual_side/features").expanduser()


def weights_identity(network: nn.Module) -> str:
    """Hex sha256 of the network's class and every state_dict entry (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(f"{type(network).__module__}.{type(network).__qualname__}".encode())
    for name, tensor in network.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def row_digests(x: torch.Tensor) -> list[bytes]:
    """blake2b digest (16 bytes) of each row's bytes."""
    rows = x.detach().cpu().contiguous().reshape(len(x), -1).view(torch.uint8).numpy()
    return [hashlib.blake2b(row, digest_size=DIGEST_BYTES).digest() for row in rows]


class FeatureStore:
    """Features of one (weights, device type, input shape) combination: digest -> row of ``features``.

    :param store_id: hex id of that combination; also the file name in disk mode.
    :param path: the store's file, or None for memory only.
    :param max_bytes: stop adding rows (with one warning) once the features would exceed this.
    """

    def __init__(self, store_id: str, path: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.store_id = store_id
        self.path = path
        self.max_bytes = max_bytes
        self.index: dict[bytes, int] = {}
        self.features: torch.Tensor | None = None  # (capacity, *feature shape); rows [0, len) are filled
        self.dirty = False
        self._full_warned = False

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, digests: list[bytes]) -> list[int]:
        """Row of each digest, -1 for a miss."""
        return [self.index.get(d, -1) for d in digests]

    def add(self, digests: list[bytes], features: torch.Tensor) -> None:
        """Store ``features[i]`` under ``digests[i]`` (digests already stored are skipped)."""
        with torch.inference_mode(False):  # a normal tensor: cached features must be usable in autograd later
            new = {d: i for i, d in enumerate(digests) if d not in self.index}
            if not new:
                return
            n, row_shape = len(self.index), features.shape[1:]
            if (n + len(new)) * row_shape.numel() * features.element_size() > self.max_bytes:
                if not self._full_warned:
                    warnings.warn(f"feature cache {self.store_id[:12]} is full ({self.max_bytes} bytes); "
                                  "new inputs are computed but not cached (are the inputs augmented?)")
                    self._full_warned = True
                return
            if self.features is None or n + len(new) > len(self.features):
                capacity = max(2 * (n + len(new)), 1024)
                grown = torch.empty((capacity, *row_shape), dtype=features.dtype, device=features.device)
                if self.features is not None:
                    grown[:n] = self.features[:n]
                self.features = grown
            self.features[n : n + len(new)] = features[list(new.values())].clone()
            self.index.update((d, n + k) for k, d in enumerate(new))
            self.dirty = True

    def gather(self, rows: list[int]) -> torch.Tensor:
        return self.features[torch.tensor(rows, device=self.features.device)]

    def save(self) -> None:
        """Write the store to ``path`` atomically (temp file + os.replace) if it changed."""
        if self.path is None or not self.dirty:
            return
        keys = torch.frombuffer(bytearray(b"".join(self.index)), dtype=torch.uint8).reshape(-1, DIGEST_BYTES)
        features = self.features[: len(self.index)].cpu()
        payload = {"format": FORMAT, "store_id": self.store_id, "keys": keys, "features": features,
                   "checksum": _checksum(keys, features)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path) as handle:
            torch.save(payload, handle)
        self.dirty = False

    def load(self, device: torch.device) -> None:
        """Fill the store from ``path`` if it exists; a file that fails any check is rebuilt with a warning."""
        if self.path is None or not self.path.exists():
            return
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            keys, features = _checked(payload, self.store_id)
        except Exception as error:  # noqa: BLE001 - any unreadable file is rebuilt, never trusted
            warnings.warn(f"{self.path}: corrupt feature cache ({error}); ignoring it and rebuilding it")
            self.dirty = True
            return
        self.index = {bytes(k): i for i, k in enumerate(keys.numpy())}
        self.features = features.to(device)


def _checksum(keys: torch.Tensor, features: torch.Tensor) -> str:
    digest = hashlib.blake2b(keys.numpy().tobytes())
    digest.update(features.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checked(payload: object, store_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, features) of a loaded file, after checking its format, identity, shapes and checksum."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} feature cache")
    if payload.get("store_id") != store_id:
        raise ValueError(f"it belongs to store {str(payload.get('store_id'))[:12]}, not {store_id[:12]}")
    keys, features = payload.get("keys"), payload.get("features")
    if not (isinstance(keys, torch.Tensor) and isinstance(features, torch.Tensor)
            and keys.dtype == torch.uint8 and keys.dim() == 2 and keys.shape[1] == DIGEST_BYTES
            and features.dim() >= 2 and len(features) == len(keys)):
        raise ValueError("keys/features have the wrong shapes")
    if payload.get("checksum") != _checksum(keys, features):
        raise ValueError("checksum mismatch")
    return keys, features


_STORES: dict[tuple[str, Path | None], FeatureStore] = {}


def clear_memory_caches() -> None:
    """Forget every in-memory store of this process (disk files stay)."""
    _STORES.clear()


@dataclass
class CacheStats:
    """Counts since the cache was made: rows served from the cache, rows computed, base forward calls."""

    hits: int = 0
    misses: int = 0
    base_calls: int = 0


class FeatureCache:
    """Serves ``network.features(x)`` from the registry's stores, running the network on misses only.

    The weights identity is recomputed whenever a parameter or buffer of the network is replaced or
    modified in place (tensor object, storage pointer or version counter changed), so new weights
    can never be served old features.

    :param mode: ``memory`` (process-wide registry) or ``disk`` (registry plus one file per store).
    :param cache_dir: folder of the disk files; None: :func:`default_cache_dir`.
    :param max_bytes: size limit of each store's features.
    """

    def __init__(self, mode: CacheMode = "memory", cache_dir: str | Path | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if mode not in ("memory", "disk"):
            raise ConfigError(f"feature cache mode {mode!r}; use memory or disk (off: no FeatureCache)")
        self.mode = mode
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._signature: list[tuple[torch.Tensor, int, int]] = []
        self._identity = ""
        self._stores: list[FeatureStore] = []

    def __deepcopy__(self, memo: dict) -> FeatureCache:
        """A copy of a model (LwF, checkpoints) shares the registry's stores instead of duplicating them."""
        return FeatureCache(self.mode, self.cache_dir, self.max_bytes)

    def _weights_identity(self, network: nn.Module) -> str:
        tensors = [*network.parameters(), *network.buffers()]
        unchanged = len(tensors) == len(self._signature) and all(
            t is s and t.data_ptr() == p and t._version == v for t, (s, p, v) in zip(tensors, self._signature)
        )
        if not unchanged:
            self._identity = weights_identity(network)
            self._signature = [(t, t.data_ptr(), t._version) for t in tensors]
        return self._identity

    def store(self, network: nn.Module, x: torch.Tensor) -> FeatureStore:
        """The store for this network's current weights, ``x``'s device type and row shape/dtype."""
        key = f"{FORMAT}|{self._weights_identity(network)}|{x.device.type}|{tuple(x.shape[1:])}|{x.dtype}"
        store_id = hashlib.sha256(key.encode()).hexdigest()
        path = self.cache_dir / f"{store_id}.pt" if self.mode == "disk" else None
        if (store_id, path) not in _STORES:
            store = FeatureStore(store_id, path, self.max_bytes)
            store.load(x.device)
            _STORES[store_id, path] = store
        store = _STORES[store_id, path]
        if store not in self._stores:
            self._stores.append(store)
        return store

    def features(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``network.features(x)`` under no_grad, computed only for rows not cached yet (one batch)."""
        store = self.store(network, x)
        digests = row_digests(x)
        rows = store.rows(digests)
        missing = [i for i, r in enumerate(rows) if r < 0]
        self.stats.hits += len(rows) - len(missing)
        self.stats.misses += len(missing)
        if not missing:
            return store.gather(rows)
        with torch.no_grad():
            computed = network.features(x[missing] if len(missing) < len(x) else x)
        self.stats.base_calls += 1
        store.add([digests[i] for i in missing], computed)
        if len(missing) == len(x):
            return computed
        hit = [i for i, r in enumerate(rows) if r >= 0]
        out = torch.empty((len(x), *computed.shape[1:]), dtype=computed.dtype, device=computed.device)
        out[missing] = computed
        out[hit] = store.gather([rows[i] for i in hit])
        return out

    def save(self) -> None:
        """Write every disk store this cache has used and that changed since it was read."""
        for store in self._stores:
            store.save()
