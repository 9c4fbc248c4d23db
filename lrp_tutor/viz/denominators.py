r"""How the stabiliser moves each denominator: :math:`z_j \to \mathrm{stab}(z_j)`.

With :math:`\mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z)` every denominator is pushed
away from zero by ε. A neuron with a large :math:`|z_j|` hardly notices; a weakly activated
one (:math:`|z_j| \lesssim \varepsilon`) passes on only the share
:math:`z_j / \mathrm{stab}(z_j)` of its relevance; ε absorbs the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._arrays import vector
from ._axes import axes, number

__all__ = ["stabilization"]

BEFORE = "#444444"
AFTER = "#e07b00"


def stabilization(
    z_j: Any,
    stabilized: Any,
    *,
    ax: Axes | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    epsilon: float | None = None,
) -> Figure:
    r"""One row per neuron *j*: an arrow from :math:`z_j` to :math:`\mathrm{stab}(z_j)`.

    The right margin gives :math:`z_j / \mathrm{stab}(z_j)`, the share of :math:`R_j` that
    the stabiliser leaves to the messages.

    Parameters
    ----------
    z_j : array or tensor, shape (n,)
        The denominators before stabilisation.
    stabilized : array or tensor, shape (n,)
        :math:`\mathrm{stab}(z_j)`, e.g. ``rule.parts[0].stabilize(z_j)``.
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    labels : sequence of str, optional
        Names of the neurons (default ``j = 0 … n−1``).
    title : str, optional
        Default "stabiliser: z_j → stab(z_j)".
    epsilon : float, optional
        Shade the band :math:`|z| < \varepsilon` where the stabiliser dominates.

    Returns
    -------
    Figure

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([2.0, 0.1, -0.05])
    >>> fig = stabilization(z, z + 0.25 * np.where(z >= 0, 1.0, -1.0), epsilon=0.25)
    >>> fig.axes[0].get_xlabel()
    'denominator'
    """
    z = vector(z_j, "z_j")
    s = vector(stabilized, "stabilized")
    if z.shape != s.shape:
        raise InputError(
            f"z_j has {z.size} values but stabilized has {s.size}; pass both for the same "
            "neurons j."
        )
    n = z.size
    if labels is not None and len(labels) != n:
        raise InputError(f"labels has {len(labels)} names but z_j has {n} neurons.")
    ratio = np.divide(z, s, out=np.zeros_like(z), where=s != 0)
    y = np.arange(n)
    with style.context():
        st = style.current()
        fig, ax = axes(ax, 5.6, max(2.4, 0.38 * min(n, 30) + 1.4))
        if epsilon is not None:
            ax.axvspan(-epsilon, epsilon, color="#dddddd", zorder=0, label="$|z| < \\varepsilon$")
        ax.axvline(0.0, color="black", linewidth=st.line_width * 0.6, zorder=1)
        for row, (before, after) in enumerate(zip(z, s, strict=True)):
            ax.annotate(
                "",
                xy=(after, row),
                xytext=(before, row),
                arrowprops={
                    "arrowstyle": "->",
                    "color": AFTER,
                    "lw": st.line_width,
                    "shrinkA": 3.5 * st.scale,  # start and end at the markers' edges
                    "shrinkB": 3.0 * st.scale,
                },
                zorder=2,
            )
        size = 7.0 * st.scale
        before = ax.plot(
            z, y, "o", mfc="white", mec=BEFORE, mew=st.line_width, ms=size, label="$z_j$"
        )[0]
        before.set_gid("z_j")
        after = ax.plot(s, y, "o", color=AFTER, ms=size * 0.8, label="stab$(z_j)$")[0]
        after.set_gid("stabilized")
        ax.set_ylim(n - 0.5, -0.5)
        if n <= 30:
            ax.set_yticks(y, labels if labels is not None else [f"j={j}" for j in range(n)])
            right = ax.secondary_yaxis("right")
            right.set_yticks(y, [number(r) for r in ratio])
            right.set_ylabel("share kept  $z_j/\\mathrm{stab}(z_j)$")
            right.tick_params(length=0)
        span = float(max(np.abs(z).max(), np.abs(s).max())) or 1.0
        low, high = min(0.0, z.min(), s.min()), max(0.0, z.max(), s.max())
        ax.set_xlim(low - 0.1 * span, high + 0.1 * span)
        ax.set_xlabel("denominator")
        ax.set_title(title if title is not None else "stabiliser: $z_j \\to \\mathrm{stab}(z_j)$")
        ax.legend(loc="best")
    return style.finish(fig)
