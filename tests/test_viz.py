"""Tests of lrp_tutor.viz: what each figure shows (headless, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import lrp_tutor.viz as viz  # noqa: E402
from lrp_tutor.errors import InputError  # noqa: E402
from lrp_tutor.ledger import Ledger, LedgerEntry  # noqa: E402
from lrp_tutor.viz import style  # noqa: E402

RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _normal_style_and_no_open_figures():
    before = plt.get_fignums()
    yield
    style.lecture_mode(False)
    assert plt.get_fignums() == before, "a viz function left a pyplot figure open"


def image_of(ax, gid):
    (found,) = [im for im in ax.images if im.get_gid() == gid]
    return found


def parse(text: str) -> float:
    return float(text.replace("−", "-"))


def cell_texts(ax):
    return [t for t in ax.texts if t.get_gid() == "cell"]


# --------------------------------------------------------------------------------------
# heatmap


def test_heatmap_shows_the_relevance_summed_over_channels():
    R = RNG.standard_normal((3, 5, 7))
    fig = viz.heatmap(R)
    shown = image_of(fig.axes[0], "relevance").get_array()
    np.testing.assert_allclose(shown, R[0] + R[1] + R[2], rtol=0, atol=1e-12)
    assert "Σ R" in fig.axes[0].get_xlabel()
    assert float(fig.axes[0].get_xlabel().split("=")[1].replace("−", "-")) == pytest.approx(
        R.sum(), rel=1e-2
    )


@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.5, 100.0])
def test_heatmap_colour_limits_are_symmetric_at_the_percentile(percentile):
    R = RNG.standard_normal((16, 16)) * np.linspace(0.1, 3.0, 16)
    im = image_of(viz.heatmap(R, percentile=percentile).axes[0], "relevance")
    low, high = im.get_clim()
    assert low == -high
    assert high == pytest.approx(np.percentile(np.abs(R), percentile), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (6, 5), elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
def test_heatmap_limits_are_symmetric_and_positive_for_any_map(R):
    im = image_of(viz.heatmap(R, colorbar=False).axes[0], "relevance")
    low, high = im.get_clim()
    assert low == -high and high > 0
    if np.abs(R).max() > 0:
        assert high <= np.abs(R).max()
    plt.close("all")


def test_heatmap_zero_is_the_white_centre_of_the_colormap():
    R = RNG.standard_normal((8, 8))
    im = image_of(viz.heatmap(R).axes[0], "relevance")
    assert im.norm(0.0) == pytest.approx(0.5)
    np.testing.assert_allclose(im.to_rgba(np.array([[0.0]]))[0, 0], [1, 1, 1, 1], atol=1 / 255)
    # the extremes are saturated red and blue
    low, high = im.get_clim()
    np.testing.assert_allclose(im.to_rgba(np.array([[high]]))[0, 0], to_rgba("red"), atol=0.01)
    np.testing.assert_allclose(im.to_rgba(np.array([[low]]))[0, 0], to_rgba("blue"), atol=0.01)


def test_heatmap_colorbar_says_relevance_and_marks_clipping():
    R = RNG.standard_normal((20, 20))
    R[3, 4] = 100.0  # far above the 99.5th percentile
    fig = viz.heatmap(R)
    (cbar_ax,) = [ax for ax in fig.axes if ax is not fig.axes[0]]
    assert "relevance" in cbar_ax.get_ylabel()
    cbar = image_of(fig.axes[0], "relevance").colorbar
    assert cbar.extend == "both"
    ticks = cbar.get_ticks()
    assert 0.0 in ticks and np.allclose(np.sort(ticks), -np.sort(ticks)[::-1])
    assert image_of(viz.heatmap(R, percentile=100).axes[0], "relevance").colorbar.extend == (
        "neither"
    )


def test_heatmap_without_colorbar_has_one_axes():
    assert len(viz.heatmap(np.eye(3), colorbar=False).axes) == 1


def test_heatmap_overlay_keeps_the_grey_image():
    R = RNG.standard_normal((1, 8, 8))
    img = RNG.uniform(0, 16, (8, 8))
    ax = viz.heatmap(R, img).axes[0]
    shown = image_of(ax, "image").get_array()
    np.testing.assert_allclose(shown, (img - img.min()) / (img.max() - img.min()), atol=1e-12)
    assert ax.images[0].get_gid() == "image"  # below the relevance
    assert ax.images[1].get_gid() == "relevance"


def test_heatmap_overlay_opacity_grows_with_relevance_and_is_zero_at_zero():
    R = np.array([[0.0, 0.5], [-1.0, 4.0]])
    ax = viz.heatmap(R, np.ones((2, 2)), percentile=100, alpha=0.8).axes[0]
    opacity = np.asarray(image_of(ax, "relevance").get_alpha())
    np.testing.assert_allclose(opacity, 0.8 * np.sqrt(np.abs(R) / 4.0), atol=1e-12)
    assert opacity[0, 0] == 0.0


@pytest.mark.parametrize("layout", ["chw", "hwc", "batch"])
def test_heatmap_overlay_of_an_rgb_image(layout):
    rgb = RNG.uniform(-1, 3, (6, 9, 3))  # H, W, C in any range
    given_image = {
        "hwc": rgb,
        "chw": np.moveaxis(rgb, -1, 0),
        "batch": torch.tensor(np.moveaxis(rgb, -1, 0))[None],
    }[layout]
    R = RNG.standard_normal((6, 9))
    ax = viz.heatmap(R, given_image, gray_image=False).axes[0]
    expected = (rgb - rgb.min()) / (rgb.max() - rgb.min())
    np.testing.assert_allclose(image_of(ax, "image").get_array(), expected, atol=1e-12)
    grey = viz.heatmap(R, given_image).axes[0]
    np.testing.assert_allclose(
        image_of(grey, "image").get_array(),
        _normalise(rgb @ np.array([0.299, 0.587, 0.114])),
        atol=1e-12,
    )


def _normalise(a):
    return (a - a.min()) / (a.max() - a.min())


def test_heatmap_accepts_tensors_with_grad_and_batch_of_one():
    R = torch.randn(1, 3, 4, 4, dtype=torch.float32, requires_grad=True)
    shown = image_of(viz.heatmap(R).axes[0], "relevance").get_array()
    np.testing.assert_allclose(shown, R.detach().double().sum(dim=(0, 1)).numpy(), atol=1e-6)


def test_heatmap_of_a_flat_vector_with_shape():
    R = RNG.standard_normal(64)
    shown = image_of(viz.heatmap(R, shape=(8, 8)).axes[0], "relevance").get_array()
    np.testing.assert_array_equal(shown, R.reshape(8, 8))


def test_heatmap_channels_last():
    R = RNG.standard_normal((4, 5, 3))
    shown = image_of(viz.heatmap(R, channel_axis=-1).axes[0], "relevance").get_array()
    np.testing.assert_allclose(shown, R.sum(axis=-1), atol=1e-12)


@pytest.mark.parametrize(
    ("relevance", "kwargs", "message"),
    [
        (np.zeros(64), {}, "shape=(8, 8)"),
        (np.zeros(10), {"shape": (3, 3)}, "cannot be shown with shape"),
        (np.zeros((2, 3, 4, 4)), {}, "batch of 2"),
        (np.zeros((2, 2, 2, 2, 2)), {}, "one sample"),
        (np.array([[1.0, np.nan]]), {}, "NaN"),
        ("abc", {}, "real numbers"),
        (np.ones((4, 4)), {"percentile": 0}, "percentile"),
        (np.ones((4, 4)), {"percentile": 120}, "percentile"),
        (np.ones((4, 4)), {"cmap": "no-such-map"}, "colormap"),
        (np.ones((4, 4)), {"image": np.ones((5, 4))}, "4×4"),
        (np.ones((4, 4)), {"image": np.ones((2, 4, 4))}, "(C, H, W)"),
        (np.ones((4, 4)), {"alpha": 2.0}, "alpha"),
        (np.ones((4, 4)), {"ax": "not axes"}, "Axes"),
    ],
)
def test_heatmap_bad_input_raises_a_clear_input_error(relevance, kwargs, message):
    with pytest.raises(InputError) as info:
        viz.heatmap(relevance, **kwargs)
    assert message in str(info.value)


def test_heatmap_draws_into_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    try:
        returned = viz.heatmap(np.eye(4), ax=right, title="mine")
        assert returned is fig
        assert right.get_title() == "mine"
        assert not left.images
    finally:
        plt.close(fig)


def test_all_zero_relevance_still_gives_a_symmetric_range():
    im = image_of(viz.heatmap(np.zeros((4, 4))).axes[0], "relevance")
    assert im.get_clim() == (-1.0, 1.0)


# --------------------------------------------------------------------------------------
# compare


def test_compare_has_one_axes_per_rule_with_its_title_and_own_range():
    base = RNG.standard_normal((3, 10, 10))
    rules = {"LRP-0": base, "ε=0.25": 10 * base, "αβ": torch.tensor(0.01 * base)}
    fig = viz.compare(rules, ncols=2, percentile=100)
    heat = [ax for ax in fig.axes if any(im.get_gid() == "relevance" for im in ax.images)]
    assert [ax.get_title() for ax in heat] == list(rules)
    for ax, factor in zip(heat, [1, 10, 0.01], strict=True):
        low, high = image_of(ax, "relevance").get_clim()
        assert low == -high
        assert high == pytest.approx(factor * np.abs(base.sum(0)).max(), rel=1e-12)
    # the fourth cell of the 2 × 2 grid is removed, three colorbars remain
    assert len(fig.axes) == 6


def test_compare_with_image_and_defaults():
    img = RNG.uniform(size=(8, 8))
    fig = viz.compare({"a": np.eye(8), "b": -np.eye(8)}, img, colorbar=False)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        np.testing.assert_allclose(image_of(ax, "image").get_array(), _normalise(img))


@pytest.mark.parametrize(
    ("relevances", "message"),
    [({}, "empty"), ([np.eye(2)], "mapping"), ({"bad": np.zeros(5)}, "'bad'")],
)
def test_compare_bad_input(relevances, message):
    with pytest.raises(InputError) as info:
        viz.compare(relevances)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------
# messages


def _three_two():
    x = np.array([1.0, 0.5, -0.8])
    W = np.array([[0.6, -0.4], [0.9, 0.3], [0.2, 0.8]])
    z = x[:, None] * W
    R_j = np.array([0.7, -0.2])
    stab = z.sum(0) + 0.1 + 0.25 * np.sign(z.sum(0) + 0.1)
    return z, z / stab * R_j


def test_messages_shows_both_matrices_with_their_numbers():
    z, M = _three_two()
    fig = viz.messages(torch.tensor(z), M, input_labels=["a", "b", "c"])
    ax_z, ax_m = fig.axes[0], fig.axes[1]
    np.testing.assert_array_equal(image_of(ax_z, "z_ij").get_array(), z)
    np.testing.assert_array_equal(image_of(ax_m, "messages").get_array(), M)
    for ax, values in ((ax_z, z), (ax_m, M)):
        texts = cell_texts(ax)
        assert len(texts) == values.size
        for t in texts:
            j, i = t.get_position()
            assert parse(t.get_text()) == pytest.approx(values[int(i), int(j)], rel=5e-3)
        low, high = ax.images[0].get_clim()
        assert low == -high == -np.abs(values).max()
    assert [t.get_text() for t in ax_m.get_yticklabels()] == ["a", "b", "c"]
    assert "z_{ij}" in ax_z.get_title() and "R_{i \\leftarrow j}" in ax_m.get_title()


def test_messages_margins_show_r_i_and_column_sums():
    z, M = _three_two()
    ax_m = viz.messages(z, M).axes[1]
    (right,) = [a for a in ax_m.child_axes if a.get_ylabel() == "$R_i$"]
    shown = [parse(t.get_text()) for t in right.get_yticklabels()]
    np.testing.assert_allclose(shown, M.sum(axis=1), rtol=5e-3)
    (top,) = [a for a in ax_m.child_axes if "Sigma_i" in a.get_xlabel()]
    np.testing.assert_allclose(
        [parse(t.get_text()) for t in top.get_xticklabels()], M.sum(axis=0), rtol=5e-3
    )


def test_messages_of_one_neuron_is_a_column():
    z, M = _three_two()
    fig = viz.messages(z[:, 1], M[:, 1])
    assert image_of(fig.axes[1], "messages").get_array().shape == (3, 1)
    assert len(cell_texts(fig.axes[1])) == 3


def test_messages_large_matrix_has_no_numbers():
    z = RNG.standard_normal((9, 4))
    fig = viz.messages(z, z)
    assert cell_texts(fig.axes[0]) == [] and cell_texts(fig.axes[1]) == []
    assert len(cell_texts(viz.messages(z[:8], z[:8]).axes[1])) == 32


def test_messages_into_given_axes_and_alone():
    z, M = _three_two()
    fig, axs = plt.subplots(1, 3)
    try:
        assert viz.messages(z, M, ax=axs[:2], title="layer 0") is fig
        assert "layer 0" in axs[1].get_title()
        assert viz.messages(None, M, ax=axs[2]) is fig
        np.testing.assert_array_equal(image_of(axs[2], "messages").get_array(), M)
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.zeros((3, 2)), np.zeros((2, 3))), {}, "shape"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), {"input_labels": ["a"]}, "input_labels"),
        ((np.zeros((3, 2)), np.zeros((3, 2))), {"output_labels": ["a"]}, "output_labels"),
        ((np.zeros((2, 2)), np.zeros((2, 2, 2))), {}, "2-D"),
    ],
)
def test_messages_bad_input(args, kwargs, message):
    with pytest.raises(InputError) as info:
        viz.messages(*args, **kwargs)
    assert message in str(info.value)


def test_messages_splits_a_single_grid_axes_into_two_panels():
    z, M = _three_two()
    fig, (left, cell) = plt.subplots(1, 2)
    try:
        assert viz.messages(z, M, ax=cell) is fig
        assert cell not in fig.axes and left in fig.axes
        shown = {im.get_gid(): im.get_array() for a in fig.axes for im in a.images}
        np.testing.assert_array_equal(shown["z_ij"], z)
        np.testing.assert_array_equal(shown["messages"], M)
        free = fig.add_axes((0.1, 0.1, 0.2, 0.2))  # not in a grid: cannot be split
        with pytest.raises(InputError, match="z_ij=None"):
            viz.messages(z, M, ax=free)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------
# bars


def test_bars_heights_and_signed_colours():
    values = np.array([0.5, -0.25, 0.0, 2.0])
    ax = viz.bars(torch.tensor(values)[None], labels=["a", "b", "c", "d"]).axes[0]
    np.testing.assert_array_equal([p.get_height() for p in ax.patches], values)
    colours = [p.get_facecolor() for p in ax.patches]
    assert colours[0] == colours[3] == to_rgba(viz.bar_charts.POSITIVE)
    assert colours[1] == to_rgba(viz.bar_charts.NEGATIVE)
    assert colours[0][0] > colours[0][2] and colours[1][2] > colours[1][0]  # red / blue
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [parse(t.get_text()) for t in ax.texts] == pytest.approx(list(values))
    assert "2.25" in ax.get_title()  # Σ_i R_i


def test_bars_bad_input():
    with pytest.raises(InputError, match="1-D"):
        viz.bars(np.zeros((2, 3)))
    with pytest.raises(InputError, match="labels"):
        viz.bars([1.0, 2.0], labels=["a"])


# --------------------------------------------------------------------------------------
# stabilization


def test_stabilization_shows_both_denominators_and_the_share_kept():
    z = np.array([2.0, 0.3, -0.02, 0.0])
    s = z + 0.25 * np.where(z >= 0, 1.0, -1.0)
    ax = viz.stabilization(z, torch.tensor(s), epsilon=0.25).axes[0]
    (before,) = [line for line in ax.lines if line.get_gid() == "z_j"]
    (after,) = [line for line in ax.lines if line.get_gid() == "stabilized"]
    np.testing.assert_array_equal(before.get_xdata(), z)
    np.testing.assert_array_equal(after.get_xdata(), s)
    assert len(ax.texts) == 4  # one arrow per neuron
    (right,) = ax.child_axes
    np.testing.assert_allclose(
        [parse(t.get_text()) for t in right.get_yticklabels()], z / s, rtol=5e-3
    )


def test_stabilization_bad_input():
    with pytest.raises(InputError, match="stabilized"):
        viz.stabilization(np.ones(3), np.ones(2))


# --------------------------------------------------------------------------------------
# ledger_waterfall


def _ledger(broken=False):
    # Two samples; layer 2 loses to bias and ε, the ReLU passes everything on.
    top = LedgerEntry("2 (Linear)", [1.5, -0.5], [1.2, -0.45], [0.2, -0.03], [0.1, -0.02])
    relu = LedgerEntry("1 (ReLU)", [1.2, -0.45], [1.2, -0.45], [0.0, 0.0], [0.0, 0.0])
    first_in = np.array([0.9, -0.3]) - (0.2 if broken else 0.0)
    first = LedgerEntry("0 (Linear)", [1.2, -0.45], first_in, [-0.1, -0.1], [0.4, -0.05])
    return Ledger([first, relu, top])


def _containers(ax):
    return {c.get_label(): c for c in ax.containers}


@pytest.mark.parametrize("sample", [0, 1])
def test_waterfall_bars_equal_the_ledger(sample):
    ledger = _ledger()
    assert ledger.holds()
    ax = viz.ledger_waterfall(ledger, sample=sample).axes[0]
    bars = _containers(ax)
    assert set(bars) == {"total", "passed", "bias", "stabilizer"}
    top_down = list(ledger)[::-1]
    r_in = np.array([e.relevance_in[sample] for e in top_down])
    bias = np.array([e.bias[sample] for e in top_down])
    stab = np.array([e.stabilizer[sample] for e in top_down])
    width = {k: np.array([p.get_width() for p in c]) for k, c in bars.items()}
    left = {k: np.array([p.get_x() for p in c]) for k, c in bars.items()}
    np.testing.assert_allclose(
        width["total"], [ledger[-1].relevance_out[sample], ledger[0].relevance_in[sample]]
    )
    np.testing.assert_allclose(width["passed"], r_in)
    np.testing.assert_allclose(width["bias"], bias)
    np.testing.assert_allclose(width["stabilizer"], stab)
    np.testing.assert_allclose(left["bias"], r_in)
    np.testing.assert_allclose(
        left["stabilizer"] + width["stabilizer"], [e.relevance_out[sample] for e in top_down]
    )
    # rows: output on top, then the layers from the top one down, the input at the bottom
    labels = [t.get_text() for t in ax.get_yticklabels()]
    order = np.argsort([-t for t in ax.get_yticks()])
    assert [labels[k] for k in order] == [
        "output  $f_c(x)$",
        "2 (Linear)",
        "1 (ReLU)",
        "0 (Linear)",
        "input",
    ]
    colours = {k: c.patches[0].get_facecolor() for k, c in bars.items()}
    assert len(set(colours.values())) == 4
    legend_texts = [t.get_text() for t in ax.get_figure().legends[0].get_texts()]
    assert any("bias" in t for t in legend_texts) and any("ε" in t for t in legend_texts)


def test_waterfall_shows_a_violation():
    ax = viz.ledger_waterfall(_ledger(broken=True)).axes[0]
    residual = _containers(ax)["residual"]
    np.testing.assert_allclose([p.get_width() for p in residual], [0.0, 0.0, 0.2], atol=1e-12)
    assert any("MISSING" in t.get_text() for t in ax.texts)


def test_waterfall_into_given_axes_has_its_own_legend():
    fig, ax = plt.subplots()
    try:
        assert viz.ledger_waterfall(_ledger(), ax=ax) is fig
        assert ax.get_legend() is not None
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    ("ledger", "kwargs", "message"),
    [
        ("nope", {}, "Ledger"),
        (Ledger([]), {}, "empty"),
        (None, {"sample": 2}, "batch of 2"),
        (None, {"sample": 0.5}, "integer"),
    ],
)
def test_waterfall_bad_input(ledger, kwargs, message):
    with pytest.raises(InputError) as info:
        viz.ledger_waterfall(_ledger() if ledger is None else ledger, **kwargs)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------
# relevance_flow


def _network():
    acts = [np.array([1.0, 0.5, -0.8]), np.array([0.9, 0.0]), np.array([1.2])]
    M1 = np.array([[0.6, 0.0], [0.45, 0.0], [-0.15, 0.0]])
    M2 = np.array([[1.0], [0.0]])
    rels = [M1.sum(1), M2.sum(1), np.array([1.2])]
    return acts, [M1, M2], rels


def _node_index(fig):
    """(layer, neuron) of every node position."""
    ax = fig.axes[0]
    index = {}
    for c in ax.collections:
        gid = c.get_gid() or ""
        if gid.startswith("neurons"):
            k = int(gid.split()[1])
            for i, (x, y) in enumerate(c.get_offsets()):
                index[(round(float(x), 9), round(float(y), 9))] = (k, i)
    return index


def test_flow_edges_are_the_nonzero_messages_with_widths_monotone_in_size():
    acts, msgs, rels = _network()
    msgs = [RNG.standard_normal((3, 2)), RNG.standard_normal((2, 1))]
    msgs[0][1, 0] = 0.0
    fig = viz.relevance_flow(acts, [torch.tensor(m) for m in msgs], rels)
    ax = fig.axes[0]
    (lines,) = [c for c in ax.collections if c.get_gid() == "messages"]
    segments = lines.get_segments()
    assert len(segments) == sum(int(np.count_nonzero(m)) for m in msgs) == 7
    nodes = _node_index(fig)
    widths = np.asarray(lines.get_linewidths())
    values = []
    for seg in segments:
        (k, i) = nodes[(round(float(seg[0][0]), 9), round(float(seg[0][1]), 9))]
        (k2, j) = nodes[(round(float(seg[1][0]), 9), round(float(seg[1][1]), 9))]
        assert k2 == k + 1
        values.append(msgs[k][i, j])
    values = np.array(values)
    order = np.argsort(np.abs(values))
    assert np.all(np.diff(widths[order]) > 0)  # strictly wider for larger |R_{i←j}|
    colours = np.asarray(lines.get_colors())
    assert np.all(colours[values > 0, 0] > colours[values > 0, 2])  # red
    assert np.all(colours[values < 0, 2] > colours[values < 0, 0])  # blue


def test_flow_nodes_are_coloured_by_relevance():
    acts, msgs, rels = _network()
    fig = viz.relevance_flow(acts, msgs, rels)
    ax = fig.axes[0]
    limit = max(np.abs(r).max() for r in rels)
    cmap = matplotlib.colormaps["bwr"]
    for c in ax.collections:
        if (c.get_gid() or "").startswith("neurons"):
            k = int(c.get_gid().split()[1])
            expected = cmap((rels[k] + limit) / (2 * limit))
            np.testing.assert_allclose(c.get_facecolors(), expected, atol=1e-12)
    texts = {t.get_gid(): t.get_text() for t in ax.texts if t.get_gid()}
    for k, r in enumerate(rels):
        for i, value in enumerate(r):
            assert parse(texts[f"R {k} {i}"]) == pytest.approx(value, rel=1e-2)


def test_flow_default_relevance_is_the_sum_of_messages_and_the_top_is_unknown():
    acts, msgs, rels = _network()
    fig = viz.relevance_flow(acts, msgs, layer_names=["x", "h", "y"])
    ax = fig.axes[0]
    faces = {c.get_gid(): c.get_facecolors() for c in ax.collections if c.get_gid()}
    np.testing.assert_allclose(faces["neurons 2"][0], to_rgba(viz.flow.UNKNOWN))
    assert "?" in [t.get_text() for t in ax.texts]
    limit = max(np.abs(r).max() for r in rels[:2])
    cmap = matplotlib.colormaps["bwr"]
    np.testing.assert_allclose(faces["neurons 0"], cmap((rels[0] + limit) / (2 * limit)))
    assert {"x", "h", "y"} <= {t.get_text() for t in ax.texts}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, m, r: (a, m[:1], r), "messages has 1"),
        (lambda a, m, r: (a, [m[0].T, m[1]], r), "messages[0]"),
        (lambda a, m, r: (a, m, r[:2]), "relevances has 2"),
        (lambda a, m, r: (a, m, [r[0][:2], r[1], r[2]]), "relevances[0]"),
        (lambda a, m, r: (a[:1], [], r), "at least two"),
        (lambda a, m, r: (np.zeros((2, 3)), m, r), "list"),
    ],
)
def test_flow_bad_input(change, message):
    with pytest.raises(InputError) as info:
        viz.relevance_flow(*change(*_network()))
    assert message in str(info.value)


# --------------------------------------------------------------------------------------
# lecture mode


def _sizes(fig):
    ax = fig.axes[0]
    ticks = [t.get_fontsize() for t in ax.get_yticklabels()]
    return ax.title.get_fontsize(), ticks[0], ax.spines["left"].get_linewidth()


def _drawn_tick_size(fig):
    """Tick label size after a real draw (ticks created lazily must keep the style)."""
    fig.savefig(io.BytesIO(), format="png")
    return fig.axes[0].yaxis.get_major_ticks()[-1].label1.get_fontsize()


def test_lecture_mode_scales_type_and_lines_and_restores_them():
    base = matplotlib.rcParams["font.size"]
    normal = _sizes(viz.bars([1.0, -1.0]))
    viz.lecture_mode(scale=2.0)
    assert style.current().lecture and style.current().font_size == 2.0 * base
    fig = viz.bars([1.0, -1.0])
    big = _sizes(fig)
    assert big[0] == pytest.approx(2 * normal[0])
    assert big[1] == pytest.approx(2 * normal[1])
    assert big[2] == pytest.approx(2 * normal[2])
    assert _drawn_tick_size(fig) == pytest.approx(2 * normal[1])
    assert matplotlib.rcParams["font.size"] == base  # the user's rcParams are untouched
    viz.lecture_mode(False)
    assert not style.current().lecture
    assert _sizes(viz.bars([1.0, -1.0])) == normal


def test_lecture_mode_as_context_manager_restores_the_previous_style():
    normal = _sizes(viz.bars([1.0]))
    with viz.lecture_mode(scale=1.5) as current:
        assert current.scale == 1.5
        inside = _sizes(viz.bars([1.0]))
        with viz.lecture_mode(False):
            assert _sizes(viz.bars([1.0])) == normal
        assert style.current().scale == 1.5
    assert not style.current().lecture
    assert inside == pytest.approx(tuple(1.5 * v for v in normal))
    assert _sizes(viz.bars([1.0])) == normal


def test_lecture_mode_is_not_applied_twice_in_nested_figures():
    base = matplotlib.rcParams["font.size"]
    with viz.lecture_mode(scale=2.0):
        fig = viz.compare({"a": np.eye(3), "b": np.eye(3)})
        assert fig.axes[0].title.get_fontsize() == pytest.approx(
            2.0 * matplotlib.font_manager.font_scalings["large"] * base
        )
        cbar_ax = fig.axes[-1]
        fig.savefig(io.BytesIO(), format="png")
        assert cbar_ax.yaxis.get_major_ticks()[0].label2.get_fontsize() == pytest.approx(2 * base)
        cell = cell_texts(viz.messages(*_three_two()).axes[1])[0]
        assert cell.get_fontsize() == pytest.approx(2.0 * base * 0.9)


def test_lecture_mode_rejects_a_bad_scale():
    with pytest.raises(InputError, match="scale"):
        viz.lecture_mode(scale=0)
    assert not style.current().lecture


def test_lecture_mode_reprs_say_what_happened():
    assert "on" in repr(viz.lecture_mode(scale=2))
    assert repr(viz.lecture_mode(False)) == "Lecture mode off."


# --------------------------------------------------------------------------------------
# saving, Agg


def test_save_writes_a_png(tmp_path):
    z, M = _three_two()
    figures = {
        "heatmap": viz.heatmap(RNG.standard_normal((3, 8, 8)), RNG.uniform(size=(8, 8, 3))),
        "compare": viz.compare({"a": np.eye(4), "b": -np.eye(4)}),
        "messages": viz.messages(z, M),
        "bars": viz.bars([1.0, -0.5]),
        "stabilization": viz.stabilization([1.0, -0.1], [1.1, -0.2]),
        "waterfall": viz.ledger_waterfall(_ledger()),
        "flow": viz.relevance_flow(*_network()),
    }
    for name, fig in figures.items():
        path = viz.save(fig, tmp_path / "sub" / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 2000


def test_save_bad_input(tmp_path):
    with pytest.raises(InputError, match="suffix"):
        viz.save(viz.bars([1.0]), tmp_path / "nosuffix")
    with pytest.raises(InputError, match="Figure"):
        viz.save("not a figure", tmp_path / "x.png")


def test_public_names():
    for name in (
        "heatmap",
        "compare",
        "messages",
        "bars",
        "stabilization",
        "ledger_waterfall",
        "relevance_flow",
        "root_points",
        "lecture_mode",
        "save",
        "style",
    ):
        assert name in viz.__all__ and hasattr(viz, name)
    assert callable(viz.style.current)


def test_student_figures_still_show_after_an_lrp_tutor_figure(monkeypatch):
    """The first figure of a Jupyter session is drawn inside our style context; leaving it
    must not switch off inline display of the student's own figures afterwards."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import numpy as np, lrp_tutor as lt\nfig = lt.viz.heatmap(np.eye(4)); fig"
        ),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);"),
    ]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    shown = [[o for o in cell.outputs if "image/png" in o.get("data", {})] for cell in nb.cells]
    assert len(shown[0]) == 1 and len(shown[1]) == 1


