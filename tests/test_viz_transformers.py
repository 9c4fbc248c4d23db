"""Tests of the transformer views of lrp_tutor.viz: token heatmaps (HTML), ViT patch overlays."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

import lrp_tutor.viz as viz  # noqa: E402
from lrp_tutor.errors import InputError  # noqa: E402
from lrp_tutor.viz import style  # noqa: E402
from lrp_tutor.zoo.vit import VisionTransformer  # noqa: E402


@pytest.fixture(autouse=True)
def _normal_style_and_no_open_figures():
    before = plt.get_fignums()
    yield
    style.lecture_mode(False)
    assert plt.get_fignums() == before, "a viz function left a pyplot figure open"


def backgrounds(html: str) -> list[tuple[float, float, float]]:
    """The background colour of each token span, as RGB in [0, 1]."""
    spans = re.findall(r'<span class="lrp-token" style="background-color:(#[0-9a-f]{6})', html)
    return [to_rgb(c) for c in spans]


def font_px(html: str) -> float:
    return float(re.search(r'class="lrp-token-heatmap" style="font-size:([0-9.]+)px', html)[1])


# --- token heatmaps -------------------------------------------------------------------------


def test_tokens_are_html_escaped():
    tokens = ["<script>alert('x')</script>", "a&b", '"q"', "<b>"]
    html = viz.token_heatmap_html(tokens, [1.0, 0.5, -0.5, 0.0])
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "a&amp;b" in html and "&quot;q&quot;" in html and "&lt;b&gt;" in html
    assert html.count('class="lrp-token"') == 4


def test_no_latex_reaches_the_notebook():
    html = viz.token_heatmap_html(["$x$", "\\(y\\)", "cost"], [0.2, -0.1, 0.3])
    assert "$" not in html and "\\" not in html
    assert "&#36;x&#36;" in html and "&#92;(y&#92;)" in html


def test_colour_says_sign_and_strength():
    R = np.array([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0])
    colors = backgrounds(viz.token_heatmap_html([f"t{i}" for i in range(7)], R))
    red = [r - b for r, _, b in colors]
    assert all(d > 0 for d in red[:3]) and all(d < 0 for d in red[4:])
    assert colors[3] == pytest.approx((1.0, 1.0, 1.0), abs=0.01)  # zero relevance is white
    assert red[0] > red[1] > red[2] and red[6] < red[5] < red[4]  # stronger, more saturated
    assert colors[0] == pytest.approx((1.0, 0.0, 0.0)) and colors[6] == pytest.approx((0, 0, 1))


def test_normalisation_is_symmetric():
    colors = backgrounds(viz.token_heatmap_html(["a", "b", "c"], [4.0, -2.0, 2.0]))
    # −2 is as far from white towards blue as +2 is towards red
    (r_neg, g_neg, b_neg), (r_pos, g_pos, b_pos) = colors[1], colors[2]
    assert (r_neg, g_neg, b_neg) == pytest.approx((b_pos, g_pos, r_pos), abs=0.01)
    assert 0.4 < r_neg < 0.6  # half way: v = max |R| = 4


def test_a_fixed_limit_puts_two_texts_on_one_scale():
    one = backgrounds(viz.token_heatmap_html(["a"], [1.0], normalize=4.0))
    other = backgrounds(viz.token_heatmap_html(["a", "b"], [1.0, 4.0], normalize=4.0))
    assert one[0] == other[0] != other[1]
    by_max = backgrounds(viz.token_heatmap_html(["a"], [1.0]))
    assert by_max[0] == pytest.approx((1.0, 0.0, 0.0))
    by_sum = backgrounds(viz.token_heatmap_html(["a", "b"], [1.0, -1.0], normalize="sum"))
    assert 0.4 < by_sum[0][1] < 0.6  # each token holds half of all relevance


def test_legend_shows_the_range():
    html = viz.token_heatmap_html(["a", "b"], [0.25, -0.125])
    assert "lrp-token-legend" in html and "linear-gradient" in html
    assert "−0.25" in html and "+0.25" in html
    assert "lrp-token-legend" not in viz.token_heatmap_html(["a"], [1.0], legend=False)


def test_hover_shows_each_relevance():
    html = viz.token_heatmap_html(["a", "b"], [0.5, -1.5])
    assert 'title="R = 0.5"' in html and 'title="R = −1.5"' in html


def test_lecture_mode_and_font_size():
    normal = font_px(viz.token_heatmap_html(["a"], [1.0]))
    with style.lecture_mode(scale=2.0):
        lecture = font_px(viz.token_heatmap_html(["a"], [1.0]))
    assert lecture == pytest.approx(2 * normal)
    assert font_px(viz.token_heatmap_html(["a"], [1.0], font_size=30)) == 30


def test_token_heatmap_object_shows_itself_in_notebooks():
    R = torch.tensor([[0.5, -1.0]])  # a batch of one
    view = viz.token_heatmap(["good", "<bad>"], R, title="class 1")
    assert isinstance(view, viz.TokenHeatmap)
    assert view._repr_html_() == viz.token_heatmap_html(["good", "<bad>"], R, title="class 1")
    assert str(view) == "good(0.5) <bad>(−1)"
    assert ">class 1<" in view.html


def test_separator_joins_the_tokens():
    html = viz.token_heatmap_html(["un", "believ", "able"], [1, 0, -1], separator="")
    assert "</span><span" in html
    assert "</span> <span" in viz.token_heatmap_html(["a", "b"], [1, 0])


@pytest.mark.parametrize(
    ("tokens", "relevance", "kwargs", "match"),
    [
        (["a", "b"], [1.0], {}, "1 values but there are 2 tokens"),
        ("a b", [1.0, 2.0], {}, "single string"),
        ([1, 2], [1.0, 2.0], {}, "tokens must be strings"),
        (["a"], [float("nan")], {}, "NaN"),
        (["a"], [[1.0, 2.0], [3.0, 4.0]], {}, "1-D"),
        (["a"], [1.0], {"normalize": "mean"}, "normalize must be"),
        (["a"], [1.0], {"normalize": -1.0}, "> 0"),
        (["a"], [1.0], {"font_size": 0}, "font_size"),
        (["a"], [1.0], {"cmap": "nope"}, "colormap"),
    ],
)
def test_token_heatmap_refuses_what_does_not_fit(tokens, relevance, kwargs, match):
    with pytest.raises(InputError, match=match):
        viz.token_heatmap_html(tokens, relevance, **kwargs)


# --- patch overlays -------------------------------------------------------------------------


def drawn(fig, gid="relevance"):
    (image,) = [im for im in fig.axes[0].images if im.get_gid() == gid]
    return np.asarray(image.get_array()), image


@pytest.mark.parametrize(("row", "col"), [(0, 0), (1, 2), (3, 3), (2, 0)])
def test_one_relevant_patch_lights_up_its_region(row, col):
    R = np.zeros(17)
    R[1 + 4 * row + col] = 1.0  # class token first, then the 4 × 4 grid row by row
    fig = viz.patch_overlay(np.random.default_rng(0).random((28, 28)), R, patch_size=7)
    relevance, image = drawn(fig)
    assert relevance.shape == (28, 28)
    expected = np.zeros((28, 28), dtype=bool)
    expected[7 * row : 7 * row + 7, 7 * col : 7 * col + 7] = True
    np.testing.assert_array_equal(relevance != 0, expected)
    np.testing.assert_array_equal(np.asarray(image.get_alpha()) > 0, expected)


def test_patch_order_is_the_order_of_the_vits_tokens():
    """The region a token's patch covers in the figure is the region that feeds that token."""
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=24, patch_size=6, num_layers=1, num_heads=1, hidden_dim=4, mlp_dim=4,
        num_classes=2, in_channels=1,
    )  # fmt: skip
    x = torch.zeros(1, 1, 24, 24)
    x[0, 0, 12:18, 6:12] = 1.0  # one patch: row 2, column 1
    with torch.no_grad():
        changed = (model._process_input(x) - model._process_input(0 * x)).abs().sum(-1)[0]
    (token,) = torch.nonzero(changed).flatten().tolist()
    R = torch.zeros(1, 17, 4)
    R[0, 1 + token] = 1.0  # (batch, tokens, embedding dims), class token first
    relevance, _ = drawn(viz.patch_overlay(x, R, patch_size=6))
    np.testing.assert_array_equal(relevance != 0, (x[0, 0] != 0).numpy())


