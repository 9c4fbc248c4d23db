"""Lecture mode: large type, thick lines and high contrast in every lrp_tutor figure.

>>> from lrp_tutor.viz import style
>>> with style.lecture_mode(scale=2.0):
...     style.current().scale
2.0
>>> style.current().lecture
False

Every figure function draws inside :func:`context` (a ``matplotlib.rc_context`` with the
current style) and ends with :func:`finish`. The user's global ``matplotlib.rcParams`` are
never changed, so lecture mode affects lrp_tutor figures only. Widgets read
:func:`current` to size their own text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import matplotlib as mpl

from ..errors import InputError

__all__ = ["Style", "current", "lecture_mode", "context", "finish", "figsize", "font_size"]


@dataclass(frozen=True)
class Style:
    """The style figures are drawn with.

    Attributes
    ----------
    lecture : bool
        Whether lecture mode is on.
    scale : float
        How much larger type and lines are than the user's matplotlib style (1.0 when off).
    base : dict
        The user's rcParams that lecture mode scales, as they were when it was switched on
        (empty when off: the live rcParams are used).
    """

    lecture: bool = False
    scale: float = 1.0
    base: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def _base(self, key: str) -> float:
        return float(self.base.get(key, mpl.rcParams[key]))

    @property
    def font_size(self) -> float:
        """Base font size in points: ``rcParams["font.size"] × scale``."""
        return self._base("font.size") * self.scale

    @property
    def line_width(self) -> float:
        """Line width in points: ``rcParams["lines.linewidth"] × scale``."""
        return self._base("lines.linewidth") * self.scale

    @property
    def figure_scale(self) -> float:
        """Figures grow with the type (half as fast) so that large labels still fit."""
        return 1.0 + 0.5 * (self.scale - 1.0)

    def rc(self) -> dict[str, Any]:
        """The rcParams of this style (empty when lecture mode is off: the user's own)."""
        if not self.lecture:
            return {}
        s = self.scale
        rc = self._base
        black = "black"
        return {
            "font.size": self.font_size,
            "axes.titlesize": "large",
            "axes.titleweight": "bold",
            "axes.labelsize": "medium",
            "axes.labelweight": "bold",
            "figure.titlesize": "x-large",
            "figure.titleweight": "bold",
            "xtick.labelsize": "medium",
            "ytick.labelsize": "medium",
            "legend.fontsize": "medium",
            "lines.linewidth": self.line_width,
            "lines.markersize": rc("lines.markersize") * s,
            "axes.linewidth": rc("axes.linewidth") * s,
            "patch.linewidth": rc("patch.linewidth") * s,
            "xtick.major.width": rc("xtick.major.width") * s,
            "ytick.major.width": rc("ytick.major.width") * s,
            "xtick.major.size": rc("xtick.major.size") * s,
            "ytick.major.size": rc("ytick.major.size") * s,
            "text.color": black,
            "axes.labelcolor": black,
            "axes.edgecolor": black,
            "xtick.color": black,
            "ytick.color": black,
            "axes.facecolor": "white",
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "legend.framealpha": 1.0,
            "legend.edgecolor": black,
            "axes.grid": False,
        }


_SCALED = (
    "font.size",
    "lines.linewidth",
    "lines.markersize",
    "axes.linewidth",
    "patch.linewidth",
    "xtick.major.width",
    "ytick.major.width",
    "xtick.major.size",
    "ytick.major.size",
)
"""The rcParams lecture mode multiplies by its scale."""

_current = Style()


def current() -> Style:
    """The style figures are drawn with now (read by widgets to size their text).

    >>> current().scale
    1.0
    """
    return _current


class lecture_mode:  # noqa: N801  (used like a function: lecture_mode(), lecture_mode(False))
    """Switch lecture mode on (or off): large type, thick lines, high contrast.

    One call changes every lrp_tutor figure drawn afterwards; ``lecture_mode(False)``
    restores the normal style. As a context manager it applies only inside the block and
    then restores whatever style was in force before.

    Parameters
    ----------
    on : bool, default True
        Lecture mode on or off.
    scale : float, default 1.8
        Type and line widths are multiplied by this factor (> 0).

    Examples
    --------
    >>> lecture_mode(scale=1.5)
    Lecture mode on: type and lines ×1.5 (lecture_mode(False) turns it off).
    >>> lecture_mode(False)
    Lecture mode off.
    """

    def __init__(self, on: bool = True, scale: float = 1.8) -> None:
        global _current
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
            raise InputError(f"lecture_mode: scale must be a number > 0, got {scale!r}.")
        self._previous = _current
        if on:
            base = {key: mpl.rcParams[key] for key in _SCALED}
            _current = Style(lecture=True, scale=float(scale), base=base)
        else:
            _current = Style()
        self.style = _current

    def __enter__(self) -> Style:
        return self.style

    def __exit__(self, *exc_info: object) -> None:
        global _current
        _current = self._previous

    def __repr__(self) -> str:
        if self.style.lecture:
            return (
                f"Lecture mode on: type and lines ×{self.style.scale:g} "
                "(lecture_mode(False) turns it off)."
            )
        return "Lecture mode off."


@contextmanager
def context() -> Iterator[Style]:
    """Draw inside this block to use the current style's rcParams."""
    style = current()
    with mpl.rc_context(style.rc()):
        try:
            yield style
        finally:
            # The first figure of a Jupyter session switches matplotlib to interactive
            # (inline) mode; rc_context would undo that on exit and hide later figures.
            interactive = mpl.is_interactive()
    mpl.interactive(interactive)


def finish(fig: Any) -> Any:
    """Fix the style on ticks matplotlib creates later, outside :func:`context`; return fig."""
    style = current()
    if style.lecture:
        size = style.font_size
        width = style._base("xtick.major.width") * style.scale
        length = style._base("xtick.major.size") * style.scale
        for ax in fig.axes:
            ax.tick_params(
                which="major", labelsize=size, width=width, length=length, colors="black"
            )
    return fig


def figsize(width: float, height: float) -> tuple[float, float]:
    """A figure size in inches, grown for lecture mode."""
    k = current().figure_scale
    return (width * k, height * k)


def font_size(relative: float = 1.0) -> float:
    """A font size in points, ``relative`` to the current base size (for annotations)."""
    return current().font_size * relative
