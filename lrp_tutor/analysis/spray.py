r"""Spectral Relevance Analysis (SpRAy): cluster many heatmaps to find what a model learned.

Lapuschkin et al., "Unmasking Clever Hans predictors and assessing what machines really
learn", Nature Communications 10, 1096 (2019). The steps:

1. every heatmap is summed over channels, downsampled to ``size`` (area average) and
   divided by its largest absolute value: :math:`h_n = P(R_n) / \max|P(R_n)|`;
2. a symmetric k-nearest-neighbour graph :math:`A` over the :math:`h_n` (scikit-learn);
3. the normalised graph Laplacian :math:`L = I - D^{-1/2} A D^{-1/2}` (D: the degrees)
   and its smallest eigenvalues :math:`0 = \lambda_1 \le \lambda_2 \le \dots`;
4. the **eigengap**: :math:`k` clusters are suggested where :math:`\lambda_{k+1} - \lambda_k`
   is largest (k ≥ 2): k groups that hardly connect give k eigenvalues near 0;
5. spectral clustering: k-means (scikit-learn) on the rows of the first k eigenvectors
   :math:`D^{-1/2} U_k`, as ``sklearn.cluster.SpectralClustering`` does;
6. a 2-D embedding to look at: eigenvectors 2 and 3 ("spectral") or t-SNE.

The heatmaps are read chunk by chunk from a :class:`~lrp_tutor.dataset.RelevanceStore`, so
only the downsampled ones (N × h·w numbers) are held in memory.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> R = rng.random((60, 8, 8)) * 0.1
>>> R[:30, :2, :2] += 1.0      # half of them look at the top-left corner
>>> result = spray(R, size=None, n_neighbors=5)
>>> result.n_clusters, sorted(np.bincount(result.labels).tolist())
(2, [30, 30])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError


def _prepare(block: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Sum channels, downsample to ``size`` and scale each heatmap to max |h| = 1."""
    block = np.asarray(block, dtype=np.float64)
    if block.ndim == 4:
        block = block.sum(axis=1)
    if block.ndim == 3 and size is not None and tuple(block.shape[1:]) != tuple(size):
        pooled = torch.nn.functional.interpolate(
            torch.from_numpy(block)[:, None], size=tuple(size), mode="area"
        )
        block = pooled[:, 0].numpy()
    if block.ndim not in (2, 3):
        raise InputError(
            f"spray takes heatmaps of shape (N, H, W), (N, C, H, W) or (N, D); got {block.shape}."
        )
    flat = block.reshape(len(block), -1)
    scale = np.abs(flat).max(axis=1, keepdims=True)
    flat = np.divide(flat, scale, out=np.zeros_like(flat), where=scale > 0)
    return flat.reshape(block.shape)


