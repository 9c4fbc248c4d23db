"""Save a figure to a file (terminal runs, the Agg backend, lecture slides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ..errors import InputError

__all__ = ["save"]


def save(fig: Figure, path: str | Path, *, dpi: float = 150, close: bool = False) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .pdf, .svg); return the path.

    Missing folders are created; the margins are trimmed (``bbox_inches="tight"``) and the
    background is white.

    Parameters
    ----------
    fig : Figure
        What a figure function returned.
    path : str or Path
        Where to write, e.g. ``"figures/heatmap.png"``.
    dpi : float, default 150
        Resolution of raster formats.
    close : bool, default False
        Free the figure's memory afterwards (in long loops).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from lrp_tutor.viz import heatmap
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save(heatmap(np.eye(4)), f"{folder}/eye.png").name
    'eye.png'
    """
    if not isinstance(fig, Figure):
        raise InputError(f"save needs a matplotlib Figure, got {type(fig).__name__}.")
    path = Path(path)
    if not path.suffix:
        raise InputError(f"path {str(path)!r} has no suffix; add one, e.g. '.png' or '.pdf'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    if close:
        _close(fig)
    return path


def _close(fig: Any) -> None:
    fig.clear()