# --------------------------------------------------------------------------------------
# root_points: deep Taylor decomposition in the plane


def test_root_points_draws_the_input_the_roots_the_boundary_and_the_box():
    roots = {"z⁺": [0.725, 0.95], "w²": [0.76, 1.02]}
    fig = viz.root_points([2.0, -1.0], -0.5, [0.9, 0.95], roots, box=(0.0, 1.0))
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "z⁺", "w²"]
    markers = {line.get_label(): line.get_xydata()[0].tolist() for line in ax.lines}
    assert markers["x"] == [0.9, 0.95]
    assert markers["z⁺"] == [0.725, 0.95] and markers["w²"] == [0.76, 1.02]
    (box,) = [line for line in ax.lines if line.get_gid() == "box"]
    assert box.get_xydata().min(axis=0).tolist() == [0.0, 0.0]
    assert box.get_xydata().max(axis=0).tolist() == [1.0, 1.0]
    (boundary,) = [c for c in ax.collections if c.get_gid() == "boundary"]
    # every vertex of the drawn boundary lies on w·p + b = 0
    vertices = np.concatenate([p.vertices for p in boundary.get_paths()])
    assert len(vertices) > 2
    assert np.abs(vertices @ np.array([2.0, -1.0]) - 0.5).max() < 1e-6
    # every point drawn is inside the axes' limits
    for x, y in [*markers.values(), [0.0, 0.0], [1.0, 1.0]]:
        assert ax.get_xlim()[0] < x < ax.get_xlim()[1] and ax.get_ylim()[0] < y < ax.get_ylim()[1]


