"""Hierarchical Side-Tuning (HST) on a torchvision Vision Transformer.

Lin, Wu, Yang, Huang, Jin, "Hierarchical Side-Tuning for Vision Transformers", arXiv:2310.05393;
official code github.com/AFeng-x/HST (``models/vit_hsn.py``, ``models/vit_custom_modules.py``), whose
structure this module follows:

* A learnable meta token m_i per ViT block, prepended before the cls token (no position embedding) and
  dropped after the block; the block's output at m_i is g_i, its patch tokens F_i (cls excluded).
* A hierarchical side network reading the raw image: 4 stages of widths (32, 48, 64, 72), heads
  (2, 4, 8, 12), MLP ratio 4; stage 1 embeds with conv3x3 s2 (no bias)-BN-ReLU-conv2x2 s2-LN, stages 2-4
  with an overlapping conv3x3 s2 + LN. The ViT's blocks are split evenly over the stages (3 each for
  12 blocks), one side block per ViT block.
* A Transformation Bridge per stage, a linear map D -> d_s shared by the meta tokens and the patch
  features of its stage; meta outputs get a LayerNorm per ViT block.
* Side block: x += CrossAttention(LN(x), [LN_i(T_s g_i), mean(v_i)]); x += v_i; x += MLP(LN(x)), with
  v_i = the bridged patch features resized bilinearly to the stage's grid. LayerNorm after each stage.
* Prediction from the side network only: mean of the stage-4 tokens -> BatchNorm1d(affine=False) ->
  Linear. Trainable: the side network, bridges, meta tokens and norms, the head, and the LayerNorms
  inside every ViT block; everything else in the ViT is frozen.

Our choices where the code and this suite differ:

* The trainable block LayerNorms are per-task copies held by this module (``block_norms``), started
  from the ViT's own; the ViT itself is never modified, so several tasks can share one ViT. The block
  computation is torchvision's ``EncoderBlock.forward`` with those copies in place of ``ln_1``/``ln_2``.
* Bridged patch features are projected before they are resized (the code resizes first); bilinear
  interpolation weights sum to one, so both orders give the same values up to rounding, and ours
  resizes d_s channels instead of D.
* Meta tokens are one (L, D) tensor, Xavier-uniform initialised as a whole. Resizing is bilinear with
  align_corners=False and attention scales by head_dim^-1/2; the code's settings for these were not
  recorded.
* Gradients flow through the frozen ViT to the meta tokens and block norms (as in the code): HST is not
  a backprop-free side network.
* :data:`CIFAR_SIDE` uses a stride-1 stem so that the side's stage 3 matches a 32 px, patch-4 ViT's 8x8
  grid as stage 3 matches ViT-B/16's 14x14 grid at 224 px.

On ViT-B/16 one task trains 772,140 parameters with 100 classes (765,570 with 10); the paper reports
0.78M. :func:`vit_b16` loads torchvision's ViT-B/16 state_dict layout only (timm's key names differ).

:func:`vit_cifar` is a small ViT (patch 4, 32 px) for CPU runs. No published weights exist for it:
``benchmarks/pretrain_vit_cifar.py`` makes them by distilling the shipped ResNet-44 into it on the
CIFAR-10 training JPEGs, and the suite packages the result as the hub's ``vit-cifar-distilled``
(``vit_cifar(True)``; 8 epochs on a CPU, 65.41% on the CIFAR-10 test JPEGs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

from continual_side.errors import ConfigError
from continual_side.hub import resolve_weights
from continual_side.models.checkpoint import load_weights_file

SIDE_STAGES = 4


@dataclass(frozen=True)
class SideNetworkConfig:
    """The hierarchical side network's shape.

    :param widths: token width of each stage.
    :param heads: cross-attention heads of each stage.
    :param mlp_ratio: hidden width of a side block's MLP, as a multiple of its width.
    :param stem_stride: stride of each of the two stem convs (2: the side's stage 1 is a quarter of
        the image, as in the official code at 224 px).
    """

    widths: tuple[int, ...] = (32, 48, 64, 72)
    heads: tuple[int, ...] = (2, 4, 8, 12)
    mlp_ratio: int = 4
    stem_stride: int = 2


VIT_B16_SIDE = SideNetworkConfig()
CIFAR_SIDE = SideNetworkConfig(stem_stride=1)


def _vision_transformer(weights: str | Path | None, expected: str, **config: int) -> VisionTransformer:
    """A torchvision ViT with random weights, or with a file's (then built without the costly random init).

    :param weights: None, or a state_dict file that must fit exactly.
    :param expected: what file would fit, for the error message.
    :param config: VisionTransformer's arguments.
    """
    if weights is None:
        return VisionTransformer(**config)
    with torch.device("meta"):
        vit = VisionTransformer(**config)
    vit = vit.to_empty(device="cpu")  # the strict load fills every tensor
    load_weights_file(vit, Path(weights), expected)
    return vit


def vit_b16(weights: str | Path | None = None) -> VisionTransformer:
    """torchvision's ViT-B/16 (224 px, 12 blocks of width 768), random or from a state_dict file.

    :param weights: None for random weights, or a file holding ``torchvision.models.vit_b_16().state_dict()``.
    :raises WeightsError: when the file cannot be read or does not fit ViT-B/16 exactly.
    """
    fix = (
        "a torchvision ViT-B/16 state_dict, e.g. "
        "torch.save(torchvision.models.vit_b_16(weights='IMAGENET1K_V1').state_dict(), path)"
    )
    return _vision_transformer(
        weights, fix, image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072
    )


def vit_cifar(weights: str | Path | bool | None = None) -> VisionTransformer:
    """A small ViT for 32 px images and CPU runs: patch 4, 8 blocks of width 192, 3 heads, 10 classes.

    :param weights: None/False for random weights, True for the hub's vit-cifar-distilled (the ViT this
        suite distilled from the ResNet-44 on CIFAR-10, packaged), or a state_dict file of this architecture.
    :raises WeightsError: when the file cannot be read or does not fit.
    """
    if weights is True:
        weights = resolve_weights("vit-cifar-distilled")
    return _vision_transformer(
        weights or None,
        "a state_dict of continual_side.models.hst.vit_cifar()",
        image_size=32, patch_size=4, num_layers=8, num_heads=3, hidden_dim=192, mlp_dim=768, num_classes=10,
    )


class CrossAttention(nn.Module):
    """Multi-head attention of the side tokens (queries) to a few context tokens (keys and values).

    :param dim: token width.
    :param heads: number of heads; must divide dim.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        return tokens.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) attended over context (B, M, dim)."""
        attended = F.scaled_dot_product_attention(
            self._split(self.query(tokens)), self._split(self.key(context)), self._split(self.value(context))
        )
        return self.proj(attended.transpose(1, 2).flatten(2))


class SideBlock(nn.Module):
    """x += CrossAttn(LN(x), context); x += bridged; x += MLP(LN(x)).

    :param dim: token width.
    :param heads: cross-attention heads.
    :param mlp_ratio: MLP hidden width as a multiple of dim.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, bridged: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) side tokens, updated from the (B, 2, dim) context and (B, N, dim) bridged features."""
        tokens = tokens + self.attention(self.norm1(tokens), context) + bridged
        return tokens + self.mlp(self.norm2(tokens))


class PatchEmbed(nn.Module):
    """A conv that shrinks the map, then its pixels as LayerNorm-ed tokens.

    :param conv: maps (B, C, H, W) to (B, dim, H', W').
    :param dim: the conv's output channels.
    """

    def __init__(self, conv: nn.Module, dim: int):
        super().__init__()
        self.conv = conv
        self.norm = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The (B, H'W', dim) tokens and the grid (H', W')."""
        embedded = self.conv(image)
        return self.norm(embedded.flatten(2).transpose(1, 2)), (embedded.shape[2], embedded.shape[3])


