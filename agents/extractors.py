"""Visual encoders for PointNav as one Stable-Baselines3 features extractor.

``NavEncoder`` reads the env's Dict observation after frame stacking (``rgb`` 3n channels, ``depth``
n channels, ``pointgoal_with_gps_compass`` 3n values for n stacked frames) and, optionally, the
frozen base's features computed outside the policy (``base_features``, n x C channels, see
:class:`VecBaseFeatures`). Its ``mode``:

- ``blind``: the goal only (the classic PointNav baseline); no image is read.
- ``scratch``: the base's architecture, randomly initialised and trained.
- ``features``: the pre-trained base, frozen (always in eval mode, no gradients).
- ``finetune``: the pre-trained base, trained.
- ``sidetune``: the frozen base plus a trainable side network, merged by a ``continual_side`` merge
  operator (applied at every position of the feature maps, over channels).

Each frame goes through the visual network on its own (as in the paper, features of 4 frames are
stacked); the per-frame maps (C x 8 x 8), a small depth CNN over the stacked depth and an embedding
of the stacked goal are fused into ``hidden_size + GOAL_EMBEDDING`` features. Images may come
channel-first (SB3's ``VecTransposeImage``) or channel-last; both are read.

The extractor's keyword arguments are names and paths only (``EncoderConfig``), so ``model.save`` /
``PPO.load`` rebuild it from the same files. SB3's ``ortho_init=True`` would re-initialise every
Linear/Conv2d inside the extractor, pre-trained weights included: :func:`nav_policy_kwargs` passes
``ortho_init=False``.

Bases are registered by name (:func:`register_base`); a base builder takes ``weights`` (True: its
default pre-trained weights, False: random initialisation, or a file path) and returns a module with
``features(x)``: (B, 3, H, W) images in [0, 1] -> (B, C, 8, 8) maps, and ``feature_dim = C``. The
mid-level (Taskonomy-style) encoder, the default as the paper's agents use a frozen mid-level
encoder, and the CIFAR ResNets are registered here.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from continual_side.errors import ConfigError
from continual_side.models import FCN4, MERGE_NAMES, FrozenBase, make_merge, resnet20, resnet44
from continual_side.models.midlevel import MidLevelEncoder, midlevel
from continual_side.models.side import SIDE_INITS, make_side
from envs.gym_env import GOAL_KEY

EncoderMode = Literal["blind", "scratch", "features", "finetune", "sidetune"]
ENCODER_MODES: tuple[str, ...] = get_args(EncoderMode)
FROZEN_BASE_MODES = ("features", "sidetune")
BASE_FEATURES_KEY = "base_features"
MAP_SIZE = 8  # every visual map is pooled to MAP_SIZE x MAP_SIZE
GOAL_EMBEDDING = 32
DEPTH_CHANNELS = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> ImageNet-normalised."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class CifarResNetMaps(nn.Module):
    """A CIFAR ResNet's last-stage feature map (64 channels, stride 4), pooled to MAP_SIZE x MAP_SIZE.

    :param network: a CifarResNet (its linear classifier is unused).
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.feature_dim = network.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 64, MAP_SIZE, MAP_SIZE)."""
        network = self.network
        out = network.layer3(network.layer2(network.layer1(network.stem(imagenet_normalise(x)))))
        return F.adaptive_avg_pool2d(out, MAP_SIZE)

    forward = features


class MidLevelMaps(nn.Module):
    """The mid-level encoder's feature map (8 channels, stride 8), pooled to MAP_SIZE x MAP_SIZE.

    :param network: a :class:`~continual_side.models.midlevel.MidLevelEncoder`.
    """

    def __init__(self, network: MidLevelEncoder):
        super().__init__()
        self.network = network
        self.feature_dim = network.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 8, MAP_SIZE, MAP_SIZE)."""
        return F.adaptive_avg_pool2d(self.network.features(imagenet_normalise(x)), MAP_SIZE)

    forward = features


