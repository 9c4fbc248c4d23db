"""What every widget has: ``.widget`` (the ipywidgets box), display, ``.figure``, ``.save``.

In Jupyter (JupyterLab, Voila) a widget shows itself when it is the last expression of a
cell, or with ``display(w)``. In a plain terminal run there is no front-end: ``print(w)``
says what it shows, and ``w.save("out.png")`` (or ``viz.save(w.figure, …)``) writes the
current figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from .. import viz
from ..errors import InputError
from ._look import Look

__all__ = ["WidgetShell"]


class WidgetShell:
    """Base class: holds ``widget`` (an ``ipywidgets.VBox``) and the look (lecture scale)."""

    widget: w.Widget
    look: Look

    @property
    def figure(self) -> Figure:
        """The widget's main figure as it is shown now (to save or show outside Jupyter)."""
        raise NotImplementedError

    def save(self, path: str | Path, *, dpi: float = 150) -> Path:
        """Write the current figure to ``path`` (``.png``, ``.pdf``, ``.svg``); return it."""
        figure = self.figure
        if figure is None:
            raise InputError(f"{type(self).__name__} shows no figure at the moment.")
        return viz.save(figure, path, dpi=dpi)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
