r"""Signed bar charts: one bar per neuron, e.g. the relevances :math:`R_i` of a layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import vector
from ._axes import axes, number

__all__ = ["bars", "POSITIVE", "NEGATIVE", "ZERO"]

POSITIVE = "#d62728"
"""Colour of positive relevance (red, as in the heatmaps)."""
NEGATIVE = "#1f5fd6"
"""Colour of negative relevance (blue, as in the heatmaps)."""
ZERO = "#7f7f7f"
"""Colour of exactly zero."""

ANNOTATE_MAX = 12
"""Charts with at most this many bars get their values written at the bars."""


def signed_colors(values: np.ndarray) -> list[str]:
    """Red for positive, blue for negative, grey for zero values.

    >>> signed_colors(np.array([1.0, -1.0, 0.0]))
    ['#d62728', '#1f5fd6', '#7f7f7f']
    """
    return [POSITIVE if v > 0 else NEGATIVE if v < 0 else ZERO for v in values]


def bars(
    values: Any,
    *,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    ylabel: str = "relevance $R_i$",
    xlabel: str = "neuron $i$",
    annotate: bool | None = None,
) -> Figure:
    r"""One bar per value, positive red and negative blue, with the zero line.

    Parameters
    ----------
    values : array or tensor, shape (n,)
        E.g. the relevances :math:`R_i` of a layer's neurons (a leading batch axis of size 1
        is dropped).
    labels : sequence of str, optional
        One name per bar (default the indices 0 … n−1).
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    title : str, optional
        Default :math:`\sum_i R_i = \ldots`.
    ylabel, xlabel : str
        Axis labels.
    annotate : bool, optional
        Write each value at its bar; default when there are at most 12 bars.

    Returns
    -------
    Figure

    Examples
    --------
    >>> fig = bars([0.5, -0.25, 0.0], labels=["a", "b", "c"])
    >>> [float(p.get_height()) for p in fig.axes[0].patches]
    [0.5, -0.25, 0.0]
    """
    v = vector(values, "values")
    n = v.size
    if labels is not None and len(labels) != n:
        raise InputError(f"labels has {len(labels)} names but values has {n} numbers.")
    if annotate is None:
        annotate = n <= ANNOTATE_MAX
    with style.context():
        fig, ax = axes(ax, max(3.6, min(0.45 * n + 1.8, 10.0)), 3.2)
        container = ax.bar(
            np.arange(n), v, color=signed_colors(v), edgecolor="black", linewidth=0.6
        )
        container.set_label("values")
        ax.axhline(0.0, color="black", linewidth=style.current().line_width * 0.8)
        if labels is not None or n <= 30:
            names = labels if labels is not None else [str(i) for i in range(n)]
            ax.set_xticks(np.arange(n), names)
        if labels is not None and max((len(str(s)) for s in labels), default=0) > 4:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title if title is not None else f"$\\Sigma_i R_i$ = {number(v.sum())}")
        limit = float(np.abs(v).max()) or 1.0
        ax.set_ylim(
            min(0.0, v.min()) - 0.15 * limit,
            max(0.0, v.max()) + 0.15 * limit,
        )
        if annotate:
            size = style.font_size(0.8)
            for x, value in enumerate(v):
                ax.annotate(
                    number(value),
                    (x, value),
                    xytext=(0, 3 if value >= 0 else -3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom" if value >= 0 else "top",
                    fontsize=size,
                )
    return style.finish(fig)
