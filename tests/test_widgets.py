"""Tests of lrp_tutor.widgets, driven as a user drives them: set ``.value``, ``.click()``.

Headless: no front-end is needed; the widgets' state, their figures' data and the PNG bytes
their images hold are checked against the stepper and the fast path computed independently.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools  # noqa: E402
import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from torch import nn  # noqa: E402

import lrp_tutor.widgets as widgets  # noqa: E402
from lrp_tutor.composites import Composite  # noqa: E402
from lrp_tutor.errors import InputError  # noqa: E402
from lrp_tutor.fast import explain  # noqa: E402
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Gamma, ZBox, ZPlus  # noqa: E402
from lrp_tutor.stepper import Walkthrough  # noqa: E402
from lrp_tutor.viz import style  # noqa: E402
from lrp_tutor.widgets._image import PNG_SIGNATURE, LiveHeatmap  # noqa: E402


@pytest.fixture(autouse=True)
def _normal_style_and_no_open_figures():
    before = plt.get_fignums()
    yield
    style.lecture_mode(False)
    assert plt.get_fignums() == before, "a widget left a pyplot figure open"


def digits_cnn() -> nn.Sequential:
    """The architecture of lrp_tutor.zoo's digits CNN (8×8 input), random weights."""
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
    )
    with torch.no_grad():  # biases large enough that the bias absorbs something
        for module in model:
            if hasattr(module, "bias") and module.bias is not None:
                module.bias.uniform_(-0.3, 0.3)
    return model.double().eval()


@pytest.fixture(scope="module")
def model() -> nn.Sequential:
    return digits_cnn()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def image_of(ax, gid):
    (found,) = [im for im in ax.images if im.get_gid() == gid]
    return found


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def first_logit(model, x) -> float:
    with torch.no_grad():
        out = model(x)[0]
    return float(out.max())


# --------------------------------------------------------------------------------------
# the stepper widget


def test_stepper_next_walks_from_output_to_input_showing_messages_and_running_sum(model, x):
    walk = Walkthrough(model).forward(x).backward(rule=Epsilon(0.5))
    widget = widgets.stepper(walk)
    n = len(walk)
    start = float(walk.output.reshape(-1)[walk.target])
    assert widget.position == 0 and widget.step is walk[n - 1]
    pictures, absorbed_before = set(), 0.0
    for position in range(n):
        step = walk[n - 1 - position]
        assert widget.position == position
        assert widget.step is step
        # what is drawn: the step's own z_ij and messages R_{i<-j}
        shown = widget.figures["messages"]
        np.testing.assert_array_equal(
            image_of(shown.axes[1], "messages").get_array(), step.messages.R_ij
        )
        np.testing.assert_array_equal(
            image_of(shown.axes[0], "z_ij").get_array(), step.forward.z_ij
        )
        assert step.label in widget.header.value
        pictures.add(widget.messages_image.value)
        # the running conservation sum, read from the ledger
        s = widget.running
        assert s["start"] == pytest.approx(start, rel=1e-12)
        assert s["passed"] == pytest.approx(step.relevance_in.sum(), rel=1e-12, abs=1e-12)
        assert s["passed"] + s["bias"] + s["stabilizer"] == pytest.approx(start, abs=1e-10)
        absorbed = s["bias"] + s["stabilizer"]
        if step.rule is None:  # routing layers absorb nothing
            assert absorbed == pytest.approx(absorbed_before, abs=1e-12)
        absorbed_before = absorbed
        current_row = widget.books.value.split("font-weight:bold")[1].split("</tr>")[0]
        assert step.label in current_row
        assert widget.previous_button.disabled == (position == 0)
        assert widget.next_button.disabled == (position == n - 1)
        widget.next_button.click()
    assert widget.position == n - 1  # ▶ at the input layer stays there
    assert len(pictures) == n  # every layer drew its own picture
    assert widget.running["passed"] == pytest.approx(walk.relevance.sum(), abs=1e-12)
    assert widget.running["bias"] != 0.0 and widget.running["stabilizer"] != 0.0
    widget.previous_button.click()
    assert widget.step is walk[1]


