r"""The relevance-flow diagram of a small network, as drawn in the LRP papers.

Neurons are circles in columns (input on the left, output on the right) coloured by their
relevance :math:`R_i`; every non-zero message :math:`R_{i \leftarrow j}` is a line from
neuron *j* back to neuron *i* whose width grows with :math:`|R_{i \leftarrow j}|` and whose
colour gives its sign (red +, blue −). Relevance flows from the right to the left:

.. math::

    R_i = \sum_j R_{i \leftarrow j}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import to_numpy, vector
from ._axes import axes, colormap, number, relevance_colorbar, symmetric_norm, text_color

__all__ = ["relevance_flow", "edge_widths"]

LABEL_BOX = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}

UNKNOWN = "#c8c8c8"
"""Face colour of neurons whose relevance was not given (the output layer by default): grey,
which the colormap does not contain, so that it is not read as zero (white); they show "?"."""


def edge_widths(magnitudes: np.ndarray, limit: float, *, thin: float, thick: float) -> np.ndarray:
    r"""Line widths growing linearly with :math:`|R_{i \leftarrow j}|`, from ``thin`` to ``thick``.

    >>> edge_widths(np.array([0.0, 0.5, 1.0]), 1.0, thin=1.0, thick=3.0)
    array([1., 2., 3.])
    """
    return thin + (thick - thin) * np.clip(magnitudes / limit, 0.0, 1.0)


def _edge_colors(values: np.ndarray, limit: float, cmap: Any) -> np.ndarray:
    # Sign by hue; magnitude by saturation, never fainter than 35 % so that thin edges show.
    strength = 0.35 + 0.65 * np.clip(np.abs(values) / limit, 0.0, 1.0)
    return cmap(0.5 + 0.5 * np.sign(values) * strength)


def _layers(
    activations: Sequence[Any], messages: Sequence[Any], relevances: Sequence[Any] | None
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None]]:
    if isinstance(activations, np.ndarray) or not isinstance(activations, Sequence):
        raise InputError(
            "activations must be a list with one 1-D array per layer (input first), got "
            f"{type(activations).__name__}."
        )
    acts = [vector(a, f"activations[{k}]") for k, a in enumerate(activations)]
    if len(acts) < 2:
        raise InputError("activations needs at least two layers (an input and an output).")
    if isinstance(messages, np.ndarray) or not isinstance(messages, Sequence):
        raise InputError(
            "messages must be a list with one 2-D array (n_in, n_out) per weighted layer, got "
            f"{type(messages).__name__}."
        )
    if len(messages) != len(acts) - 1:
        raise InputError(
            f"messages has {len(messages)} matrices but {len(acts)} layers need "
            f"{len(acts) - 1} (one between each pair of consecutive layers)."
        )
    msgs = []
    for k, m in enumerate(messages):
        m = to_numpy(m, f"messages[{k}]")
        expected = (acts[k].size, acts[k + 1].size)
        if m.shape != expected:
            raise InputError(
                f"messages[{k}] has shape {m.shape} but layers {k} and {k + 1} have "
                f"{expected[0]} and {expected[1]} neurons: expected (n_in, n_out) = {expected}."
            )
        msgs.append(m)
    if relevances is None:
        # R_i = Σ_j R_{i←j}: what each neuron collects; the output layer's R_j is not known.
        rels: list[np.ndarray | None] = [m.sum(axis=1) for m in msgs]
        rels.append(None)
    else:
        if len(relevances) != len(acts):
            raise InputError(
                f"relevances has {len(relevances)} arrays but there are {len(acts)} layers."
            )
        rels = []
        for k, r in enumerate(relevances):
            r = vector(r, f"relevances[{k}]")
            if r.size != acts[k].size:
                raise InputError(
                    f"relevances[{k}] has {r.size} values but layer {k} has {acts[k].size} neurons."
                )
            rels.append(r)
    return acts, msgs, rels


def relevance_flow(
    activations: Sequence[Any],
    messages: Sequence[Any],
    relevances: Sequence[Any] | None = None,
    *,
    ax: Axes | None = None,
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: Any = "bwr",
) -> Figure:
    r"""Draw a small network with its neurons' relevance and the messages between them.

    Parameters
    ----------
    activations : list of arrays, one 1-D array per layer (input first)
        The activations :math:`x_i` (input) and :math:`a_j` (the layers above); their lengths
        fix the number of neurons, their values are written above the neurons.
    messages : list of arrays, one (n_in, n_out) array per weighted layer
        :math:`R_{i \leftarrow j}` between layer *k* (rows) and layer *k + 1* (columns).
    relevances : list of 1-D arrays, optional
        :math:`R_i` of every layer (input first), e.g. with the seed :math:`R_c = f_c(x)` at
        the output. By default :math:`R_i = \sum_j R_{i \leftarrow j}` below the top layer
        and grey neurons marked "?" (relevance not given) at the top.
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    layer_names : sequence of str, optional
        Default "input", "hidden 1", …, "output".
    title : str, optional
        Default "relevance flow".
    annotate : bool, optional
        Write :math:`R_i` in the neurons and the activations above them; default when no
        layer has more than 10 neurons.
    cmap : str or Colormap, default "bwr"

    Returns
    -------
    Figure
        The messages are one LineCollection (gid ``"messages"``), drawn from the weakest to
        the strongest; the neurons of layer *k* a PathCollection with gid ``"neurons k"``.

    Examples
    --------
    >>> import numpy as np
    >>> acts = [np.array([1.0, 2.0]), np.array([0.5])]
    >>> fig = relevance_flow(acts, [np.array([[0.2], [0.3]])], [[0.2, 0.3], [0.5]])
    >>> len(fig.axes[0].collections[0].get_segments())
    2
    """
    acts, msgs, rels = _layers(activations, messages, relevances)
    L = len(acts)
    if layer_names is None:
        layer_names = ["input", *[f"hidden {k}" for k in range(1, L - 1)], "output"]
    elif len(layer_names) != L:
        raise InputError(f"layer_names has {len(layer_names)} names but there are {L} layers.")
    widest = max(a.size for a in acts)
    if annotate is None:
        annotate = widest <= 10
    cmap = colormap(cmap)

    # Node positions: layer k at x = k, its neurons top to bottom, centred on y = 0.
    ys = [(a.size - 1) / 2.0 - np.arange(a.size) for a in acts]

    # Edges: one per non-zero message, weakest first so that the strong ones lie on top.
    segments, values = [], []
    for k, m in enumerate(msgs):
        for i, j in zip(*np.nonzero(m), strict=True):
            segments.append([(k, ys[k][i]), (k + 1, ys[k + 1][j])])
            values.append(m[i, j])
    values_arr = np.array(values, dtype=np.float64)
    order = np.argsort(np.abs(values_arr), kind="stable")
    edge_limit = float(np.abs(values_arr).max()) if values_arr.size else 1.0

    known = [r for r in rels if r is not None]
    node_limit = float(max(np.abs(r).max() for r in known)) if known else 1.0
    node_limit = node_limit or 1.0
    norm = symmetric_norm(node_limit)

    with style.context():
        st = style.current()
        fig, ax = axes(ax, 2.4 * (L - 1) + 3.0, max(3.2, 0.7 * widest + 1.6))
        lines = LineCollection(
            [segments[o] for o in order],
            linewidths=edge_widths(
                np.abs(values_arr[order]), edge_limit, thin=0.6 * st.scale, thick=7.0 * st.scale
            ),
            colors=_edge_colors(values_arr[order], edge_limit, cmap) if values else "black",
            zorder=1,
            capstyle="round",
        )
        lines.set_gid("messages")
        ax.add_collection(lines)

        diameter = (26.0 if widest <= 10 else 14.0) * st.scale
        for k, (a, r) in enumerate(zip(acts, rels, strict=True)):
            faces = cmap(norm(r)) if r is not None else UNKNOWN
            dots = ax.scatter(
                np.full(a.size, k),
                ys[k],
                s=diameter**2,
                c=faces,
                edgecolors="black",
                linewidths=0.8 * st.scale,
                zorder=3,
            )
            dots.set_gid(f"neurons {k}")
            if annotate:
                for i in range(a.size):
                    ax.text(
                        k,
                        ys[k][i],
                        "?" if r is None else number(r[i], 2),
                        ha="center",
                        va="center",
                        fontsize=style.font_size(0.7),
                        color="black" if r is None else text_color(r[i], node_limit),
                        zorder=4,
                        gid=f"R {k} {i}",
                    )
                    name = "x" if k == 0 else "a"
                    ax.annotate(
                        f"{name}={number(a[i])}",
                        (k, ys[k][i]),
                        xytext=(0, diameter / 2 + 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=style.font_size(0.65),
                        color="#333333",
                        zorder=4,
                        bbox=LABEL_BOX,
                    )
        bottom = -(widest - 1) / 2.0 - 0.9
        for k, name in enumerate(layer_names):
            ax.text(k, bottom, name, ha="center", va="top", fontweight="bold")
        ax.set_xlim(-0.5, L - 0.5)
        ax.set_ylim(bottom - 0.5, (widest - 1) / 2.0 + 0.8)
        ax.set_axis_off()
        ax.set_title("relevance flow" if title is None else title)
        ax.text(
            0.5,
            -0.02,
            "edges: messages $R_{i \\leftarrow j}$, width ∝ $|R_{i \\leftarrow j}|$  "
            "(relevance flows right → left)",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=style.font_size(0.8),
        )
        mappable = ScalarMappable(norm=norm, cmap=cmap)
        relevance_colorbar(
            fig, mappable, ax, node_limit, label="relevance $R_i$ (neurons)", shrink=0.7
        )
    return style.finish(fig)