def test_class_token_is_left_out_and_reported():
    R = np.arange(17.0)
    fig = viz.patch_overlay(np.zeros((1, 28, 28)), R, patch_size=7)
    relevance, _ = drawn(fig)
    np.testing.assert_array_equal(relevance[::7, ::7], np.arange(1.0, 17.0).reshape(4, 4))
    assert fig.axes[0].get_xlabel() == "Σ R (patches) = 136,  class token 0"
    no_class = viz.patch_overlay(np.zeros((28, 28)), R[1:], patch_size=7)
    np.testing.assert_array_equal(drawn(no_class)[0], relevance)
    assert "class token" not in no_class.axes[0].get_xlabel()


def test_patch_grid_reads_every_layout():
    grid = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(viz.patch_grid(grid, (2, 3)), grid)
    np.testing.assert_array_equal(viz.patch_grid(np.arange(6.0), (2, 3)), grid)
    with_dims = np.repeat(np.arange(7.0)[:, None], 2, axis=1) / 2  # (tokens, dims)
    np.testing.assert_array_equal(viz.patch_grid(with_dims[None], (2, 3)), grid + 1)
    explicit = viz.patch_grid(np.arange(7.0), (2, 3), class_token=True)
    np.testing.assert_array_equal(explicit, grid + 1)


def test_rectangular_images_and_given_axes():
    fig, ax = plt.subplots()
    plt.close(fig)
    R = np.zeros(6)
    R[5] = -2.0  # row 1, column 2 of a 2 × 3 grid
    out = viz.patch_overlay(np.ones((3, 8, 12)), R, patch_size=4, ax=ax, colorbar=False)
    assert out is fig
    relevance = np.asarray([im for im in ax.images if im.get_gid() == "relevance"][0].get_array())
    assert relevance.shape == (8, 12) and relevance[4:, 8:].min() == -2.0
    assert np.count_nonzero(relevance) == 16


@pytest.mark.parametrize(
    ("image", "relevance", "patch_size", "match"),
    [
        (np.zeros((28, 28)), np.zeros(17), 5, "whole number of 5×5 patches"),
        (np.zeros((28, 28)), np.zeros(10), 7, "10 tokens"),
        (np.zeros((28, 28)), np.zeros(17), 0, "patch_size"),
        (np.zeros((28, 28)), np.zeros(17), 7.0, "patch_size"),
        (np.zeros((2, 1, 28, 28)), np.zeros(17), 7, "batch of 2"),
        (np.zeros((28, 28)), np.zeros((2, 17)), 7, "batch of 2 samples"),
        (np.zeros((28, 28)), np.zeros((1, 17, 3, 2)), 7, "one sample"),
        (np.zeros(28), np.zeros(17), 7, "image must be"),
    ],
)
def test_patch_overlay_refuses_what_does_not_fit(image, relevance, patch_size, match):
    with pytest.raises(InputError, match=match):
        viz.patch_overlay(image, relevance, patch_size)
