r"""Relevance heatmaps: one sample's :math:`R_i` as an image, alone or over the input.

The colour scale is symmetric around zero, :math:`[-v, v]` with :math:`v` the
``percentile`` of :math:`|R_i|`, so white always means "no relevance", red "for the
class", blue "against it". The brightest pixels above :math:`v` are clipped; the colorbar
then shows arrows at both ends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import image_for_display, relevance_map, symmetric_limit
from ._axes import (
    RELEVANCE_LABEL,
    axes,
    colormap,
    new_figure,
    number,
    relevance_colorbar,
    symmetric_norm,
)

__all__ = ["heatmap", "compare", "overlay_opacity"]


IMAGE_LIGHTEN = 0.6
"""Under a heatmap, black pixels are shown as this much grey (0.6 / 1.6 ≈ 0.38)."""


def overlay_opacity(R: np.ndarray, limit: float, alpha: float) -> np.ndarray:
    r"""Per-pixel opacity of the relevance over the image: :math:`\alpha\sqrt{\min(1, |R|/v)}`.

    Zero relevance is fully transparent (the image shows unchanged), relevance at or beyond
    the colour limit :math:`v` has opacity :math:`\alpha`; the square root keeps moderate
    relevance visible.

    >>> overlay_opacity(np.array([0.0, -0.5, 4.0]), 2.0, 0.6)
    array([0. , 0.3, 0.6])
    """
    return float(alpha) * np.sqrt(np.clip(np.abs(R) / limit, 0.0, 1.0))


def heatmap(
    relevance: Any,
    image: Any = None,
    *,
    ax: Axes | None = None,
    percentile: float = 99.5,
    cmap: Any = "bwr",
    title: str | None = None,
    colorbar: bool = True,
    alpha: float = 0.6,
    shape: tuple[int, ...] | None = None,
    channel_axis: int = 0,
    gray_image: bool = True,
    colorbar_label: str = RELEVANCE_LABEL,
) -> Figure:
    r"""Show the relevance :math:`R_i` of one sample as an image, optionally over the input.

    Colour limits are :math:`\pm v` with :math:`v = \mathrm{percentile}_{p}(|R|)`, so that
    :math:`R = 0` is the colormap's centre (white for ``"bwr"``).

    Parameters
    ----------
    relevance : array or tensor
        (H, W); (C, H, W) or (1, C, H, W), shown as :math:`\sum_c R_{c,h,w}`; or H·W
        numbers with ``shape=(H, W)``.
    image : array or tensor, optional
        The input, (H, W), (C, H, W) or (H, W, C), any range (scaled to [0, 1]). The
        relevance is drawn over it, the more opaque the larger :math:`|R|` (see ``alpha``).
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    percentile : float, default 99.5
        :math:`v` is this percentile of :math:`|R|` (100 = the full range).
    cmap : str or Colormap, default "bwr"
        A diverging colormap whose centre means zero.
    title : str, optional
        Default "relevance R_i"; the sum :math:`\sum_i R_i` is written below the image.
    colorbar : bool, default True
        Add a colorbar labelled "relevance".
    alpha : float, default 0.6
        Opacity of the strongest relevance (:math:`|R| \ge v`) over the image; a pixel
        with relevance R has opacity :math:`\alpha \sqrt{\min(1, |R|/v)}`, so that zero
        relevance leaves the image as it is. Only used with ``image``.
    shape : tuple of int, optional
        Shape to give a flat relevance vector, e.g. ``(28, 28)``.
    channel_axis : int, default 0
        The channel axis of a 3-D relevance (0 for (C, H, W), -1 for (H, W, C)).
    gray_image : bool, default True
        Show an RGB image as grey, so that red and blue are left to the relevance.
    colorbar_label : str, default "relevance  (red +, blue −)"

    Returns
    -------
    Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = heatmap(np.array([[1.0, -2.0], [0.5, 0.0]]), percentile=100)
    >>> [float(v) for v in fig.axes[0].images[0].get_clim()]
    [-2.0, 2.0]
    """
    R = relevance_map(relevance, shape=shape, channel_axis=channel_axis)
    limit = symmetric_limit(R, percentile)
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be between 0 and 1, got {alpha!r}.")
    cmap = colormap(cmap)
    with style.context():
        fig, ax = axes(ax, 4.4, 3.8)
        interpolation = "nearest" if max(R.shape) <= 64 else "antialiased"
        if image is not None:
            background = image_for_display(image, R.shape, gray=gray_image)
            # vmin < 0 lightens the image (black shows as mid grey) so that red and blue stay
            # visible over its dark parts; the data of the image is kept as it is.
            shown = ax.imshow(
                background,
                cmap="gray",
                vmin=-IMAGE_LIGHTEN,
                vmax=1.0,
                alpha=None if background.ndim == 2 else 1.0 / (1.0 + IMAGE_LIGHTEN),
                interpolation=interpolation,
            )
            shown.set_gid("image")
        im = ax.imshow(
            R,
            cmap=cmap,
            norm=symmetric_norm(limit),
            alpha=None if image is None else overlay_opacity(R, limit, alpha),
            interpolation=interpolation,
        )
        im.set_gid("relevance")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("relevance $R_i$" if title is None else title)
        ax.set_xlabel(f"Σ R = {number(R.sum())}")
        if colorbar:
            clipped = bool(np.abs(R).max() > limit * (1 + 1e-12))
            relevance_colorbar(fig, im, ax, limit, clipped=clipped, label=colorbar_label)
    return style.finish(fig)


def compare(
    relevances: Mapping[str, Any],
    image: Any = None,
    *,
    ncols: int | None = None,
    percentile: float = 99.5,
    cmap: Any = "bwr",
    colorbar: bool = True,
    alpha: float = 0.6,
    shape: tuple[int, ...] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of heatmaps, one per rule, each with its own symmetric range ±v.

    Parameters
    ----------
    relevances : mapping of str to array or tensor
        ``{"ε=0.25": R_eps, "αβ": R_ab, ...}``; each value as :func:`heatmap` accepts.
    image : array or tensor, optional
        The input, drawn under every heatmap.
    ncols : int, optional
        Columns of the grid (default: up to 4).
    percentile, cmap, colorbar, alpha, shape
        As in :func:`heatmap`.
    title : str, optional
        A title over the whole grid.

    Returns
    -------
    Figure
        One axes per rule (plus their colorbars), titled with the mapping's keys.

    Examples
    --------
    >>> import numpy as np
    >>> fig = compare({"LRP-0": np.eye(3), "ε": 0.5 * np.eye(3)}, colorbar=False)
    >>> [ax.get_title() for ax in fig.axes]
    ['LRP-0', 'ε']
    """
    if not isinstance(relevances, Mapping):
        raise InputError(
            "relevances must be a mapping from a name to a relevance map, e.g. "
            f"{{'LRP-0': R0, 'ε=0.25': R1}}; got {type(relevances).__name__}."
        )
    if len(relevances) == 0:
        raise InputError("relevances is empty; pass at least one {name: relevance map}.")
    n = len(relevances)
    if ncols is None:
        ncols = min(n, 4)
    if not isinstance(ncols, int) or ncols < 1:
        raise InputError(f"ncols must be a positive integer, got {ncols!r}.")
    nrows = math.ceil(n / ncols)
    with style.context():
        fig = new_figure(3.6 * ncols, 3.3 * nrows + (0.4 if title else 0.0))
        grid = fig.subplots(nrows, ncols, squeeze=False)
        for k, (ax, (name, relevance)) in enumerate(
            zip(grid.flat, relevances.items(), strict=False)
        ):
            # Every map has its own range, so every colorbar keeps its ticks; the label once.
            last_in_row = (k + 1) % ncols == 0 or k == n - 1
            try:
                heatmap(
                    relevance,
                    image,
                    ax=ax,
                    percentile=percentile,
                    cmap=cmap,
                    title=str(name),
                    colorbar=colorbar,
                    alpha=alpha,
                    shape=shape,
                    colorbar_label=RELEVANCE_LABEL if last_in_row else "",
                )
            except InputError as exc:
                raise InputError(f"compare, entry {name!r}: {exc}") from exc
        for ax in grid.flat[n:]:
            ax.remove()
        if title:
            fig.suptitle(title)
    return style.finish(fig)