def test_stepper_slider_is_the_position_so_arrow_keys_move_layers(model, x):
    widget = widgets.stepper(model, x, rule=LRP0())
    widget.slider.value = 3
    assert widget.step is widget.walk[len(widget.walk) - 1 - 3]
    widget.play.value = 1  # the ▷ button is linked to the slider in the front-end only
    assert widget.slider.max == len(widget.walk) - 1


def test_stepper_aggregation_figure_shows_R_i(model, x):
    widget = widgets.stepper(model, x)
    top = widget.step  # the Linear layer: a vector of 32 inputs, bars
    bars = widget.figures["aggregation"].axes[0].patches
    np.testing.assert_allclose([p.get_height() for p in bars], top.relevance_in, rtol=0, atol=0)
    widget.slider.value = widget.slider.max  # the first convolution: an 8×8 input map
    shown = image_of(widget.figures["aggregation"].axes[0], "relevance").get_array()
    np.testing.assert_allclose(shown, widget.step.relevance_in.sum(axis=0), rtol=0, atol=1e-15)


def test_stepper_accepts_layer_lists_and_says_what_is_missing():
    layers = [(np.array([[1.0, -1.0], [2.0, 1.0]]), np.array([0.0, 0.5]), "relu")]
    layers.append((np.ones((2, 1)), None, None))
    widget = widgets.stepper(layers, np.array([1.0, 1.0]), rule=LRP0())
    assert widget.walk.target == 0 and len(widget.walk) == 3
    with pytest.raises(InputError, match="x is missing"):
        widgets.stepper(layers)
    with pytest.raises(InputError, match="no input yet"):
        widgets.stepper(Walkthrough(layers))
    with pytest.raises(InputError, match="propagated Walkthrough"):
        widgets.StepperWidget(Walkthrough(layers))
    with pytest.raises(InputError, match="propagated Walkthrough"):
        widgets.NeuronInspector(Walkthrough(layers).forward(np.ones(2)))


# --------------------------------------------------------------------------------------
# the rule explorer


def test_explorer_epsilon_slider_changes_the_png_and_matches_the_fast_path(model, x):
    explorer = widgets.rule_explorer(model, x, epsilon=0.1, epsilon_max=2.0)
    assert explorer.rule_menu.value == "ε" and not explorer.epsilon.disabled
    seen = {explorer.image.value}
    for epsilon in (0.3, 1.0, 2.0):
        explorer.epsilon.value = epsilon
        assert explorer.rule == Epsilon(epsilon)
        expected = explain(model, x, rule=Epsilon(epsilon))
        assert torch.equal(explorer.explanation.relevance, expected.relevance)
        assert explorer.image.value not in seen
        seen.add(explorer.image.value)
        shown = image_of(explorer.figure.axes[0], "relevance")
        np.testing.assert_array_equal(shown.get_array(), expected.relevance[0, 0].numpy())
        low, high = shown.get_clim()
        assert low == -high > -np.inf and high >= np.percentile(
            np.abs(expected.relevance.numpy()), 99
        )
    assert explorer.live_heatmap.redraws == 1  # every slider move updated the figure in place
    assert "f_c(x)" in explorer.status.value and explorer.error is None


def test_explorer_in_place_update_draws_what_a_fresh_heatmap_draws():
    R1, R2 = np.arange(16.0).reshape(4, 4) - 5, np.eye(4) * 3 - 1
    live = LiveHeatmap(np.linspace(0, 1, 16).reshape(4, 4))
    live.render(R1, title="one")
    live.render(R2, title="two")
    fresh = LiveHeatmap(np.linspace(0, 1, 16).reshape(4, 4))
    fresh.render(R2, title="two")
    a, b = live.figure.axes[0], fresh.figure.axes[0]
    for gid in ("relevance", "image"):
        np.testing.assert_array_equal(image_of(a, gid).get_array(), image_of(b, gid).get_array())
    assert image_of(a, "relevance").get_clim() == image_of(b, "relevance").get_clim()
    np.testing.assert_array_equal(
        image_of(a, "relevance").get_alpha(), image_of(b, "relevance").get_alpha()
    )
    assert (a.get_title(), a.get_xlabel()) == (b.get_title(), b.get_xlabel())
    assert live.redraws == 1 and fresh.redraws == 1


