r"""Deep Taylor decomposition in the plane: one ReLU neuron of two inputs and its root points.

A ReLU neuron :math:`a = \max(0, w_1 x_1 + w_2 x_2 + b)` is active on one side of the line
:math:`w^\top x + b = 0` and off on the other. Deep Taylor decomposition expands the neuron
at a **root point** :math:`\tilde x` on that line, found on a search line
:math:`x - t\,v`; each choice of the direction :math:`v` gives one LRP rule. The figure
draws the line, shades where the neuron is active, and marks the input and the root points
that the caller computed (viz never computes relevance).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import to_numpy
from ._axes import axes

__all__ = ["root_points", "ACTIVE"]

ACTIVE = "#fbe3e3"
"""Fill colour of the half-plane where the neuron is active (z > 0)."""


def _point(value: Any, name: str) -> np.ndarray:
    array = np.asarray(to_numpy(value, name), dtype=np.float64).reshape(-1)
    if array.shape != (2,) or not np.all(np.isfinite(array)):
        raise InputError(
            f"{name} must be a finite point of the plane, two numbers; got "
            f"{np.asarray(to_numpy(value, name)).tolist()!r}."
        )
    return array


def _limits(points: np.ndarray, margin: float = 0.15) -> tuple[float, float, float, float]:
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.maximum(high - low, 1e-9).max()
    pad = margin * span
    centre = (low + high) / 2
    half = (high - low).max() / 2 + pad
    return centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half


def root_points(
    w: Any,
    b: float,
    x: Any,
    roots: Mapping[str, Any],
    *,
    box: tuple[Any, Any] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""The input plane of one ReLU neuron with two inputs, the input and its root points.

    Parameters
    ----------
    w : array or tensor, shape (2,)
        The neuron's weights.
    b : float
        Its bias; the neuron is active where :math:`w^\top x + b > 0` (shaded).
    x : array or tensor, shape (2,)
        The input that is explained (a black dot).
    roots : mapping of str to a point
        ``{"z⁺": x_tilde, …}``: root points :math:`\tilde x`, each drawn as a marker with the
        segment from ``x`` to it (part of its search line :math:`x - t\,v`), labelled by its
        key in the legend.
    box : (low, high), optional
        The input domain :math:`[l_1, h_1] \times [l_2, h_2]` (numbers or pairs), drawn as a
        dashed rectangle.
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    title : str, optional
        The axes title.

    Returns
    -------
    Figure
        One axes: the line :math:`w^\top x + b = 0` (gid ``"boundary"``), the shaded active
        side (gid ``"active"``), the input (label ``"x"``), one marker per root point
        (labelled with its key) and the box (gid ``"box"``).

    Examples
    --------
    >>> fig = root_points([2.0, -1.0], -0.5, [0.9, 0.95], {"w²": [0.76, 1.02]}, box=(0, 1))
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['x', 'w²']
    """
    w = _point(w, "w")
    x = _point(x, "x")
    try:
        bias = float("nan") if isinstance(b, bool | str) else float(b)
    except (TypeError, ValueError):
        bias = float("nan")
    if not np.isfinite(bias):
        raise InputError(f"b must be a finite number, the neuron's bias; got {b!r}.")
    b = bias
    if np.all(w == 0):
        raise InputError("w is zero: the neuron has no boundary to draw.")
    if not isinstance(roots, Mapping):
        raise InputError(
            f"roots must be a mapping from a name to a point, e.g. {{'z⁺': x_tilde}}; got "
            f"{type(roots).__name__}."
        )
    points = {str(name): _point(p, f"roots[{name!r}]") for name, p in roots.items()}
    corners = [x, *points.values()]
    if box is not None:
        try:
            low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (2,)) for v in box)
        except (TypeError, ValueError) as error:
            raise InputError(
                f"box must be (low, high), each a number or a pair; got {box!r}."
            ) from error
        if not np.all(low < high):
            raise InputError(f"box must have low < high, got {box!r}.")
        corners += [low, high]
    x0, x1, y0, y1 = _limits(np.array(corners))
    with style.context():
        fig, ax = axes(ax, 4.6, 4.2)
        grid_x, grid_y = np.meshgrid(np.linspace(x0, x1, 201), np.linspace(y0, y1, 201))
        z = w[0] * grid_x + w[1] * grid_y + b
        active = ax.contourf(
            grid_x, grid_y, z, levels=[0.0, max(float(z.max()), 0.0) + 1.0], colors=[ACTIVE]
        )
        active.set_gid("active")
        boundary = ax.contour(grid_x, grid_y, z, levels=[0.0], colors="k", linewidths=1.2)
        boundary.set_gid("boundary")
        if box is not None:
            (rectangle,) = ax.plot(
                [low[0], high[0], high[0], low[0], low[0]],
                [low[1], low[1], high[1], high[1], low[1]],
                "--",
                color="0.45",
                linewidth=1,
            )
            rectangle.set_gid("box")
        ax.plot(*x, "o", color="k", markersize=8, label="x", zorder=4)
        markers = ["s", "D", "^", "v", "P", "X", "*", "h"]
        for k, (name, point) in enumerate(points.items()):
            color = f"C{k % 10}"
            ax.plot([x[0], point[0]], [x[1], point[1]], "-", color=color, linewidth=1.5)
            ax.plot(*point, markers[k % len(markers)], color=color, markersize=8, label=name)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.legend(loc="best", fontsize=style.font_size(0.8))
        ax.set_title(title if title is not None else "root points on $w^\\top x + b = 0$")
    return style.finish(fig)