BaseBuilder = Callable[["str | bool"], nn.Module]
BASES: dict[str, BaseBuilder] = {
    "midlevel": lambda weights: MidLevelMaps(midlevel(weights=weights)),
    "resnet20": lambda weights: CifarResNetMaps(resnet20(weights=weights)),
    "resnet44": lambda weights: CifarResNetMaps(resnet44(weights=weights)),
}


def register_base(name: str, builder: BaseBuilder) -> None:
    """Make a base encoder available by name (``--base NAME``).

    :param name: the name configs and saved models refer to.
    :param builder: ``builder(weights)`` with weights True (default pre-trained), False (random) or a
        path; returns a module with ``features(x) -> (B, C, MAP_SIZE, MAP_SIZE)`` and ``feature_dim``.
    """
    BASES[name] = builder


def make_base(name: str, weights: str | bool) -> nn.Module:
    """A registered base network (not frozen).

    :param name: a key of BASES.
    :param weights: True (the base's default weights), False (random init) or a weights file.
    :raises ConfigError: unknown name.
    """
    if name not in BASES:
        raise ConfigError(f"unknown base {name!r}: choose one of {', '.join(BASES)}")
    return BASES[name](weights)


class SideMaps(nn.Module):
    """A side network as a feature-map network, pooled to MAP_SIZE x MAP_SIZE and projected to the
    base's channels when they differ: the mid-level base's FCN5 (distilled from it, as the paper's
    sides), FCN4's convolutions for a CIFAR ResNet base, or a trainable copy of the base.

    :param init: "distilled", "random" or "base_copy" (see ``continual_side.models.side.make_side``).
    :param base_maps: the base's map network (copied for "base_copy"; its feature_dim sets the width).
    """

    def __init__(self, init: str, base_maps: nn.Module):
        super().__init__()
        if init == "base_copy":
            self.network = copy.deepcopy(base_maps).requires_grad_(True)
            self.fcn = None
            width = base_maps.feature_dim
        else:
            self.fcn = make_side(init, base=getattr(base_maps, "network", None))
            width = self.fcn.feature_dim
        self.project = nn.Identity() if width == base_maps.feature_dim else nn.Conv2d(width, base_maps.feature_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C, MAP_SIZE, MAP_SIZE)."""
        if self.fcn is None:
            return self.project(self.network.features(x))
        fcn, x = self.fcn, imagenet_normalise(x)
        out = fcn.conv5(fcn.conv3(fcn.conv2(fcn.conv1(x)))) if isinstance(fcn, FCN4) else fcn(x)
        return self.project(F.adaptive_avg_pool2d(out, MAP_SIZE))


@dataclass
class EncoderConfig:
    """What the policy sees through (names and paths only, so a saved model rebuilds it).

    :param mode: blind, scratch, features, finetune or sidetune.
    :param base: a registered base (BASES); the mid-level encoder once registered.
    :param base_weights: the base's weights file; None for the base's default pre-trained weights
        (``scratch`` always starts from random weights).
    :param side_init: sidetune's side network: distilled, random or base_copy.
    :param merge: sidetune's merge operator (continual_side MERGE_NAMES).
    :param use_depth: read the depth image (a small CNN) besides RGB.
    :param hidden_size: width of the fused visual feature.
    """

    mode: EncoderMode = "sidetune"
    base: str = "midlevel"
    base_weights: str | None = None
    side_init: str = "distilled"
    merge: str = "alpha"
    use_depth: bool = True
    hidden_size: int = 256

    def __post_init__(self):
        if self.mode not in ENCODER_MODES:
            raise ConfigError(f"encoder must be one of {', '.join(ENCODER_MODES)}, got {self.mode!r}")
        if self.base not in BASES:
            raise ConfigError(f"unknown base {self.base!r}: choose one of {', '.join(BASES)}")
        if self.side_init not in SIDE_INITS:
            raise ConfigError(f"unknown side init {self.side_init!r}: choose one of {', '.join(SIDE_INITS)}")
        if self.merge not in MERGE_NAMES:
            raise ConfigError(f"unknown merge {self.merge!r}: choose one of {', '.join(MERGE_NAMES)}")
        if self.hidden_size < 1:
            raise ConfigError(f"hidden_size must be at least 1, got {self.hidden_size}")

    @property
    def weights(self) -> str | bool:
        """The base builder's ``weights`` argument for this mode."""
        if self.mode == "scratch":
            return False
        return self.base_weights if self.base_weights else True