def test_explorer_rule_menu_gamma_and_alphabeta_follow_their_sliders(model, x):
    explorer = widgets.rule_explorer(model, x)
    explorer.rule_menu.buttons["γ"].click()  # the rule menu is a row of buttons
    assert explorer.rule_menu.value == "γ"
    assert explorer.rule_menu.buttons["γ"].button_style == "primary"
    assert explorer.rule_menu.buttons["ε"].button_style == ""
    assert explorer.epsilon.disabled and not explorer.gamma.disabled and explorer.alpha.disabled
    explorer.gamma.value = 0.7
    assert torch.equal(explorer.explanation.relevance, explain(model, x, rule=Gamma(0.7)).relevance)
    explorer.rule_menu.value = "αβ"
    explorer.alpha.value = 3.0
    assert explorer.rule == AlphaBeta(3.0, 2.0)
    assert "β = α − 1 = 2" in explorer.beta_label.value
    assert torch.equal(
        explorer.explanation.relevance, explain(model, x, rule=AlphaBeta(3.0)).relevance
    )
    explorer.rule_menu.value = "z⁺"
    assert torch.equal(explorer.explanation.relevance, explain(model, x, rule=ZPlus()).relevance)
    explorer.rule_menu.value = "LRP-0"
    assert torch.equal(explorer.explanation.relevance, explain(model, x, rule=LRP0()).relevance)


def test_explorer_sliders_at_their_ends_give_finite_images(model, x):
    explorer = widgets.rule_explorer(model, x)
    moves = [
        ("ε", explorer.epsilon, explorer.epsilon.min),
        ("ε", explorer.epsilon, explorer.epsilon.max),
        ("γ", explorer.gamma, explorer.gamma.min),
        ("γ", explorer.gamma, explorer.gamma.max),
        ("αβ", explorer.alpha, explorer.alpha.min),
        ("αβ", explorer.alpha, explorer.alpha.max),
    ]
    for rule, slider, value in moves:
        explorer.rule_menu.value = rule
        slider.value = value
        assert explorer.error is None, explorer.status.value
        assert torch.isfinite(explorer.explanation.relevance).all()
        width, height = png_size(explorer.image.value)
        assert width > 100 and height > 100
    assert explorer.rule == AlphaBeta(explorer.alpha.max)
    explorer.rule_menu.value = "αβ"
    explorer.alpha.value = 1.0
    assert explorer.rule == AlphaBeta(1.0, 0.0)  # β = 0: the z⁺ rule


def test_explorer_first_layer_rule_and_target_menu(model, x):
    explorer = widgets.rule_explorer(model, x, bounds=(0.0, 1.0))
    explorer.first_menu.value = "z^B"
    composite = Composite(default=Epsilon(explorer.epsilon.value), first=ZBox(0.0, 1.0))
    expected = explain(model, x, composite=composite)
    assert torch.equal(explorer.explanation.relevance, expected.relevance)
    other = (int(expected.target[0]) + 1) % 10
    explorer.target_menu.buttons[str(other)].click()
    assert int(explorer.explanation.target[0]) == other
    assert torch.equal(
        explorer.explanation.relevance,
        explain(model, x, target=other, composite=composite).relevance,
    )


def test_explorer_shows_an_lrp_error_instead_of_raising(model, x):
    explorer = widgets.rule_explorer(model, x, bounds=(1.0, 1.0))
    picture = explorer.image.value
    explorer.first_menu.value = "z^B"  # low = high: ZBox refuses
    assert explorer.error is not None and "low must be < high" in explorer.error
    assert "Cannot explain" in explorer.status.value
    assert explorer.image.value == picture  # the last good picture stays
    explorer.first_menu.value = "same"
    assert explorer.error is None