def _side_embeds(config: SideNetworkConfig) -> nn.ModuleList:
    stride, first = config.stem_stride, config.widths[0]
    stem = nn.Sequential(
        nn.Conv2d(3, first, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.Conv2d(first, first, stride, stride=stride),
    )
    later = (
        PatchEmbed(nn.Conv2d(previous, width, 3, stride=2, padding=1), width)
        for previous, width in zip(config.widths, config.widths[1:])
    )
    return nn.ModuleList([PatchEmbed(stem, first), *later])


def _encoder_block(
    block: EncoderBlock, norm1: nn.LayerNorm, norm2: nn.LayerNorm, tokens: torch.Tensor
) -> torch.Tensor:
    """torchvision's EncoderBlock.forward with the given LayerNorms in place of the block's own."""
    normed = norm1(tokens)
    attended, _ = block.self_attention(normed, normed, normed, need_weights=False)
    tokens = block.dropout(attended) + tokens
    return tokens + block.mlp(norm2(tokens))


class HierarchicalSideTuning(nn.Module):
    """HST on a frozen torchvision ViT: logits from a hierarchical side network fed by meta tokens.

    Trainable (:attr:`trainable_prefixes`): ``meta_tokens``, ``block_norms`` (per-task copies of the
    ViT blocks' LayerNorms), ``bridges``, ``meta_norms``, ``embeds``, ``stages``, ``stage_norms``,
    ``head``. The ViT is frozen, shared and always in eval mode.

    :param vit: the pre-trained ViT; frozen in place and shared, never copied. Its block count must
        divide by 4.
    :param n_classes: classes of the task's head.
    :param side: the side network's shape.
    :raises ConfigError: when the ViT's blocks do not split evenly over the 4 side stages, or a stage's
        heads do not divide its width.
    """

    trainable_prefixes = (
        "meta_tokens", "block_norms.", "bridges.", "meta_norms.", "embeds.", "stages.", "stage_norms.", "head.",
    )

    def __init__(self, vit: VisionTransformer, n_classes: int, side: SideNetworkConfig = VIT_B16_SIDE):
        super().__init__()
        blocks = list(vit.encoder.layers)
        if len(blocks) % SIDE_STAGES or len(side.widths) != SIDE_STAGES or len(side.heads) != SIDE_STAGES:
            raise ConfigError(
                f"HST needs a ViT whose {len(blocks)} blocks split evenly over {SIDE_STAGES} side stages and "
                f"{SIDE_STAGES} side widths and heads (got {len(side.widths)}, {len(side.heads)})"
            )
        if any(width % heads for width, heads in zip(side.widths, side.heads)):
            raise ConfigError(f"side heads {side.heads} must divide side widths {side.widths}")
        self.vit = vit.requires_grad_(False).eval()
        self.blocks_per_stage = len(blocks) // SIDE_STAGES
        dim = vit.hidden_dim
        self.meta_tokens = nn.Parameter(nn.init.xavier_uniform_(torch.empty(len(blocks), dim)))
        self.block_norms = nn.ModuleList(
            nn.ModuleList([copy.deepcopy(block.ln_1), copy.deepcopy(block.ln_2)]).requires_grad_(True)
            for block in blocks
        )
        stage_widths = [width for width in side.widths for _ in range(self.blocks_per_stage)]
        self.bridges = nn.ModuleList(nn.Linear(dim, width) for width in side.widths)
        self.meta_norms = nn.ModuleList(nn.LayerNorm(width) for width in stage_widths)
        self.embeds = _side_embeds(side)
        self.stages = nn.ModuleList(
            nn.ModuleList(SideBlock(width, heads, side.mlp_ratio) for _ in range(self.blocks_per_stage))
            for width, heads in zip(side.widths, side.heads)
        )
        self.stage_norms = nn.ModuleList(nn.LayerNorm(width) for width in side.widths)
        self.head = nn.Sequential(nn.BatchNorm1d(side.widths[-1], affine=False), nn.Linear(side.widths[-1], n_classes))

    def train(self, mode: bool = True) -> HierarchicalSideTuning:
        """Set the mode as usual but keep the ViT in eval mode."""
        super().train(mode)
        self.vit.eval()
        return self

    def trainable_parameter_count(self) -> int:
        """How many parameters one task trains (the paper reports 0.78M on ViT-B/16)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every ViT block's output with this task's meta token and norms, each (B, 2 + patches, D).

        Token 0 is the block's meta-token output, token 1 the cls token, the rest the patch tokens.

        :param x: (B, 3, image_size, image_size) images.
        """
        vit = self.vit
        batch = x.shape[0]
        patches = vit.conv_proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.class_token.expand(batch, -1, -1), patches], dim=1) + vit.encoder.pos_embedding
        tokens = vit.encoder.dropout(tokens)
        outputs = []
        for block, (norm1, norm2), meta in zip(vit.encoder.layers, self.block_norms, self.meta_tokens):
            out = _encoder_block(block, norm1, norm2, torch.cat([meta.expand(batch, 1, -1), tokens], dim=1))
            outputs.append(out)
            tokens = out[:, 1:]
        return outputs

    def _bridge(
        self, stage: int, layer: int, layer_out: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, 2, d) cross-attention context and the (B, HW, d) bridged patch features of ViT block `layer`."""
        bridge = self.bridges[stage]
        meta = self.meta_norms[layer](bridge(layer_out[:, 0]))
        patches = bridge(layer_out[:, 2:])
        batch, count, width = patches.shape
        side = math.isqrt(count)
        patch_map = patches.transpose(1, 2).reshape(batch, width, side, side)
        bridged = F.interpolate(patch_map, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        return torch.stack([meta, bridged.mean(1)], dim=1), bridged

    def side_features(self, x: torch.Tensor, block_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The mean stage-4 side token, (B, widths[-1]).

        :param x: the images the side network reads.
        :param block_outputs: :meth:`block_outputs` of the same images.
        """
        side_map = x
        for stage, (embed, blocks, norm) in enumerate(zip(self.embeds, self.stages, self.stage_norms)):
            tokens, grid = embed(side_map)
            for offset, block in enumerate(blocks):
                layer = stage * self.blocks_per_stage + offset
                context, bridged = self._bridge(stage, layer, block_outputs[layer], grid)
                tokens = block(tokens, context, bridged)
            tokens = norm(tokens)
            side_map = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
        return tokens.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The task's logits, (B, n_classes)."""
        return self.head(self.side_features(x, self.block_outputs(x)))
