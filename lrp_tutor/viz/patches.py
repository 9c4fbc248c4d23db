r"""Patch heatmaps for Vision Transformers: the relevance of each patch token over the image.

A ViT turns an :math:`H \times W` image into a grid of :math:`(H/p) \times (W/p)` patch
tokens, row by row (token :math:`1 + r\cdot W/p + c` is the patch in row r, column c when a
class token comes first). :func:`patch_overlay` puts the relevance of the patch tokens back
on that grid, repeats each value over its :math:`p \times p` pixels and draws it over the
image like :func:`~lrp_tutor.viz.heatmap` (symmetric range, red for the class, blue against,
opacity growing with :math:`|R|`).

>>> import numpy as np
>>> R = np.zeros(17); R[1 + 4 * 1 + 2] = 1.0   # class token, then a 4 × 4 grid
>>> fig = patch_overlay(np.zeros((28, 28)), R, patch_size=7)
>>> drawn = fig.axes[0].get_images()[-1].get_array()
>>> [int(i) for i in np.argwhere(drawn != 0).min(axis=0)]
[7, 14]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import drop_batch, to_numpy
from ._axes import RELEVANCE_LABEL, number
from .heatmaps import heatmap

__all__ = ["patch_overlay", "patch_grid"]


def _image_size(image: Any) -> tuple[np.ndarray, tuple[int, int]]:
    array = drop_batch(to_numpy(image, "image"), "image", 3)
    if array.ndim == 2:
        return array, (array.shape[0], array.shape[1])
    if array.ndim == 3:
        if array.shape[0] in (1, 3, 4):
            return array, (array.shape[1], array.shape[2])
        return array, (array.shape[0], array.shape[1])
    raise InputError(
        f"image must be (H, W), (C, H, W), (H, W, C) or (1, C, H, W), got shape {array.shape}."
    )


def patch_grid(
    patch_relevance: Any, grid: tuple[int, int], *, class_token: bool | None = None
) -> np.ndarray:
    r"""The relevance of the patch tokens as a ``grid`` = (rows, columns) array.

    Parameters
    ----------
    patch_relevance : array or tensor
        One sample's token relevance: (T,) or (T, D) (summed over the D embedding
        dimensions), optionally with a batch axis of one; T = rows·columns patch tokens, or
        one more with the class token first. A (rows, columns) array is taken as the grid.
    grid : (int, int)
        Patches per column and per row of the image: ``(H // p, W // p)``.
    class_token : bool, optional
        Whether token 0 is a class token (dropped). By default: when T = rows·columns + 1.

    >>> patch_grid(np.arange(5.0), (2, 2))
    array([[1., 2.],
           [3., 4.]])
    """
    return _split_tokens(patch_relevance, grid, class_token)[0]


def _split_tokens(
    patch_relevance: Any, grid: tuple[int, int], class_token: bool | None
) -> tuple[np.ndarray, float | None]:
    """The patch grid and the class token's relevance (None without a class token)."""
    rows, cols = grid
    n = rows * cols
    R = to_numpy(patch_relevance, "patch_relevance")
    if R.ndim == 2 and R.shape == (rows, cols) and class_token is None:
        return R, None
    tokens = (n, n + 1)
    if R.ndim >= 2 and R.shape[0] not in tokens and R.shape[1] in tokens:
        if R.shape[0] != 1:
            raise InputError(
                f"patch_relevance holds a batch of {R.shape[0]} samples (shape {R.shape}); "
                "a figure shows one sample: pass R[i]."
            )
        R = R[0]  # a batch of one
    if R.ndim == 2:
        R = R.sum(axis=-1)  # (tokens, embedding dimensions)
    if R.ndim != 1:
        raise InputError(
            f"patch_relevance must be one sample's token relevance, (T,) or (T, D), got shape "
            f"{R.shape}; for a batch pass R[i]."
        )
    if class_token is None:
        class_token = R.size == n + 1
    expected = n + int(bool(class_token))
    if R.size != expected:
        with_class = " plus the class token" if class_token else ""
        raise InputError(
            f"patch_relevance has {R.size} tokens, but the image is a grid of {rows} × {cols} = "
            f"{n} patches{with_class}: {expected} tokens. Check patch_size, or pass "
            "class_token= to say whether token 0 is a class token."
        )
    if class_token:
        return R[1:].reshape(rows, cols), float(R[0])
    return R.reshape(rows, cols), None


def patch_overlay(
    image: Any,
    patch_relevance: Any,
    patch_size: int,
    *,
    class_token: bool | None = None,
    ax: Axes | None = None,
    alpha: float = 0.6,
    percentile: float = 100.0,
    cmap: Any = "bwr",
    title: str | None = None,
    colorbar: bool = True,
    grid_lines: bool = True,
) -> Figure:
    r"""Draw a ViT's patch-token relevance over the image, one flat square per patch.

    Parameters
    ----------
    image : array or tensor
        The input that was explained: (H, W), (C, H, W), (H, W, C) or (1, C, H, W); H and W
        multiples of ``patch_size``.
    patch_relevance : array or tensor
        The relevance of the tokens, see :func:`patch_grid` (the class token, if there is
        one, is left out of the picture; its share is written under the image).
    patch_size : int
        Side of the model's square patches in pixels.
    class_token : bool, optional
        Whether token 0 is a class token; by default inferred from the number of tokens.
    ax, alpha, percentile, cmap, title, colorbar
        As in :func:`~lrp_tutor.viz.heatmap` (``percentile`` of the patches' :math:`|R|`).
    grid_lines : bool, default True
        Outline the patches with thin grey lines.

    Returns
    -------
    Figure
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int | np.integer):
        raise InputError(f"patch_size must be a positive int, got {patch_size!r}.")
    p = int(patch_size)
    if p < 1:
        raise InputError(f"patch_size must be a positive int, got {patch_size!r}.")
    array, (height, width) = _image_size(image)
    if height % p or width % p:
        raise InputError(
            f"The image is {height}×{width} pixels, which is not a whole number of "
            f"{p}×{p} patches; pass the input the ViT saw and its patch_size."
        )
    rows, cols = height // p, width // p
    grid, class_relevance = _split_tokens(patch_relevance, (rows, cols), class_token)
    pixels = np.kron(grid, np.ones((p, p)))
    fig = heatmap(
        pixels,
        array,
        ax=ax,
        percentile=percentile,
        cmap=cmap,
        title="patch relevance" if title is None else title,
        colorbar=colorbar,
        alpha=alpha,
        colorbar_label=RELEVANCE_LABEL,
    )
    axis = ax if ax is not None else fig.axes[0]
    label = f"Σ R (patches) = {number(float(grid.sum()))}"
    if class_relevance is not None:
        label += f",  class token {number(class_relevance)}"
    with style.context():
        axis.set_xlabel(label)
        if grid_lines:
            for r in range(1, rows):
                axis.axhline(r * p - 0.5, color="0.6", linewidth=0.5)
            for c in range(1, cols):
                axis.axvline(c * p - 0.5, color="0.6", linewidth=0.5)
    return style.finish(fig)