def test_explorer_live_or_on_release(model, x):
    slow = widgets.rule_explorer(model, x, live_budget=0.0)
    assert not slow.live and not slow.epsilon.continuous_update
    assert "on release" in slow.status.value
    fast = widgets.rule_explorer(model, x, live=True)
    assert fast.live and fast.epsilon.continuous_update and fast.alpha.continuous_update


def test_explorer_checks_its_arguments(model, x):
    with pytest.raises(InputError, match="batch dimension of 1"):
        widgets.rule_explorer(model, x[0, 0])
    with pytest.raises(InputError, match="cannot take x of shape"):
        widgets.rule_explorer(model, x[0])
    with pytest.raises(InputError, match="rule must be one of"):
        widgets.rule_explorer(model, x, rule="epsilon")
    with pytest.raises(InputError, match="target must be a class index"):
        widgets.rule_explorer(model, x, target=10)
    with pytest.raises(InputError, match="scale"):
        widgets.rule_explorer(model, x, scale=0)
    with pytest.raises(InputError, match="threads"):
        widgets.rule_comparison(model, x, threads=0)


def test_explorer_leaves_the_model_as_it_was(x):
    model = digits_cnn().train()
    model[0].eval()  # mixed modes must come back mixed
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "explained in eval mode"
        explorer = widgets.rule_explorer(model, x)
        explorer.epsilon.value = 0.5
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.get_num_threads() == threads


# --------------------------------------------------------------------------------------
# the neuron inspector


def test_inspector_shows_the_chosen_neurons_z_ij_and_denominators(model, x):
    walk = Walkthrough(model).forward(x).backward(rule=AlphaBeta(2.0))
    inspector = widgets.neuron_inspector(walk, max_inputs=10)
    for layer, neuron in [(3, 37), (3, (5, 1, 2)), (7, 4), (0, 100)]:
        inspector.layer.value = layer
        flat = (
            neuron
            if isinstance(neuron, int)
            else int(np.ravel_multi_index(neuron, walk[layer].a.shape))
        )
        inspector.neuron.value = flat
        reference = walk[layer].neuron(neuron)
        np.testing.assert_array_equal(inspector.z_ij, reference.forward.z_ij[:, 0])
        np.testing.assert_array_equal(inspector.R_ij, reference.messages.R_ij[:, 0])
        shown = inspector.shown_inputs
        assert shown.size == min(10, inspector.z_ij.size)
        kept = np.abs(inspector.z_ij[shown]).min()
        assert np.all(np.abs(np.delete(inspector.z_ij, shown)) <= kept)
        figure = inspector.figures["messages"]
        np.testing.assert_array_equal(
            image_of(figure.axes[0], "z_ij").get_array()[:, 0], inspector.z_ij[shown]
        )
        np.testing.assert_array_equal(
            image_of(figure.axes[1], "messages").get_array()[:, 0], inspector.R_ij[shown]
        )
        parts = reference.messages.parts
        assert inspector.denominators == {p.label: float(p.denominator[0]) for p in parts}
        plotted = inspector.figures["denominators"].axes[0].lines
        stabilized = [line for line in plotted if line.get_gid() == "stabilized"][0]
        np.testing.assert_array_equal(stabilized.get_xdata(), [p.denominator[0] for p in parts])
        assert f"{float(reference.forward.z_j[0]):.4g}".replace("-", "−") in inspector.numbers.value


def test_inspector_layer_change_picks_the_strongest_neuron(model, x):
    inspector = widgets.neuron_inspector(model, x, rule=Epsilon(0.1), layer="3")
    step = inspector.step
    assert inspector.neuron.max == step.a.size - 1
    assert inspector.neuron.value == int(np.argmax(np.abs(step.relevance_out)))
    inspector.neuron.value = 0
    inspector.strongest_button.click()
    assert inspector.neuron.value == int(np.argmax(np.abs(step.relevance_out)))
    inspector.layer.value = 1  # a ReLU routes relevance: no denominator figure
    assert inspector.neuron.max == inspector.walk[1].a.size - 1
    assert inspector.denominators == {} and inspector.denominator_image.layout.display == "none"
    inspector.layer.value = 7
    assert inspector.denominator_image.layout.display is None
    with pytest.raises(InputError, match="not in the walkthrough"):
        widgets.neuron_inspector(model, x, layer="features.9")


