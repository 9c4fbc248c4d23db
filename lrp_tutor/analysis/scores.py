"""How well a clustering finds a known group of samples."""

from __future__ import annotations

import numpy as np


def cluster_f1(labels: np.ndarray, truth: np.ndarray) -> float:
    r"""The best F1 of any one cluster against the boolean group ``truth``:
    :math:`\max_c 2|C_c \cap T| / (|C_c| + |T|)`.

    >>> cluster_f1(np.array([0, 1, 1, 2]), np.array([False, True, True, True]))
    0.8
    """
    labels, truth = np.asarray(labels), np.asarray(truth, dtype=bool)
    if labels.shape != truth.shape:
        raise ValueError(f"labels {labels.shape} and truth {truth.shape} differ in shape.")
    best = 0.0
    for cluster in np.unique(labels):
        inside = labels == cluster
        both = int((inside & truth).sum())
        best = max(best, 2.0 * both / (int(inside.sum()) + int(truth.sum())))
    return round(best, 12)
