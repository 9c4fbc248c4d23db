r"""The conservation ledger as a waterfall, from the output down to the input.

The top row is the relevance the explanation starts with, :math:`\sum_j R_j = f_c(x)` at the
last layer. Each layer below it is one row:

.. math::

    \underbrace{\sum_j R_j}_{\text{arrives}} =
    \underbrace{\sum_i R_i}_{\text{passed on (grey)}} +
    \underbrace{\text{bias}}_{\text{orange}} + \underbrace{\text{stabiliser}}_{\text{green}}

so the grey bar of a layer ends where the next layer's row starts. The bottom row is what
reaches the input, :math:`\sum_i R_i`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from ..ledger import Ledger, LedgerEntry
from . import style
from ._axes import axes, number

__all__ = ["ledger_waterfall", "COLORS"]

COLORS = {
    "total": "#b2182b",
    "passed": "#9e9e9e",
    "bias": "#e69f00",
    "stabilizer": "#009e73",
    "residual": "#000000",
}
"""Colours of the waterfall: totals, what a layer passed on, bias, stabiliser, residual."""

LABELS = {
    "total": "total relevance",
    "passed": "passed on $\\Sigma_i R_i$",
    "bias": "absorbed by the bias",
    "stabilizer": "absorbed by ε (stabiliser)",
    "residual": "unaccounted (conservation violated!)",
}


def _entries(ledger: Any) -> list[LedgerEntry]:
    if isinstance(ledger, Ledger):
        entries = list(ledger)
    elif isinstance(ledger, list | tuple) and all(isinstance(e, LedgerEntry) for e in ledger):
        entries = list(ledger)
    else:
        entries = list(getattr(ledger, "ledger", None) or [])  # an Explanation
        if not entries:
            raise InputError(
                "ledger must be a lrp_tutor.ledger.Ledger (e.g. explanation.ledger), got "
                f"{type(ledger).__name__}."
            )
    if not entries:
        raise InputError("The ledger is empty: it has no layers to show.")
    return entries


def ledger_waterfall(
    ledger: Any,
    *,
    ax: Axes | None = None,
    sample: int = 0,
    title: str | None = None,
    tolerance: float = 1e-10,
) -> Figure:
    r"""Where the relevance goes, layer by layer, from :math:`f_c(x)` down to the input.

    Parameters
    ----------
    ledger : Ledger
        The conservation ledger of an explanation (``explanation.ledger``), forward order.
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    sample : int, default 0
        Which sample of the batch to show.
    title : str, optional
        Default "where the relevance goes (sample k)".
    tolerance : float, default 1e-10
        A residual :math:`\sum R_{out} - \sum R_{in} - \text{absorbed}` larger than this
        (relative to :math:`\max(1, |\sum R_{out}|)`) is drawn as a black bar.

    Returns
    -------
    Figure
        Horizontal bars labelled ``"total"``, ``"passed"``, ``"bias"``, ``"stabilizer"``
        (and ``"residual"`` when the books do not balance).

    Examples
    --------
    >>> from lrp_tutor.ledger import Ledger, LedgerEntry
    >>> ledger = Ledger([LedgerEntry("0 (Linear)", 1.0, 0.7, 0.2, 0.1)])
    >>> fig = ledger_waterfall(ledger)
    >>> [float(p.get_width()) for p in fig.axes[0].containers[1]]  # passed on
    [0.7]
    """
    entries = _entries(ledger)
    batch = max(e.relevance_out.size for e in entries)
    if not isinstance(sample, int | np.integer) or not -batch <= sample < batch:
        raise InputError(
            f"sample must be an integer index into the batch of {batch}, got {sample!r}."
        )
    top_down = entries[::-1]

    def at(values: np.ndarray) -> float:  # a layer may book one number for the whole batch
        return float(values[sample] if values.size > 1 else values[0])

    r_out = np.array([at(e.relevance_out) for e in top_down])
    r_in = np.array([at(e.relevance_in) for e in top_down])
    bias = np.array([at(e.bias) for e in top_down])
    stab = np.array([at(e.stabilizer) for e in top_down])
    residual = r_out - r_in - bias - stab
    n = len(entries)

    # Rows from the top: the output total, one row per layer (top layer first), the input total.
    rows = np.arange(n + 2)[::-1].astype(float)  # y: output at the top
    y_out, y_layers, y_in = rows[0], rows[1:-1], rows[-1]
    names = [e.layer for e in top_down]

    with style.context():
        st = style.current()
        own_figure = ax is None
        fig, ax = axes(ax, 7.5, max(2.8, 0.42 * (n + 2) + 1.6))
        height = 0.62
        edge = {"edgecolor": "black", "linewidth": 0.5 * st.scale}
        ax.barh(
            [y_out, y_in],
            [r_out[0], r_in[-1]],
            height=height,
            color=COLORS["total"],
            **edge,
        ).set_label("total")
        ax.barh(y_layers, r_in, height=height, color=COLORS["passed"], **edge).set_label("passed")
        ax.barh(y_layers, bias, left=r_in, height=height, color=COLORS["bias"], **edge).set_label(
            "bias"
        )
        ax.barh(
            y_layers, stab, left=r_in + bias, height=height, color=COLORS["stabilizer"], **edge
        ).set_label("stabilizer")
        broken = np.abs(residual) > tolerance * np.maximum(1.0, np.abs(r_out))
        if broken.any():
            ax.barh(
                y_layers,
                np.where(broken, residual, 0.0),
                left=r_in + bias + stab,
                height=height,
                color=COLORS["residual"],
                hatch="//",
                **edge,
            ).set_label("residual")

        # Dotted connectors: what a layer passes on is what arrives at the layer below it.
        ends = np.concatenate([[r_out[0]], r_in])
        for k in range(n + 1):
            ax.plot(
                [ends[k], ends[k]],
                [rows[k] - height / 2, rows[k + 1] + height / 2],
                ":",
                color="black",
                linewidth=0.8 * st.scale,
            )
        ax.axvline(0.0, color="black", linewidth=0.8 * st.scale)

        # The numbers, in a column right of the axes (constrained layout makes room).
        lo = float(min(0.0, np.min(ends), np.min(r_out), np.min(r_in + bias)))
        hi = float(max(0.0, np.max(ends), np.max(r_out), np.max(r_in + bias)))
        span = (hi - lo) or 1.0
        size = style.font_size(0.8)
        margin = ax.get_yaxis_transform()  # x in axes fractions, y in data

        def note(y: float, text: str) -> None:
            ax.text(1.02, y, text, transform=margin, va="center", fontsize=size, clip_on=False)

        note(y_out, f"$f_c(x)$ = {number(r_out[0])}")
        note(y_in, f"$\\Sigma_i R_i$ = {number(r_in[-1])}")
        for k in range(n):
            parts = [f"passes {number(r_in[k])}"]
            if bias[k] != 0.0:
                parts.append(f"bias {number(bias[k])}")
            if stab[k] != 0.0:
                parts.append(f"ε {number(stab[k])}")
            if broken[k]:
                parts.append(f"MISSING {number(residual[k])}")
            note(y_layers[k], ",  ".join(parts))
        ax.set_xlim(lo - 0.05 * span, hi + 0.05 * span)
        ax.set_ylim(-0.7, n + 1.7)
        ax.set_yticks(rows, ["output  $f_c(x)$", *names, "input"])
        ax.set_xlabel("relevance  $\\Sigma R$")
        ax.set_title(
            title if title is not None else f"where the relevance goes (sample {int(sample)})"
        )
        handles = list(ax.containers)  # total, passed, bias, stabilizer (, residual)
        names = [LABELS[c.get_label()] for c in handles]
        if own_figure:  # below the axes, where constrained layout makes room for it
            fig.legend(handles, names, loc="outside lower center", ncols=2, frameon=False)
        else:
            ax.legend(handles, names, loc="lower right", fontsize=style.font_size(0.8))
    return style.finish(fig)
