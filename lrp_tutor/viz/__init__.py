"""Figures for LRP: pure functions that draw what the stepper and the fast path computed.

Every function takes numpy arrays or torch tensors, returns a matplotlib ``Figure`` (or draws
into ``ax=``), never computes LRP and never calls ``plt.show()``. Relevance is always drawn
with a diverging colormap centred on zero (white) and a symmetric range: red is evidence for
the class, blue against it. ``lecture_mode()`` makes every figure readable from the back row.

A new figure is closed in pyplot as soon as it is made: Jupyter shows a figure that a cell
returns exactly once (``viz.heatmap(R)`` as the last line), ``fig = viz.heatmap(R)`` shows
nothing until ``fig`` is displayed, and ``viz.save(fig, "out.png")`` writes it in a terminal.

>>> import numpy as np
>>> import lrp_tutor.viz as viz
>>> fig = viz.heatmap(np.array([[0.5, -1.0], [0.0, 1.0]]))
>>> fig.axes[0].get_title()
'relevance $R_i$'

For transformers: ``token_heatmap(tokens, R)`` shows a text as coloured HTML (no LaTeX), and
``patch_overlay(image, R_tokens, patch_size)`` draws a ViT's patch relevance over its image.
"""

from . import style
from .bar_charts import bars
from .curves import aopc_bars, flipping_curves, randomization_curves
from .denominators import stabilization
from .files import save
from .flow import relevance_flow
from .heatmaps import compare, heatmap
from .matrices import messages
from .patches import patch_grid, patch_overlay
from .spray import spray_figure
from .style import lecture_mode
from .taylor import root_points
from .tokens import TokenHeatmap, token_heatmap, token_heatmap_html
from .waterfall import ledger_waterfall

__all__ = [
    "aopc_bars",
    "flipping_curves",
    "randomization_curves",
    "heatmap",
    "spray_figure",
    "compare",
    "patch_overlay",
    "patch_grid",
    "token_heatmap",
    "token_heatmap_html",
    "TokenHeatmap",
    "messages",
    "bars",
    "stabilization",
    "ledger_waterfall",
    "relevance_flow",
    "root_points",
    "lecture_mode",
    "save",
    "style",
]