class NavEncoder(BaseFeaturesExtractor):
    """SB3 features extractor for stacked PointNav observations; see the module docstring.

    :param observation_space: the agent env's Dict space (rgb, depth, goal, optionally base_features).
    :param mode: blind, scratch, features, finetune or sidetune.
    :param base: registered base name.
    :param base_weights: base weights file or None (its default weights).
    :param side_init: side network init (sidetune).
    :param merge: merge operator name (sidetune).
    :param use_depth: read depth.
    :param hidden_size: width of the fused visual feature.
    """

    def __init__(self, observation_space: spaces.Dict, mode: EncoderMode = "sidetune", base: str = "midlevel",
                 base_weights: str | None = None, side_init: str = "distilled", merge: str = "alpha",
                 use_depth: bool = True, hidden_size: int = 256):
        config = EncoderConfig(mode, base, base_weights, side_init, merge, use_depth, hidden_size)
        goal_size = int(np.prod(observation_space[GOAL_KEY].shape))
        visual = mode != "blind"
        super().__init__(observation_space, GOAL_EMBEDDING + (hidden_size if visual else 0))
        self.mode = mode
        self.goal_net = nn.Sequential(nn.Linear(goal_size, GOAL_EMBEDDING), nn.ReLU())
        if not visual:
            return
        rgb_space = observation_space["rgb"]
        self.channels_first = is_image_space_channels_first(rgb_space)
        self.n_frames = rgb_space.shape[0 if self.channels_first else -1] // 3
        self.precomputed_base = BASE_FEATURES_KEY in observation_space.spaces
        if self.precomputed_base and mode not in FROZEN_BASE_MODES:
            raise ConfigError(f"mode {mode!r} trains its visual network: it cannot read precomputed {BASE_FEATURES_KEY}")
        # the frozen base lives here unless the env already gives its features
        base_maps = make_base(base, config.weights)
        if mode in ("scratch", "finetune"):
            self.visual = base_maps
        elif not self.precomputed_base:
            self.base = FrozenBase(base_maps)
        if mode == "sidetune":
            self.side = SideMaps(side_init, base_maps)
            self.merge = make_merge(merge, base_maps.feature_dim)
        channels = self.n_frames * base_maps.feature_dim
        self.depth_net = None
        if use_depth:
            self.depth_net = nn.Sequential(
                nn.Conv2d(self.n_frames, DEPTH_CHANNELS, 5, stride=2, padding=2), nn.ReLU(),
                nn.Conv2d(DEPTH_CHANNELS, DEPTH_CHANNELS, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(MAP_SIZE),
            )
            channels += DEPTH_CHANNELS
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * MAP_SIZE * MAP_SIZE, hidden_size), nn.ReLU(),
        )

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.channels_first else x.permute(0, 3, 1, 2)

    def _frame_maps(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-frame visual maps, (B, n_frames * C, MAP_SIZE, MAP_SIZE), oldest frame first."""
        rgb = self._channels_first(observations["rgb"])
        batch, _, height, width = rgb.shape
        frames = rgb.reshape(batch * self.n_frames, 3, height, width)
        if self.mode in ("scratch", "finetune"):
            maps = self.visual.features(frames)
        else:
            if self.precomputed_base:
                base_maps = observations[BASE_FEATURES_KEY].reshape(batch * self.n_frames, -1, MAP_SIZE, MAP_SIZE)
            else:
                base_maps = self.base(frames)
            maps = base_maps
            if self.mode == "sidetune":  # merge over channels at each position
                merged = self.merge(base_maps.permute(0, 2, 3, 1), self.side(frames).permute(0, 2, 3, 1))
                maps = merged.permute(0, 3, 1, 2)
        return maps.reshape(batch, -1, MAP_SIZE, MAP_SIZE)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        goal = self.goal_net(observations[GOAL_KEY].flatten(1))
        if self.mode == "blind":
            return goal
        parts = [self._frame_maps(observations)]
        if self.depth_net is not None:
            parts.append(self.depth_net(self._channels_first(observations["depth"])))
        return torch.cat([self.fuse(torch.cat(parts, dim=1)), goal], dim=1)


def nav_policy_kwargs(encoder: EncoderConfig) -> dict:
    """``policy_kwargs`` for ``PPO("MultiInputPolicy", env, policy_kwargs=...)`` with a NavEncoder.

    ``ortho_init=False`` keeps pre-trained weights loaded in the extractor (SB3 would re-initialise
    them); actor and critic share the extractor (SB3's default).
    """
    return dict(features_extractor_class=NavEncoder, features_extractor_kwargs=asdict(encoder), ortho_init=False)


class VecBaseFeatures(VecEnvWrapper):
    """Adds the frozen base's features of the current RGB frame as the observation key ``base_features``.

    The base runs once per environment step (under no_grad, batched over the envs) instead of once
    per step *and* per PPO epoch inside the policy; stack frames after this wrapper. Expects
    channel-last uint8 RGB of one frame (the env's own observation).

    :param venv: the vectorised PointNav env.
    :param base: registered base name.
    :param base_weights: weights file or None (the base's default weights).
    """

    def __init__(self, venv: VecEnv, base: str, base_weights: str | None):
        self.base = FrozenBase(make_base(base, base_weights or True))
        height, width, _ = venv.observation_space["rgb"].shape
        with torch.no_grad():
            shape = self.base(torch.zeros(1, 3, height, width)).shape[1:]
        space = spaces.Dict({**venv.observation_space.spaces,
                             BASE_FEATURES_KEY: spaces.Box(-np.inf, np.inf, shape=tuple(shape), dtype=np.float32)})
        super().__init__(venv, observation_space=space)

    def base_features(self, rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, C, MAP_SIZE, MAP_SIZE) float32."""
        return frozen_base_features(self.base, rgb)

    def _add(self, observations: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**observations, BASE_FEATURES_KEY: self.base_features(observations["rgb"])}

    def reset(self):
        return self._add(self.venv.reset())

    def step_wait(self):
        observations, rewards, dones, infos = self.venv.step_wait()
        for info in infos:  # SB3 bootstraps truncated episodes from the terminal observation
            if "terminal_observation" in info:
                terminal = info["terminal_observation"]
                info["terminal_observation"] = {**terminal, BASE_FEATURES_KEY: self.base_features(terminal["rgb"][None])[0]}
        return self._add(observations), rewards, dones, infos


def frozen_base_features(base: FrozenBase, rgb: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """A frozen base's maps of channel-last uint8 frames, in batches.

    :param base: the frozen base.
    :param rgb: (N, H, W, 3) uint8.
    :param batch_size: frames per forward pass.
    :returns: (N, C, MAP_SIZE, MAP_SIZE) float32.
    """
    outputs = []
    for start in range(0, len(rgb), batch_size):
        frames = torch.from_numpy(np.ascontiguousarray(rgb[start:start + batch_size])).permute(0, 3, 1, 2)
        outputs.append(base(frames.float().div_(255)).numpy())
    return np.concatenate(outputs).astype(np.float32, copy=False)
