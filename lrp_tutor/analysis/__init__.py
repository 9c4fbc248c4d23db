"""Data-set-level views of relevance: what many heatmaps show together.

* :func:`spray` — Spectral Relevance Analysis (Lapuschkin et al. 2019): cluster the heatmaps
  of a class, suggest the number of clusters by the eigengap, embed them in 2-D
* :func:`cluster_f1` — how well a cluster matches a known group (e.g. ``zoo.clever_hans().marked``)

>>> import numpy as np
>>> cluster_f1(np.array([0, 0, 1, 1]), np.array([True, True, False, False]))
1.0
"""

from .scores import cluster_f1
from .spray import SpRAyResult, eigengap, heatmap_features, spray

__all__ = ["spray", "SpRAyResult", "eigengap", "heatmap_features", "cluster_f1"]
