"""Figures, axes and colour scales shared by every figure function."""

from __future__ import annotations

from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import InputError
from . import style

RELEVANCE_LABEL = "relevance  (red +, blue −)"


def new_figure(width: float, height: float) -> Figure:
    """A new figure, closed in pyplot at once so that Jupyter shows it exactly once.

    The figure is returned to the caller, who displays it (Jupyter shows a returned figure)
    or saves it; pyplot does not keep it open, so it is never shown twice nor leaks memory.
    """
    fig = plt.figure(figsize=style.figsize(width, height), layout="constrained")
    plt.close(fig)
    return fig


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure that holds ``ax`` (also when ``ax`` lives in a SubFigure)."""
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure  # type: ignore[union-attr]
    return fig


def axes(ax: Any, width: float, height: float) -> tuple[Figure, Axes]:
    """``(figure, ax)``: the given axes and its figure, or a new figure with one axes."""
    if ax is None:
        fig = new_figure(width, height)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise InputError(
            f"ax must be a matplotlib Axes (e.g. from plt.subplots()), got {type(ax).__name__}."
        )
    return root_figure(ax), ax


def colormap(cmap: Any) -> Colormap:
    """A Colormap from a name or a Colormap, with a clear error for unknown names."""
    if isinstance(cmap, Colormap):
        return cmap
    try:
        return mpl.colormaps[cmap]
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"cmap={cmap!r} is not a matplotlib colormap; use a diverging one such as "
            "'bwr', 'seismic' or 'coolwarm' (white = zero relevance)."
        ) from exc


def symmetric_norm(limit: float) -> Normalize:
    """Normalize mapping [−limit, limit] to [0, 1], so that 0 sits in the colormap's centre."""
    return Normalize(vmin=-limit, vmax=limit)


def relevance_colorbar(
    fig: Figure,
    mappable: Any,
    ax: Axes,
    limit: float,
    *,
    clipped: bool = False,
    label: str = RELEVANCE_LABEL,
    shrink: float = 1.0,
) -> Any:
    """A colorbar over [−v, v] with round ticks around 0; arrows at the ends when clipped.

    The colorbar shows the colormap at full opacity, also when the figure draws the
    relevance semi-transparent over an image.
    """
    if getattr(mappable, "cmap", None) is not None and mappable.get_alpha() is not None:
        mappable = ScalarMappable(norm=mappable.norm, cmap=mappable.cmap)
    cbar = fig.colorbar(
        mappable,
        ax=ax,
        extend="both" if clipped else "neither",
        fraction=0.05,
        pad=0.03,
        shrink=shrink,
    )
    cbar.set_ticks(MaxNLocator(nbins=4, symmetric=True, steps=[1, 2, 2.5, 5, 10]))
    cbar.set_label(label)
    return cbar


def number(value: float, digits: int = 3) -> str:
    """A number as a student reads it: ``digits`` significant digits, no needless exponent.

    >>> number(0.123456), number(-2.0), number(1.5e-7), number(1234.5), number(-0.0)
    ('0.123', '−2', '1.5e-07', '1234', '0')
    """
    if value == 0:
        return "0"  # also −0.0
    if 100 <= abs(value) < 1e6:
        text = f"{value:.0f}"
    else:
        text = f"{value:.{digits}g}"
    return text.replace("-", "−", 1) if text.startswith("-") else text


def text_color(value: float, limit: float) -> str:
    """Black text on light cells, white on dark (saturated) ones."""
    return "white" if abs(value) > 0.6 * limit else "black"
