r"""ImageNet input normalisation, as torchvision's pretrained models expect it.

A pixel :math:`p \in [0, 1]` of channel *c* enters the network as
:math:`x = (p - \mu_c) / \sigma_c`. The z^B rule needs the smallest and largest value an
input can take, per channel: :math:`l_c = (0 - \mu_c)/\sigma_c`,
:math:`h_c = (1 - \mu_c)/\sigma_c`.

>>> low, high = imagenet_bounds()
>>> low.shape, round(float(low[0, 0, 0, 0]), 4), round(float(high[0, 0, 0, 0]), 4)
(torch.Size([1, 3, 1, 1]), -2.1179, 2.2489)
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel (R, G, B) mean of ImageNet pixels in [0, 1]."""

IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel (R, G, B) standard deviation of ImageNet pixels in [0, 1]."""


def _per_channel(values: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).reshape(1, 3, 1, 1)


def imagenet_normalize(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, 3) or float images in [0, 1] (N, 3, H, W) → normalised float32
    tensors (N, 3, H, W), :math:`x = (p - \\mu_c)/\\sigma_c`.

    >>> imagenet_normalize(np.zeros((1, 2, 2, 3), dtype=np.uint8)).shape
    torch.Size([1, 3, 2, 2])
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"imagenet_normalize: expected uint8 images of shape (N, H, W, 3), got "
                f"{images.dtype} {images.shape}. Pass a float tensor (N, 3, H, W) in [0, 1] "
                "otherwise."
            )
        pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    else:
        pixels = images.float()
    mean = _per_channel(IMAGENET_MEAN, torch.float32)
    std = _per_channel(IMAGENET_STD, torch.float32)
    return (pixels - mean) / std


def imagenet_bounds(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the normalised values of pixel 0 and pixel 1, shape (1, 3, 1, 1).

    Computed like :func:`imagenet_normalize` (in float32 by default), so every normalised
    input satisfies ``low <= x <= high`` exactly. Pass them to ``rules.ZBox(low, high)``.
    """
    mean, std = _per_channel(IMAGENET_MEAN, dtype), _per_channel(IMAGENET_STD, dtype)
    return (0.0 - mean) / std, (1.0 - mean) / std