# --------------------------------------------------------------------------------------
# the rule comparison


def relevance_panels(figure):
    return [
        (ax.get_title(), im.get_array())
        for ax in figure.axes
        for im in ax.images
        if im.get_gid() == "relevance"
    ]


def test_comparison_shows_one_panel_per_checked_rule(model, x):
    rules = {"LRP-0": LRP0(), "ε=0.5": Epsilon(0.5), "γ": Gamma(0.25), "z⁺": ZPlus()}
    comparison = widgets.rule_comparison(model, x, rules=rules, checked=["LRP-0"])
    for name in ("z⁺", "ε=0.5", "γ"):
        before = comparison.image.value
        comparison.boxes[name].value = True
        assert comparison.image.value != before
        panels = relevance_panels(comparison.figure)
        assert [title for title, _ in panels] == comparison.checked == comparison.panels
        for title, shown in panels:
            expected = explain(model, x, rule=rules[title]).relevance[0, 0].numpy()
            np.testing.assert_array_equal(shown, expected)
    comparison.boxes["LRP-0"].value = False
    assert len(relevance_panels(comparison.figure)) == 3
    assert len(comparison.explanations) == 4  # each rule was explained once


def test_comparison_with_nothing_ticked_says_so(model, x):
    comparison = widgets.rule_comparison(model, x, checked=["z⁺"])
    comparison.boxes["z⁺"].value = False
    assert comparison.panels == [] and comparison.figure is None
    assert comparison.image.layout.display == "none" and "Tick" in comparison.status.value
    comparison.boxes["α2β1"].value = True
    assert comparison.panels == ["α2β1"] and comparison.image.layout.display is None
    with pytest.raises(InputError, match="not among the rules"):
        widgets.rule_comparison(model, x, checked=["nonsense"])
    with pytest.raises(InputError, match="not a rule"):
        widgets.rule_comparison(model, x, rules={"eps": Epsilon})


# --------------------------------------------------------------------------------------
# lecture mode, menus, display, terminal


def test_menus_are_button_rows_up_to_twelve_options_and_dropdowns_beyond():
    from lrp_tutor.widgets._choice import Choice, choice
    from lrp_tutor.widgets._look import Look

    look = Look(2.0)
    menu = choice(look, [("predicted", -1), ("0", 0), ("1", 1)], -1)
    assert isinstance(menu, Choice)
    assert all(b.style.font_size == "28px" for b in menu.buttons.values())
    seen = []
    menu.observe(lambda change: seen.append(change["new"]), names="value")
    menu.buttons["1"].click()
    menu.buttons["1"].click()  # the same again: no change
    menu.value = 0
    assert seen == [1, 0]
    with pytest.raises(Exception, match="not one of the options"):
        menu.value = 5
    menu.disabled = True
    assert menu.disabled and all(b.disabled for b in menu.buttons.values())
    long = choice(look, list(range(13)), 4)
    assert long.__class__.__name__ == "Dropdown" and long.value == 4
    with pytest.raises(InputError, match="is not one of"):
        choice(look, ["a", "b"], "c")


def test_scale_enlarges_text_and_figures(model, x):
    normal = widgets.rule_explorer(model, x, scale=1.0)
    large = widgets.rule_explorer(model, x, scale=2.0)
    assert large.status.style.font_size == "28px" and normal.status.style.font_size == "14px"
    assert large.beta_label.style.font_size == "28px"
    (w1, h1), (w2, h2) = png_size(normal.image.value), png_size(large.image.value)
    assert w2 > w1 and h2 > h1
    large.epsilon.value = 0.5  # also after an update in place
    normal.epsilon.value = 0.5
    for part in ("title", "xaxis.label"):
        size = {w: w.figure.axes[0] for w in (normal, large)}
        big = _text(size[large], part).get_fontsize()
        assert big > _text(size[normal], part).get_fontsize()
    assert style.current().scale == 1.0  # the widget's scale did not leak


