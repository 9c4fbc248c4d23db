"""Lecture mode for widgets: one ``scale`` sizes the controls' text and the figures.

A widget built with ``scale=None`` follows :func:`lrp_tutor.viz.style.current`: its text is
sized from the current style when it is built, and its figures are drawn in whatever style is
in force when they are drawn (so ``viz.lecture_mode()`` before a redraw enlarges them). A
widget built with ``scale=s`` keeps that size: text ×s, and figures drawn inside
``viz.lecture_mode(scale=s)`` (or the normal style when ``s == 1``).

Only standard ipywidgets styles are used (``style.font_size`` of labels, HTML and buttons,
``layout`` sizes), so that the widgets look the same in JupyterLab and in Voila.

>>> look = Look(2.0)
>>> look.px(14)
'28px'
>>> look.lecture
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import ipywidgets as w

from ..errors import InputError
from ..viz import style

__all__ = ["Look", "BASE_FONT_PX"]

BASE_FONT_PX = 14.0
"""The text size of the widgets' labels at scale 1 (JupyterLab's own is 13 px)."""


class Look:
    """The size of one widget's text, controls and figures.

    Parameters
    ----------
    scale : float or None
        ``None`` follows :func:`lrp_tutor.viz.style.current`; a number > 0 fixes the size.
    """

    def __init__(self, scale: float | None = None) -> None:
        if scale is not None and (
            isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0
        ):
            raise InputError(
                f"scale must be a number > 0 (e.g. 1.8 for a lecture hall) or None to follow "
                f"lrp_tutor.viz.lecture_mode(), got {scale!r}."
            )
        self.fixed = None if scale is None else float(scale)
        current = style.current()
        self.scale = self.fixed if self.fixed is not None else current.scale
        self.lecture = self.scale != 1.0 or (self.fixed is None and current.lecture)

    def px(self, size: float = BASE_FONT_PX) -> str:
        """A CSS size in pixels, ``size × scale``."""
        return f"{size * self.scale:.0f}px"

    @contextmanager
    def drawing(self) -> Iterator[style.Style]:
        """Draw figures inside this block to give them this widget's size."""
        if self.fixed is None:
            yield style.current()
        elif self.fixed == 1.0:
            with style.lecture_mode(False) as drawn:
                yield drawn
        else:
            with style.lecture_mode(True, scale=self.fixed) as drawn:
                yield drawn

    # ---- controls ---------------------------------------------------------------------
    def label(self, text: str = "", *, bold: bool = False, width: str | None = None) -> w.Label:
        """A text label sized for this look."""
        label = w.Label(text)
        label.style.font_size = self.px()
        if bold or self.lecture:
            label.style.font_weight = "bold"
        if width is not None:
            label.layout.width = width
        return label

    def html(self, value: str = "", *, size: float = BASE_FONT_PX) -> w.HTML:
        """An HTML text sized for this look."""
        box = w.HTML(value)
        box.style.font_size = self.px(size)
        return box

    def button(self, description: str, tooltip: str, *, width: float = 110) -> w.Button:
        """A button with large type in lecture mode (focus it with Tab, press it with Enter)."""
        button = w.Button(description=description, tooltip=tooltip)
        button.style.font_size = self.px()
        button.style.font_weight = "bold"
        button.layout.height = self.px(32)
        button.layout.width = self.px(width)
        return button

    def control(
        self, text: str, control: w.Widget, *, width: float | None = 320, label_width: float = 90
    ) -> w.HBox:
        """``[label | control]`` in a row: the label carries the (large) text; the control's
        own description (small in every front-end) stays empty. ``width=None`` leaves the
        control its own width (a row of buttons)."""
        if width is not None:
            control.layout.width = self.px(width)
        row = w.HBox([self.label(text, width=self.px(label_width)), control])
        row.layout.align_items = "center"
        return row

    def image(self) -> w.Image:
        """An empty PNG image widget, shown whole: at its natural size, or scaled down in its
        proportions to the width there is (never cropped, never enlarged).

        The front-ends give every widget a margin of 2 px; with ``max-width: 100%`` that
        margin would push a wide picture 2 px past its box, which then scrolls and hides the
        picture's edge and bottom behind scroll bars. So the picture has no margin, and it
        does not stretch to the width of a column (``align-self``), which would enlarge it.
        """
        return w.Image(
            format="png",
            layout=w.Layout(max_width="100%", height="auto", margin="0", align_self="flex-start"),
        )
