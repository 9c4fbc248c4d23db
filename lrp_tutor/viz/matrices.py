r"""The message matrix :math:`R_{i \leftarrow j}` beside the contributions :math:`z_{ij}`.

Rows are the layer's inputs *i*, columns its outputs *j*. Each matrix has its own symmetric
colour scale, so that white is zero in both. Small matrices (at most 8 × 8) carry their
numbers in the cells and their sums in the margins: :math:`\sum_i z_{ij}` (what neuron *j*
receives before its bias) and :math:`R_i = \sum_j R_{i \leftarrow j}` (what input *i*
collects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import matrix, symmetric_limit
from ._axes import (
    colormap,
    new_figure,
    number,
    relevance_colorbar,
    root_figure,
    symmetric_norm,
    text_color,
)

__all__ = ["messages", "ANNOTATE_MAX"]

ANNOTATE_MAX = 8
"""Matrices with at most this many rows and columns get their numbers written in the cells."""


def messages(
    z_ij: Any,
    messages: Any,
    *,
    ax: Axes | Sequence[Axes] | None = None,
    title: str | None = None,
    input_labels: Sequence[str] | None = None,
    output_labels: Sequence[str] | None = None,
    annotate: bool | None = None,
    cmap: Any = "bwr",
) -> Figure:
    r"""Contributions :math:`z_{ij}` and messages :math:`R_{i \leftarrow j}` side by side.

    .. math::

        z_{ij} = x_i\,w_{ij}, \qquad
        R_{i \leftarrow j} = \frac{z_{ij}}{\mathrm{stab}(z_j)}\,R_j, \qquad
        R_i = \sum_j R_{i \leftarrow j}

    Parameters
    ----------
    z_ij : array or tensor, shape (n_in, n_out) or (n_in,), or None
        The forward contributions (a 1-D array: one output neuron *j*). ``None`` draws the
        messages alone.
    messages : array or tensor, same shape as ``z_ij``
        :math:`R_{i \leftarrow j}`.
    ax : Axes or pair of Axes, optional
        Two axes (for :math:`z_{ij}` and :math:`R_{i \leftarrow j}`); one axes of a grid
        (e.g. from ``plt.subplots``) is replaced by two panels in its cell; with ``z_ij``
        None, the axes for the messages. By default a new figure.
    title : str, optional
        A title over both panels.
    input_labels, output_labels : sequence of str, optional
        Names of the inputs *i* (rows) and outputs *j* (columns); default their indices.
    annotate : bool, optional
        Write the numbers into the cells; default when both sides are ≤ 8.
    cmap : str or Colormap, default "bwr"

    Returns
    -------
    Figure

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[1.0, -0.5], [2.0, 0.5]])
    >>> R = np.array([[0.2, -0.1], [0.4, 0.1]])
    >>> fig = messages(z, R)
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['contributions $z_{ij}$', 'messages $R_{i \\leftarrow j}$']
    """
    M = matrix(messages, "messages")
    Z = None if z_ij is None else matrix(z_ij, "z_ij")
    if Z is not None and Z.shape != M.shape:
        raise InputError(
            f"z_ij has shape {Z.shape} but messages has shape {M.shape}; both are "
            "(inputs i, outputs j) of the same layer."
        )
    n_in, n_out = M.shape
    _check_labels(input_labels, n_in, "input_labels", "rows (inputs i)")
    _check_labels(output_labels, n_out, "output_labels", "columns (outputs j)")
    if annotate is None:
        annotate = n_in <= ANNOTATE_MAX and n_out <= ANNOTATE_MAX
    cmap = colormap(cmap)
    panels = 1 if Z is None else 2

    with style.context():
        fig, axes = _panels(ax, panels, n_in, n_out, annotate)
        common = {
            "annotate": annotate,
            "input_labels": input_labels,
            "output_labels": output_labels,
            "cmap": cmap,
        }
        if Z is not None:
            _panel(
                fig,
                axes[0],
                Z,
                title="contributions $z_{ij}$",
                column_sum="$\\Sigma_i z_{ij}$",
                row_sum=None,
                cbar_label="$z_{ij} = x_i w_{ij}$",
                gid="z_ij",
                **common,
            )
        _panel(
            fig,
            axes[-1],
            M,
            title="messages $R_{i \\leftarrow j}$",
            column_sum="$\\Sigma_i R_{i \\leftarrow j}$",
            row_sum="$R_i$",
            cbar_label="relevance",
            gid="messages",
            **common,
        )
        if title:
            if ax is None:
                fig.suptitle(title)
            else:
                axes[-1].set_title(f"{title}\n{axes[-1].get_title()}")
    return style.finish(fig)


def _check_labels(labels: Sequence[str] | None, n: int, name: str, what: str) -> None:
    if labels is not None and len(labels) != n:
        raise InputError(f"{name} has {len(labels)} names but the matrix has {n} {what}.")


def _panels(
    ax: Any, panels: int, n_in: int, n_out: int, annotate: bool
) -> tuple[Figure, list[Axes]]:
    if ax is None:
        width = max(3.0, 0.62 * n_out + 2.4) if annotate else 5.0
        height = max(2.6, 0.5 * n_in + 1.6) if annotate else 4.2
        fig = new_figure(width * panels, height)
        return fig, list(fig.subplots(1, panels, squeeze=False)[0])
    given = [ax] if isinstance(ax, Axes) else list(ax)
    if len(given) == 1 and panels == 2 and isinstance(given[0], Axes):
        spec = given[0].get_subplotspec()
        if spec is not None:  # split a grid cell into two panels, side by side
            parent = given[0].figure
            given[0].remove()
            cells = spec.subgridspec(1, 2, wspace=0.15)
            given = [parent.add_subplot(cells[0]), parent.add_subplot(cells[1])]
    if len(given) != panels or not all(isinstance(a, Axes) for a in given):
        need = "two axes (one for z_ij, one for the messages)" if panels == 2 else "one axes"
        if panels == 2 and len(given) == 1:
            need += " or an axes in a grid (from plt.subplots)"
        raise InputError(
            f"ax must be {need}; got {len(given)}. Pass z_ij=None to draw the messages alone."
        )
    return root_figure(given[0]), given


def _panel(
    fig: Figure,
    ax: Axes,
    values: np.ndarray,
    *,
    title: str,
    column_sum: str | None,
    row_sum: str | None,
    cbar_label: str,
    gid: str,
    annotate: bool,
    input_labels: Sequence[str] | None,
    output_labels: Sequence[str] | None,
    cmap: Any,
) -> None:
    n_in, n_out = values.shape
    limit = symmetric_limit(values)
    im = ax.imshow(values, cmap=cmap, norm=symmetric_norm(limit), aspect="auto")
    im.set_gid(gid)
    ax.set_title(title)
    ax.set_xlabel("output neuron $j$")
    ax.set_ylabel("input neuron $i$")
    if n_out <= 24:
        ax.set_xticks(range(n_out), output_labels or [str(j) for j in range(n_out)])
    if n_in <= 24:
        ax.set_yticks(range(n_in), input_labels or [str(i) for i in range(n_in)])
    if annotate:
        size = style.font_size(0.9 if max(n_in, n_out) <= 5 else 0.75)
        for i in range(n_in):
            for j in range(n_out):
                v = values[i, j]
                ax.text(
                    j,
                    i,
                    number(v),
                    ha="center",
                    va="center",
                    fontsize=size,
                    color=text_color(v, limit),
                    gid="cell",
                )
        # Margins: column sums on top, row sums on the right (only where they teach something).
        if column_sum:
            top = ax.secondary_xaxis("top")
            top.set_xticks(range(n_out), [number(s) for s in values.sum(axis=0)])
            top.set_xlabel(column_sum)
            top.tick_params(length=0)
        if row_sum:
            right = ax.secondary_yaxis("right")
            right.set_yticks(range(n_in), [number(s) for s in values.sum(axis=1)])
            right.set_ylabel(row_sum, rotation=0, labelpad=12, va="center")
            right.tick_params(length=0)
    relevance_colorbar(fig, im, ax, limit, label=cbar_label)