def heatmap_features(
    source: Any,
    *,
    size: tuple[int, int] | None = (32, 32),
    select: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The prepared heatmaps ``(n, h, w)`` of ``source`` (array or store) and the indices of
    the samples they belong to; a store is read one chunk at a time.

    >>> features, index = heatmap_features(np.ones((4, 1, 6, 6)), size=(3, 3), select=[1, 3])
    >>> features.shape, index.tolist(), float(features.max())
    ((2, 3, 3), [1, 3], 1.0)
    """
    chunks = getattr(source, "iter_chunks", None)
    n = len(source)
    if select is None:
        index = np.arange(n)
    else:
        select = np.asarray(select)
        index = np.flatnonzero(select) if select.dtype == bool else np.sort(select.astype(int))
        if select.dtype == bool and len(select) != n:
            raise InputError(f"select has {len(select)} entries for {n} heatmaps.")
    if len(index) == 0:
        raise InputError("select picks no heatmap.")
    if chunks is None:
        return _prepare(np.asarray(source)[index], size), index
    parts = []
    for start, stop, block in chunks("relevance"):
        rows = index[(index >= start) & (index < stop)] - start
        if len(rows):
            parts.append(_prepare(block[rows], size))
    return np.concatenate(parts), index


def knn_graph(features: np.ndarray, n_neighbors: int) -> Any:
    """The symmetric k-nearest-neighbour graph :math:`A = (C + C^T)/2` of the flattened
    features (C: 1 where j is among the k nearest of i), as a sparse matrix."""
    from sklearn.neighbors import kneighbors_graph

    flat = features.reshape(len(features), -1)
    k = min(n_neighbors, len(flat) - 1)
    connectivity = kneighbors_graph(flat, k, mode="connectivity", include_self=False)
    return 0.5 * (connectivity + connectivity.T)


def laplacian_spectrum(graph: Any, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The ``count`` smallest eigenvalues of :math:`L = I - D^{-1/2} A D^{-1/2}`, their
    eigenvectors (columns) and :math:`D^{-1/2}`.

    >>> from scipy.sparse import csr_matrix
    >>> two = csr_matrix(np.kron(np.eye(2), np.ones((3, 3))) - np.eye(6))  # two triangles
    >>> np.round(laplacian_spectrum(two, 3)[0], 6).tolist()
    [0.0, 0.0, 1.5]
    """
    from scipy.sparse import diags
    from scipy.sparse.linalg import lobpcg

    degree = np.asarray(graph.sum(axis=1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    m = diags(inv_sqrt) @ graph @ diags(inv_sqrt)
    n = m.shape[0]
    count = min(count, n)
    if n <= 1000 or count >= n - 1:
        mu, vectors = np.linalg.eigh(m.toarray())
        mu, vectors = mu[::-1][:count], vectors[:, ::-1][:, :count]
    else:  # the largest of D^-1/2 A D^-1/2 are the smallest of L. A block method (LOBPCG),
        # since separate clusters give repeated eigenvalues, which Lanczos (eigsh) misses.
        start = np.random.default_rng(0).standard_normal((n, count))
        mu, vectors = lobpcg(m, start, largest=True, tol=1e-9, maxiter=2000)
        order = np.argsort(mu)[::-1]
        mu, vectors = mu[order], vectors[:, order]
    return np.clip(1.0 - mu, 0.0, 2.0), vectors, inv_sqrt


def eigengap(eigenvalues: np.ndarray) -> int:
    r"""The suggested number of clusters: :math:`\arg\max_{k \ge 2} \lambda_{k+1} - \lambda_k`.

    >>> eigengap(np.array([0.0, 0.01, 0.02, 0.6, 0.65]))
    3
    """
    gaps = np.diff(np.asarray(eigenvalues, dtype=np.float64))
    if len(gaps) < 2:
        return 2
    return int(np.argmax(gaps[1:])) + 2


@dataclass
class SpRAyResult:
    """What :func:`spray` found.

    Attributes
    ----------
    labels : np.ndarray of int, (n,)
        The cluster of each heatmap.
    embedding : np.ndarray, (n, 2)
        2-D coordinates to plot (spectral or t-SNE).
    eigenvalues : np.ndarray
        The smallest eigenvalues of the normalised graph Laplacian, ascending.
    suggested_clusters : int
        Where the eigengap is largest.
    n_clusters : int
        The number of clusters used (``n_clusters`` or the suggestion).
    indices : np.ndarray of int, (n,)
        The sample (row of the store or array) of each heatmap.
    features : np.ndarray, (n, h, w)
        The downsampled, normalised heatmaps that were clustered.
    """

    labels: np.ndarray
    embedding: np.ndarray
    eigenvalues: np.ndarray
    suggested_clusters: int
    n_clusters: int
    indices: np.ndarray
    features: np.ndarray

    @property
    def eigengaps(self) -> np.ndarray:
        r""":math:`\lambda_{k+1} - \lambda_k` for k = 1, 2, …"""
        return np.diff(self.eigenvalues)

    def members(self, cluster: int) -> np.ndarray:
        """The sample indices in ``cluster``."""
        return self.indices[self.labels == cluster]

    def sizes(self) -> np.ndarray:
        """How many heatmaps each cluster holds."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    def cluster_means(self) -> np.ndarray:
        """The mean prepared heatmap of each cluster, (n_clusters, h, w)."""
        return np.stack([self.features[self.labels == c].mean(0) for c in range(self.n_clusters)])

    def plot(self, **kwargs: Any) -> Any:
        """The eigenvalues, the embedding by cluster and each cluster's mean heatmap."""
        from ..viz.spray import spray_figure

        return spray_figure(
            self.eigenvalues, self.embedding, self.labels, self.cluster_means(), **kwargs
        )

    def widget(self, images: Any = None, **kwargs: Any) -> Any:
        """A widget: pick a cluster, see its mean heatmap and example images (``images``:
        the inputs, indexed like the store)."""
        from ..widgets.clusters import ClusterBrowser

        return ClusterBrowser(self, images=images, **kwargs)

    def __repr__(self) -> str:
        return (
            f"SpRAyResult({len(self.labels)} heatmaps, {self.n_clusters} clusters of sizes "
            f"{self.sizes().tolist()}, eigengap suggests {self.suggested_clusters})"
        )


def spray(
    store_or_array: Any,
    *,
    n_clusters: int | None = None,
    size: tuple[int, int] | None = (32, 32),
    select: Any = None,
    n_neighbors: int = 10,
    max_clusters: int = 10,
    embedding: str = "spectral",
    random_state: int = 0,
) -> SpRAyResult:
    """Spectral Relevance Analysis of many heatmaps (see the module's docstring).

    Parameters
    ----------
    store_or_array : RelevanceStore or array
        Heatmaps (N, H, W), (N, C, H, W) or (N, D); a store is read chunk by chunk.
    n_clusters : int, optional
        Default: the eigengap's suggestion.
    size : (h, w) or None
        Downsample (area average) to this size before comparing; None keeps the size.
    select : bool mask or indices, optional
        Which samples to analyse, e.g. ``store.target[:] == c`` (one class at a time).
    n_neighbors : int
        k of the nearest-neighbour graph.
    max_clusters : int
        How many eigenvalues to compute (the eigengap looks at k ≤ max_clusters).
    embedding : {"spectral", "tsne"}
        The 2-D view: eigenvectors 2 and 3 of the graph, or t-SNE of the heatmaps.
    random_state : int
        Seeds k-means and t-SNE.

    Returns
    -------
    SpRAyResult
    """
    if embedding not in ("spectral", "tsne"):
        raise InputError(f"embedding must be 'spectral' or 'tsne', got {embedding!r}.")
    features, indices = heatmap_features(store_or_array, size=size, select=select)
    if len(features) < 3:
        raise InputError(f"spray needs at least 3 heatmaps, got {len(features)}.")
    from sklearn.cluster import KMeans

    graph = knn_graph(features, n_neighbors)
    count = max(max_clusters, n_clusters or 0, 3) + 1
    eigenvalues, vectors, inv_sqrt = laplacian_spectrum(graph, count)
    suggested = eigengap(eigenvalues[: max_clusters + 1])
    k = int(n_clusters or suggested)
    if not 1 <= k <= len(features):
        raise InputError(f"n_clusters must be between 1 and {len(features)}, got {k}.")
    maps = vectors[:, :k] * inv_sqrt[:, None]
    labels = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(maps)
    if embedding == "spectral":
        view = vectors[:, 1:3] * inv_sqrt[:, None]
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(features) - 1) / 3))
        view = TSNE(2, perplexity=perplexity, init="pca", random_state=random_state)
        view = view.fit_transform(features.reshape(len(features), -1))
    return SpRAyResult(
        labels=labels.astype(np.int64),
        embedding=np.asarray(view, dtype=np.float64),
        eigenvalues=eigenvalues,
        suggested_clusters=suggested,
        n_clusters=k,
        indices=indices,
        features=features,
    )