def test_root_points_shades_the_active_side():
    fig = viz.root_points(torch.tensor([1.0, 1.0]), -1.0, np.array([1.0, 1.0]), {})
    (ax,) = fig.axes
    (active,) = [c for c in ax.collections if c.get_gid() == "active"]
    inside = np.concatenate([p.vertices for p in active.get_paths()])
    assert (inside @ np.array([1.0, 1.0]) - 1.0 >= -1e-6).all()  # only z ≥ 0 is shaded


@pytest.mark.parametrize(
    "args, message",
    [
        (([1.0, 2.0, 3.0], 0.0, [1.0, 1.0], {}), "w must be a finite point"),
        (([1.0, 2.0], 0.0, [1.0], {}), "x must be a finite point"),
        (([1.0, 2.0], "0", [1.0, 1.0], {}), "b must be a finite number"),
        (([0.0, 0.0], 0.0, [1.0, 1.0], {}), "w is zero"),
        (([1.0, 2.0], 0.0, [1.0, 1.0], [[0.0, 0.0]]), "roots must be a mapping"),
        (([1.0, 2.0], 0.0, [1.0, 1.0], {"z⁺": [0.0, np.nan]}), "NaN"),
    ],
)
def test_root_points_bad_input(args, message):
    with pytest.raises(InputError, match=message):
        viz.root_points(*args)


def test_root_points_box_must_be_ordered():
    with pytest.raises(InputError, match="low < high"):
        viz.root_points([1.0, 1.0], 0.0, [0.5, 0.5], {}, box=(1.0, 0.0))