def _text(ax, part):
    return ax.title if part == "title" else ax.xaxis.label


def test_widgets_follow_lecture_mode_when_no_scale_is_given(model, x):
    normal = widgets.stepper(model, x)
    with style.lecture_mode(scale=2.0):
        lecture = widgets.stepper(model, x)
        inspector = widgets.neuron_inspector(model, x)
        comparison = widgets.rule_comparison(model, x, checked=["LRP-0"])
    assert lecture.header.style.font_size == "32px"  # 16 px headers ×2
    assert lecture.next_button.style.font_size == "28px"
    assert inspector.numbers.style.font_size == "28px"
    assert comparison.status.style.font_size == "28px"
    assert png_size(lecture.messages_image.value)[0] > png_size(normal.messages_image.value)[0]


def test_widgets_display_as_widgets_and_save_in_a_terminal(model, x, tmp_path):
    made = [
        widgets.stepper(model, x),
        widgets.rule_explorer(model, x),
        widgets.neuron_inspector(model, x),
        widgets.rule_comparison(model, x),
    ]
    for k, widget in enumerate(made):
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert (
            bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.widget.model_id
        )
        path = widget.save(tmp_path / f"widget{k}.png")
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        assert repr(widget).startswith(f"<{type(widget).__name__}")


# ---- layout: every figure a widget shows lies whole inside its picture ------------------------


def layout_problems(figure, png: bytes, tolerance: float = 1.0) -> list[str]:
    """What of ``figure`` (as the widget last drew it into ``png``) lies outside the canvas,
    and which panels overlap.

    A panel is an axes with its colorbars: the union of their tight bounding boxes (title,
    tick labels, axis labels, secondary axes, legend, colorbar label). Figure texts (the
    suptitle) count as panels too. Nothing may stick out of the canvas by more than
    ``tolerance`` pixels, and no two panels may overlap by more than that in both directions.
    """
    assert png_size(png) == figure.canvas.get_width_height(), "the PNG is not this figure"
    renderer = figure.canvas.get_renderer()
    canvas = figure.bbox
    colorbars = {id(c) for ax in figure.axes for c in getattr(ax, "_colorbars", [])}
    panels = []
    for ax in figure.axes:
        if id(ax) in colorbars or not ax.get_visible():
            continue
        boxes = [a.get_tightbbox(renderer) for a in [ax, *getattr(ax, "_colorbars", [])]]
        name = f"panel {ax.get_title() or ax.get_label()!r}"
        panels.append((name, Bbox.union([b for b in boxes if b is not None])))
    for text in figure.texts:
        if text.get_visible() and text.get_text():
            panels.append((f"text {text.get_text()!r}", text.get_window_extent(renderer)))
    problems = []
    for name, box in panels:
        out = {
            "left": canvas.x0 - box.x0,
            "bottom": canvas.y0 - box.y0,
            "right": box.x1 - canvas.x1,
            "top": box.y1 - canvas.y1,
        }
        problems += [
            f"{name} sticks out of the {side} edge by {by:.0f} px"
            for side, by in out.items()
            if by > tolerance
        ]
    for (name1, box1), (name2, box2) in itertools.combinations(panels, 2):
        width = min(box1.x1, box2.x1) - max(box1.x0, box2.x0)
        height = min(box1.y1, box2.y1) - max(box1.y0, box2.y0)
        if width > tolerance and height > tolerance:
            problems.append(f"{name1} and {name2} overlap ({width:.0f} × {height:.0f} px)")
    return problems


