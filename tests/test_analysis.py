"""SpRAy: the eigengap, clusters of known groups, chunked reading, and the Clever Hans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import lrp_tutor as lt
from lrp_tutor.analysis import cluster_f1, eigengap, spray
from lrp_tutor.analysis.spray import knn_graph, laplacian_spectrum
from tests.model_state import assert_unchanged, snapshot

pytest.importorskip("sklearn")


def blobs(groups: int, per_group: int = 20, side: int = 12, seed: int = 0):
    """Heatmaps whose relevance sits in one of ``groups`` places, plus noise."""
    rng = np.random.default_rng(seed)
    R = rng.normal(0.0, 0.05, size=(groups * per_group, side, side))
    truth = np.repeat(np.arange(groups), per_group)
    for g in range(groups):
        row, col = divmod(3 * g, side - 2)
        R[truth == g, row : row + 3, col : col + 3] += rng.uniform(0.5, 1.5, (per_group, 1, 1))
    order = rng.permutation(len(R))
    return R[order], truth[order]


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_spray_finds_groups_and_the_eigengap_counts_them(groups):
    R, truth = blobs(groups)
    result = spray(R, size=(6, 6), n_neighbors=8)
    assert result.suggested_clusters == groups == result.n_clusters
    for g in range(groups):
        assert cluster_f1(result.labels, truth == g) == 1.0
    # groups nearly unconnected: `groups` eigenvalues near zero, then a jump
    assert result.eigenvalues[groups - 1] < 0.05 < result.eigenvalues[groups]
    assert result.embedding.shape == (len(R), 2) and result.features.shape == (len(R), 6, 6)
    assert np.abs(result.features).max(axis=(1, 2)) == pytest.approx(1.0)


def test_eigenvalues_of_a_small_graph_match_a_dense_laplacian():
    R, _ = blobs(3, per_group=8)
    graph = knn_graph(R, 4)
    values, vectors, inv_sqrt = laplacian_spectrum(graph, 6)
    a = graph.toarray()
    d = a.sum(1)
    laplacian = np.eye(len(a)) - a / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(values, np.linalg.eigvalsh(laplacian)[:6], atol=1e-10)
    np.testing.assert_allclose(laplacian @ vectors, vectors * values, atol=1e-10)
    assert eigengap(np.array([0.0, 0.0, 0.0, 0.9, 1.0])) == 3


def test_the_sparse_solver_agrees_with_the_dense_one():
    R, truth = blobs(3, per_group=400, side=8)  # 1,200 heatmaps: eigsh instead of eigh
    graph = knn_graph(R, 10)
    sparse, *_ = laplacian_spectrum(graph, 5)
    dense = np.linalg.eigvalsh(
        np.eye(len(R)) - graph.toarray() / np.sqrt(np.outer(graph.sum(1), graph.sum(1)))
    )
    np.testing.assert_allclose(sparse, dense[:5], atol=1e-7)


def test_a_store_is_read_by_chunks_and_gives_the_array_result(tmp_path):
    R, truth = blobs(2, per_group=15, side=8)
    # a linear "model" whose relevance is the input itself: R = x · 1 (LRP-0, one output)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1, bias=False))
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    model = model.double().eval()
    x = torch.from_numpy(R)[:, None]
    store = lt.explain_dataset(
        model,
        TensorDataset(x),
        rule=lt.rules.LRP0(),
        store=tmp_path / "s",
        batch_size=7,
        progress=False,
    )
    np.testing.assert_allclose(store.relevance[:, 0], R, rtol=1e-12)
    select = np.arange(len(R)) % 3 != 0
    from_store = spray(store, size=None, select=select, n_neighbors=6)
    from_array = spray(R[:, None], size=None, select=select, n_neighbors=6)
    np.testing.assert_array_equal(from_store.indices, np.flatnonzero(select))
    np.testing.assert_allclose(from_store.features, from_array.features, rtol=1e-12)
    np.testing.assert_array_equal(from_store.labels, from_array.labels)
    assert cluster_f1(from_store.labels, truth[select] == 0) == 1.0


def test_spray_refuses_what_it_cannot_cluster():
    with pytest.raises(lt.InputError, match="no heatmap"):
        spray(np.ones((5, 4, 4)), select=np.zeros(5, dtype=bool))
    with pytest.raises(lt.InputError, match="embedding"):
        spray(np.ones((5, 4, 4)), embedding="umap")
    with pytest.raises(lt.InputError, match="shape"):
        spray(np.ones((5, 2, 2, 2, 2)))


def test_plot_tsne_and_widget():
    R, truth = blobs(2, per_group=12, side=8)
    result = spray(R, size=None, n_neighbors=5, embedding="tsne")
    assert result.embedding.shape == (24, 2)
    fig = result.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert "eigenvalues of the graph Laplacian" in titles
    assert sum(t.startswith("cluster") for t in titles) == 2
    browser = result.widget(images=R)
    browser.choice.value = 1
    assert browser.cluster == 1 and browser.figure is not None
    assert "2 clusters" in repr(result)


def test_cluster_f1():
    assert cluster_f1(
        np.array([0, 0, 1, 1]), np.array([True, False, False, False])
    ) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        cluster_f1(np.array([0, 1]), np.array([True]))


def test_clever_hans_leans_on_its_tag_and_spray_unmasks_it(tmp_path):
    hans = lt.zoo.clever_hans()
    c = hans.shortcut_class
    labels = hans.labels.numpy()
    assert hans.marked.sum() == (labels == c).sum() // 2 and not hans.marked[labels != c].any()
    accuracy = hans.accuracies()
    assert accuracy["as shipped"] >= 0.95
    assert accuracy["tag on every image"] < 0.3  # the tag turns any digit into a c
    before = snapshot(hans.model)
    store = lt.explain_dataset(
        hans.model,
        hans.data,
        target="label",
        store=tmp_path / "hans",
        batch_size=100,
        progress=False,
    )
    assert_unchanged(before, snapshot(hans.model))
    of_class = np.asarray(store.label[:]) == c
    result = spray(store, select=of_class)
    assert result.suggested_clusters == 2
    assert cluster_f1(result.labels, hans.marked[of_class]) >= 0.9
    # the tagged cluster's mean heatmap is hottest in the tag's corner
    tagged = np.bincount(result.labels[hans.marked[of_class]]).argmax()
    mean = result.cluster_means()[tagged]
    corner = mean[: mean.shape[0] // 4, : mean.shape[1] // 4].sum()
    assert corner > 0.5 * mean.clip(min=0).sum()
