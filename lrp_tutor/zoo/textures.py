"""A small CNN that tells brick, grass and gravel apart (CC0 textures of scikit-image).

It is fully convolutional up to a global average pool, so it runs on any image of at least
32×32 pixels: on the shipped mosaic (:func:`lrp_tutor.zoo.texture_mosaic`) the relevance of
the class "brick" should lie on the brick, and of "gravel" on the gravel. Inputs are grey
images (N, 1, H, W) with pixels in [0, 1]; outputs are 3 logits in the order of
``TEXTURE_CLASSES``.

>>> from lrp_tutor import zoo
>>> x, labels = zoo.texture_samples()
>>> zoo.textures_cnn()(x).shape
torch.Size([12, 3])
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .splits import TEXTURE_CLASSES
from .store import shipped_or_fresh

__all__ = ["TEXTURE_CLASSES", "textures_cnn", "textures_cnn_architecture"]


def textures_cnn_architecture() -> nn.Sequential:
    """conv5×5(16), ReLU, maxpool, conv5×5(32), ReLU, maxpool, conv3×3(32), ReLU,
    global average pool, Flatten, Linear(32 → 3)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, len(TEXTURE_CLASSES)),
    )


def textures_cnn(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Sequential:
    """The texture classifier, trained (default) or freshly initialised.

    Parameters
    ----------
    pretrained : bool
        Load the shipped weights (verified against their SHA-256) or keep torch's random init.
    weights_dir : path, optional
        Read the weights and ``manifest.json`` from this folder instead of the shipped one.
    """
    return shipped_or_fresh("textures_cnn", textures_cnn_architecture(), pretrained, weights_dir)