@pytest.fixture(scope="module")
def deck():
    """The models and inputs of the lecture deck (notebooks/lecture_demo.ipynb)."""
    from types import SimpleNamespace

    from lrp_tutor import zoo
    from lrp_tutor.analysis import spray

    torch.manual_seed(0)
    digits, _ = zoo.digits_samples()
    patches, _ = zoo.texture_samples()
    rng = np.random.default_rng(0)
    return SimpleNamespace(
        mlp_walk=Walkthrough(zoo.digits_mlp()).forward(digits[6]).backward(),
        cnn_walk=Walkthrough(zoo.digits_cnn()).forward(digits[6:7]).backward(),
        textures=zoo.textures_cnn(),
        patch=patches[8:9],
        clusters=spray(rng.normal(size=(30, 6, 6)), size=None, n_neighbors=4),
        cluster_images=rng.random((30, 6, 6)),
    )


def _stepper_views(deck):
    for walk in (deck.mlp_walk, deck.cnn_walk):
        stepper = widgets.stepper(walk)
        for position in range(len(walk)):
            stepper.slider.value = position
            for key, image in (
                ("messages", stepper.messages_image),
                ("aggregation", stepper.aggregation_image),
            ):
                yield f"step {position} {key}", stepper.figures[key], image.value


def _inspector_views(deck):
    for layer in [step.label for step in deck.mlp_walk]:
        inspector = widgets.neuron_inspector(deck.mlp_walk, layer=layer)
        yield f"{layer} messages", inspector.figures["messages"], inspector.messages_image.value
        if "denominators" in inspector.figures:
            figure, png = inspector.figures["denominators"], inspector.denominator_image.value
            yield f"{layer} denominators", figure, png


def _explorer_views(deck):
    explorer = widgets.rule_explorer(
        deck.textures, deck.patch, rule="ε", epsilon=0.1, image=deck.patch[0, 0], live=True
    )
    yield "first", explorer.figure, explorer.image.value
    for _, rule in explorer.rule_menu.options:
        explorer.rule_menu.value = rule
        for _, first in explorer.first_menu.options:
            explorer.first_menu.value = first
            yield f"{rule}, first layer {first}", explorer.figure, explorer.image.value
    explorer.rule_menu.value = "ε"
    for epsilon in (0.0, 0.5, explorer.epsilon.max):  # other decades of the colour limit
        explorer.epsilon.value = epsilon
        yield f"ε = {epsilon}", explorer.figure, explorer.image.value


def _comparison_views(deck):
    comparison = widgets.rule_comparison(deck.textures, deck.patch, image=deck.patch[0, 0])
    yield "default", comparison.figure, comparison.image.value
    for box in comparison.boxes.values():
        box.value = True
    yield "all rules", comparison.figure, comparison.image.value


def _cluster_views(deck):
    browser = deck.clusters.widget(images=deck.cluster_images)
    for label, cluster in browser.choice.options:
        browser.choice.value = cluster
        yield label, browser.figure, browser.image.value


WIDGET_VIEWS = {
    "stepper": _stepper_views,
    "inspector": _inspector_views,
    "explorer": _explorer_views,
    "comparison": _comparison_views,
    "clusters": _cluster_views,
}


@pytest.mark.parametrize("mode", ["normal", "lecture"])
@pytest.mark.parametrize("name", list(WIDGET_VIEWS))
def test_widget_figures_lie_whole_inside_their_pictures(deck, name, mode):
    style.lecture_mode(mode == "lecture")
    problems = {}
    seen = 0
    for view, figure, png in WIDGET_VIEWS[name](deck):
        seen += 1
        found = layout_problems(figure, png)
        if found:
            problems[view] = found
    assert seen > 0
    assert not problems, f"{name} in {mode} mode: {problems}"


def test_cluster_browser_follows_lecture_mode(deck):
    normal = deck.clusters.widget(images=deck.cluster_images)
    with style.lecture_mode(scale=1.8):
        lecture = deck.clusters.widget(images=deck.cluster_images)
    title = [browser.figure.axes[0].title for browser in (normal, lecture)]
    assert title[1].get_fontsize() > 1.5 * title[0].get_fontsize()
    assert title[0].get_text() == "mean of cluster 0"  # two lines only where the type is large
    assert title[1].get_text() == "mean of\ncluster 0"
    assert png_size(lecture.image.value)[1] > png_size(normal.image.value)[1]
