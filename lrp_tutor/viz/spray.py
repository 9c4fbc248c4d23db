"""The figures of a Spectral Relevance Analysis: eigenvalues, embedding, cluster means.

>>> import numpy as np
>>> fig = spray_figure(np.array([0.0, 0.01, 0.5, 0.6]), np.random.rand(6, 2),
...                    np.array([0, 0, 0, 1, 1, 1]), np.random.rand(2, 4, 4) - 0.5)
>>> [ax.get_title() for ax in fig.axes[:2]]
['eigenvalues of the graph Laplacian', 'embedding, coloured by cluster']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._axes import new_figure, symmetric_norm

CLUSTER_COLORS = "tab10"


def cluster_means_row(fig: Any, means: np.ndarray, sizes: np.ndarray | None = None) -> None:
    """One panel per cluster mean (bwr, symmetric range per panel) into ``fig``."""
    k = len(means)
    axes = fig.subplots(1, k, squeeze=False)[0]
    for c, (ax, mean) in enumerate(zip(axes, means, strict=True)):
        limit = float(np.abs(mean).max()) or 1.0
        ax.imshow(mean, cmap="bwr", norm=symmetric_norm(limit))
        size = "" if sizes is None else f" (n = {int(sizes[c])})"
        ax.set_title(f"cluster {c}{size}", color=_color(c, k))
        ax.set_xticks([])
        ax.set_yticks([])


def _color(c: int, k: int) -> Any:
    import matplotlib as mpl

    return mpl.colormaps[CLUSTER_COLORS](c % 10)


def spray_figure(
    eigenvalues: np.ndarray,
    embedding: np.ndarray,
    labels: np.ndarray,
    means: np.ndarray,
    *,
    n_eigenvalues: int = 10,
) -> Figure:
    """Top: the smallest eigenvalues λ_k of the graph Laplacian (the largest gap suggests the
    number of clusters) and the 2-D embedding by cluster. Bottom: each cluster's mean
    heatmap (red: evidence for the class)."""
    labels = np.asarray(labels)
    k = len(means)
    fig = new_figure(max(8.0, 2.0 * k), 6.5)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.2, 1.0])
    spectrum, scatter = top.subplots(1, 2)
    values = np.asarray(eigenvalues)[:n_eigenvalues]
    steps = np.arange(1, len(values) + 1)
    spectrum.plot(steps, values, "o-", color="0.3")
    if len(values) > 2:
        gap = int(np.argmax(np.diff(values)[1:])) + 2
        spectrum.axvspan(
            gap + 0.1, gap + 0.9, color="tab:orange", alpha=0.3, label=f"largest gap: k = {gap}"
        )
        spectrum.legend(loc="lower right")
    spectrum.set_xlabel("k")
    spectrum.set_ylabel("λ_k")
    spectrum.set_title("eigenvalues of the graph Laplacian")
    for c in range(k):
        points = embedding[labels == c]
        scatter.scatter(points[:, 0], points[:, 1], s=10, color=_color(c, k), label=f"{c}")
    scatter.set_title("embedding, coloured by cluster")
    scatter.set_xticks([])
    scatter.set_yticks([])
    scatter.legend(title="cluster", fontsize="small", markerscale=1.5)
    cluster_means_row(bottom, np.asarray(means), np.bincount(labels, minlength=k))
    return fig
