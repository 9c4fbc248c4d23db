r"""Figures as PNG bytes for ``ipywidgets.Image``, and a heatmap that updates in place.

An ``ipywidgets.Image`` holding PNG bytes is the cheapest way to show a changing figure: the
front-end swaps one picture, nothing flickers, and the bytes are there for tests to compare.

:class:`LiveHeatmap` draws :func:`lrp_tutor.viz.heatmap` once and then, while a slider moves,
only swaps the relevance in the existing figure (data, the symmetric colour range
:math:`\pm v`, the overlay's opacity and the "Σ R" label) and renders it again, about twice
as fast as drawing a new figure. It draws a new figure whenever something else changes
(the shape, the image underneath, the style), and lays it out again (constrained layout)
whenever a text grew beyond the room the last layout gave it: a longer title (another rule),
a wider "Σ R" label, or wider colorbar tick labels (another colour limit). So the title and
the colorbar always lie inside the picture, and a slider that only changes the numbers keeps
the layout, which is faster.

>>> import numpy as np
>>> live = LiveHeatmap()
>>> first = live.render(np.eye(4), title="R")
>>> first[:8] == PNG_SIGNATURE
True
>>> live.render(-np.eye(4), title="R") != first
True
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import viz
from ..viz import style
from ..viz._arrays import relevance_map, symmetric_limit
from ..viz._axes import number
from ..viz.heatmaps import overlay_opacity

__all__ = ["png_bytes", "LiveHeatmap", "PNG_SIGNATURE", "DPI"]

DPI = 96
"""Pixels per inch of the PNGs the widgets show (the figures' size grows in lecture mode)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig: Figure, dpi: float = DPI) -> bytes:
    """``fig`` rendered as PNG bytes at ``dpi`` (Agg, fast zlib level 1).

    The margins are not trimmed, so that a picture keeps its size while it updates.
    """
    if fig.dpi != dpi:
        fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    picture = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


class LiveHeatmap:
    """A :func:`lrp_tutor.viz.heatmap` that is redrawn in place when only the relevance changes.

    Parameters
    ----------
    image : array or tensor, optional
        The input drawn under the relevance (as in :func:`~lrp_tutor.viz.heatmap`).
    percentile : float, default 99.5
        The colour limit :math:`v` is this percentile of :math:`|R_i|`.
    shape : tuple of int, optional
        The (H, W) to show a flat relevance vector as, e.g. ``(8, 8)``.
    """

    def __init__(
        self, image: Any = None, *, percentile: float = 99.5, shape: tuple[int, ...] | None = None
    ) -> None:
        self.image = image
        self.percentile = percentile
        self.shape = shape
        self.figure: Figure | None = None
        self.relevance: np.ndarray | None = None
        self._key: tuple[Any, ...] | None = None
        self._room: tuple[float, ...] | None = None  # the texts' extents at the last layout
        self.redraws = 0  # full figures drawn (the rest were updates in place)

    def render(self, relevance: Any, *, title: str) -> bytes:
        """PNG bytes of the heatmap of ``relevance`` (one sample) titled ``title``."""
        R = relevance_map(relevance, shape=self.shape)
        current = style.current()
        key = (R.shape, current.lecture, current.scale)
        if self.figure is None or key != self._key:
            self.figure = viz.heatmap(
                R, self.image, percentile=self.percentile, title=title, alpha=0.6
            )
            self.figure.set_dpi(DPI)
            self._key, self._room = key, None
            self.redraws += 1
            relayout = True
        else:
            self._update(R, title)
            # Lay the figure out again only when a text needs more room than the last layout
            # gave it; otherwise keep the layout, which is faster.
            room = self._room
            relayout = room is None or any(
                now > before + 0.5 for now, before in zip(self._extents(), room, strict=True)
            )
        if relayout:
            self.figure.set_layout_engine("constrained")
        png = png_bytes(self.figure)
        if relayout:
            self.figure.set_layout_engine("none")
            self._room = self._extents()
        self.relevance = R
        return png

    def _extents(self) -> tuple[float, ...]:
        """Width and height in pixels of what constrained layout makes room for: the title,
        the x label ("Σ R") and each colorbar with its tick labels and label."""
        assert self.figure is not None
        renderer = self.figure.canvas.get_renderer()  # Agg, set by png_bytes
        ax = self.figure.axes[0]
        boxes = [ax.title.get_window_extent(renderer), ax.xaxis.label.get_window_extent(renderer)]
        boxes += [other.get_tightbbox(renderer) for other in self.figure.axes[1:]]
        return tuple(size for box in boxes for size in (box.width, box.height))

    def _update(self, R: np.ndarray, title: str) -> None:
        assert self.figure is not None
        ax = self.figure.axes[0]
        shown = next(im for im in ax.images if im.get_gid() == "relevance")
        limit = symmetric_limit(R, self.percentile)
        shown.set_data(R)
        shown.set_clim(-limit, limit)
        if self.image is not None:
            shown.set_alpha(overlay_opacity(R, limit, 0.6))
        with style.context():  # new texts take the style's sizes, as in viz.heatmap
            ax.set_title(title)
            ax.set_xlabel(f"Σ R = {number(R.sum())}")
