"""Photographs that ship inside installed packages, ready for an ImageNet network.

No download: the photos come from scikit-image, scikit-learn and matplotlib (licences and
credits in ``lrp_tutor/zoo/data/LICENSES.md`` and :data:`PHOTOS`). scikit-image and
scikit-learn are optional (``pip install lrp_tutor[data]``); matplotlib is always there.

Each photo is resized (bilinear, antialiased) so that its shorter side has ``size`` pixels,
then cropped to the central ``size`` × ``size`` square, rounded to uint8 — these are the
``images`` to overlay heatmaps on — and normalised with the ImageNet mean and std.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError
from ._optional import require
from .imagenet import imagenet_normalize

PHOTOS: dict[str, str] = {
    "astronaut": "scikit-image: Eileen Collins, NASA; public domain",
    "chelsea": "scikit-image: Chelsea the cat, Stefan van der Walt; CC0",
    "coffee": "scikit-image: a cup of coffee, Rachel Michetti; CC0",
    "rocket": "scikit-image: Falcon 9 launching DSCOVR, SpaceX; public domain (CC0)",
    "china": "scikit-learn: a Chinese temple, danielbuechele on Flickr; CC BY 2.0",
    "flower": "scikit-learn: a flower, vultilion on Flickr; CC BY 2.0",
    "grace_hopper": "matplotlib: Rear Admiral Grace Hopper, U.S. Navy; public domain",
}
"""Every available photo by name, with its source and licence."""


class SampleImages(NamedTuple):
    """Photos ready for a network, and the same photos for showing heatmaps on."""

    x: torch.Tensor
    """Normalised float32 tensor (N, 3, size, size)."""
    images: np.ndarray
    """The resized, cropped photos as uint8 (N, size, size, 3)."""
    names: tuple[str, ...]
    """The name of each photo (keys of :data:`PHOTOS`)."""


def load_photo(name: str) -> np.ndarray:
    """The original photo ``name`` as a uint8 array (H, W, 3)."""
    if name in ("astronaut", "chelsea", "coffee", "rocket"):
        data = require("skimage.data", f"The photo '{name}' (from scikit-image)")
        return np.asarray(getattr(data, name)(), dtype=np.uint8)
    if name in ("china", "flower"):
        datasets = require("sklearn.datasets", f"The photo '{name}' (from scikit-learn)")
        return np.asarray(datasets.load_sample_image(f"{name}.jpg"), dtype=np.uint8)
    if name == "grace_hopper":
        from matplotlib import cbook, image

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(image.imread(path), dtype=np.uint8)
    raise InputError(f"Unknown photo '{name}'; choose from {sorted(PHOTOS)}.")


def resize_and_crop(photo: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (H, W, 3) so the shorter side is ``size``, crop the centre square.

    >>> resize_and_crop(np.zeros((40, 80, 3), dtype=np.uint8), 20).shape
    (20, 20, 3)
    """
    height, width = photo.shape[:2]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    pixels = torch.tensor(photo, dtype=torch.float64).permute(2, 0, 1)[None]
    resized = torch.nn.functional.interpolate(
        pixels, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    crop = resized[0, :, top : top + size, left : left + size]
    return crop.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def sample_images(
    size: int = 224, names: list[str] | tuple[str, ...] | None = None
) -> SampleImages:
    """Offline sample photos: normalised tensors, the uint8 photos and their names.

    Parameters
    ----------
    size : int
        Side of the square crops (224 for torchvision's ImageNet models).
    names : list of str, optional
        Which photos (keys of :data:`PHOTOS`); default all of them.

    Returns
    -------
    SampleImages
        ``x`` (N, 3, size, size) float32, normalised per channel with ``IMAGENET_MEAN`` and
        ``IMAGENET_STD``; ``images`` (N, size, size, 3) uint8; ``names``.

    Examples
    --------
    >>> x, images, names = sample_images(size=32, names=["grace_hopper"])
    >>> x.shape, images.shape, names
    (torch.Size([1, 3, 32, 32]), (1, 32, 32, 3), ('grace_hopper',))
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputError(f"sample_images: size must be a positive int, got {size!r}.")
    chosen = tuple(PHOTOS) if names is None else tuple(names)
    unknown = [n for n in chosen if n not in PHOTOS]
    if unknown or not chosen:
        raise InputError(
            f"sample_images: unknown photo names {unknown}; choose from {sorted(PHOTOS)}."
        )
    images = np.stack([resize_and_crop(load_photo(name), size) for name in chosen])
    return SampleImages(imagenet_normalize(images), images, chosen)
