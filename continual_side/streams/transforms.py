"""Input normalisation shared by every stream: ImageNet mean/std, no augmentation (as in the paper)."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 RGB images to float32 `(x / 255 - mean) / std`, on the images' device.

    :param images: uint8 tensor (N, 3, H, W) or (3, H, W).
    """
    if images.dtype != torch.uint8 or images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise TypeError(
            f"normalise expects uint8 images (N,3,H,W) or (3,H,W), got {images.dtype} {tuple(images.shape)}"
        )
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=images.device).view(shape)
    return (images.to(torch.float32) / 255.0 - mean) / std
