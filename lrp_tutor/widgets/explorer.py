r"""The rule explorer: move ε, γ or α and watch the heatmap change, live.

Every change of a control re-explains the sample with the fast path,
:func:`lrp_tutor.fast.explain`, and redraws the heatmap (an ``ipywidgets.Image`` of PNG bytes,
updated in place; see :class:`~lrp_tutor.widgets._image.LiveHeatmap`). The rules:

* LRP-0: :math:`R_{i \leftarrow j} = z_{ij}/z_j \cdot R_j`
* ε: :math:`z_{ij}/(z_j + \varepsilon\,\mathrm{sign}(z_j)) \cdot R_j` (the ε slider)
* γ: :math:`w_{ij} \to w_{ij} + \gamma w_{ij}^+` (the γ slider)
* αβ: :math:`(\alpha z^+_{ij}/z^+_j - \beta z^-_{ij}/z^-_j) R_j` with β = α − 1 (the α slider)
* z⁺: αβ with α = 1

on every weighted layer, optionally with a different rule on the first layer (flat, w², z^B).

**Live or on release.** On a small model (the digits CNN: a few tens of ms per update) the
heatmap follows the slider while it moves (``continuous_update=True``); the front-end sends at
most one update at a time and only the latest position, so a slow update never queues up.
When an update (timed once at start) takes longer than ``live_budget`` seconds, the sliders
switch to ``continuous_update=False``: the model is explained once, when the slider is
released, and the slider never freezes. ``live=True`` / ``live=False`` decides it by hand.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
>>> explorer = rule_explorer(model, torch.rand(1, 4, 4), epsilon=0.1)
>>> before = explorer.image.value
>>> explorer.epsilon.value = 0.5
>>> explorer.rule, explorer.image.value != before
(Epsilon(epsilon=0.5), True)
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..composites import Composite
from ..errors import InputError, LRPError
from ..fast import Explanation
from ..fast.inputs import check_model
from ..rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Rule, WSquare, ZBox, ZPlus
from ..viz._axes import number
from ._base import WidgetShell
from ._choice import choice
from ._image import LiveHeatmap
from ._inputs import as_sample, explain_one, resolve_threads, rule_label, torch_threads
from ._look import Look

__all__ = ["RuleExplorer", "rule_explorer", "RULES", "FIRST_LAYER_RULES"]

RULES = ("LRP-0", "ε", "γ", "αβ", "z⁺")
"""The rules of the explorer's rule menu (on every weighted layer)."""

FIRST_LAYER_RULES = ("same", "flat", "w²", "z^B")
"""The choices for the first weighted layer (the pixel layer)."""

PREDICTED = -1
"""The target menu's value for "the predicted class"."""


class RuleExplorer(WidgetShell):
    r"""Re-explain one sample live while the rule and its parameter change.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits (not changed; explained in eval mode).
    x : Tensor, shape (1, …)
        One sample with a batch dimension of 1.
    target : int, optional
        The class explained at start (default: the predicted one); a menu changes it.
    rule : {"LRP-0", "ε", "γ", "αβ", "z⁺"}, default "ε"
    epsilon, gamma, alpha : float
        Start values of the sliders (β = α − 1 follows α).
    epsilon_max : float, optional
        The ε slider's end; default :math:`|f_c(x)|` rounded up to 1, 2 or 5 × 10ᵏ (at
        least 1), where ε absorbs nearly everything.
    gamma_max, alpha_max : float
        The γ and α sliders' ends.
    first : {"same", "flat", "w²", "z^B"}, default "same"
        The rule of the first weighted layer.
    bounds : (low, high), optional
        The input range of z^B; default (min x, max x).
    image : array or tensor, optional
        Drawn under the heatmap (e.g. ``x[0]``).
    shape : tuple of int, optional
        (H, W) to show a flat input's relevance as an image.
    live : bool, optional
        Follow the slider while it moves (True) or update on release (False); default: live
        when an update (timed once at start) takes at most ``live_budget`` seconds.
    live_budget : float, default 0.25
    scale : float, optional
        Lecture-mode size (default: follow :func:`lrp_tutor.viz.lecture_mode`).
    percentile : float, default 99.5
        The heatmap's colour limit is this percentile of :math:`|R_i|`.
    threads : int, None or "auto"
        torch threads while explaining (restored afterwards). One sample of a small model is
        fastest on one thread; "auto" takes 1 for models of at most a million parameters and
        torch's own setting (None) for larger ones.

    Attributes
    ----------
    explanation : Explanation
        The explanation shown.
    image : ipywidgets.Image
        The heatmap as PNG bytes.
    timings : list of float
        Seconds each update took (explain + draw).
    """

    def __init__(
        self,
        model: nn.Module,
        x: Any,
        *,
        target: int | None = None,
        rule: str = "ε",
        epsilon: float = 0.25,
        gamma: float = 0.25,
        alpha: float = 2.0,
        epsilon_max: float | None = None,
        gamma_max: float = 2.0,
        alpha_max: float = 4.0,
        first: str = "same",
        bounds: tuple[float, float] | None = None,
        image: Any = None,
        shape: tuple[int, ...] | None = None,
        live: bool | None = None,
        live_budget: float = 0.25,
        scale: float | None = None,
        percentile: float = 99.5,
        threads: int | None | str = "auto",
    ) -> None:
        check_model(model)
        self.model = model
        self.x = as_sample(x)
        _check_choice("rule", rule, RULES)
        _check_choice("first", first, FIRST_LAYER_RULES)
        self.look = look = Look(scale)
        self.bounds = bounds
        self.threads = resolve_threads(threads, model)
        self.live_heatmap = LiveHeatmap(image, percentile=percentile, shape=shape)
        self.timings: list[float] = []
        self.explanation: Explanation | None = None
        self.error: str | None = None
        self.live: bool | None = None  # decided after the first updates

        logits = _logits(model, self.x)
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < logits.size
        ):
            raise InputError(
                f"target must be a class index 0 … {logits.size - 1} or None (the predicted "
                f"class), got {target!r}."
            )
        if epsilon_max is None:
            epsilon_max = _nice_ceiling(float(abs(logits).max()))
        if not (isinstance(epsilon_max, int | float) and 0 < epsilon_max < math.inf):
            raise InputError(f"epsilon_max must be a number > 0, got {epsilon_max!r}.")
        epsilon = min(max(float(epsilon), 0.0), float(epsilon_max))

        self.rule_menu = choice(look, RULES, rule, "the rule on every weighted layer")
        self.first_menu = choice(
            look, FIRST_LAYER_RULES, first, "the rule of the first weighted layer (pixels)"
        )
        classes = [("predicted", PREDICTED)] + [(str(k), k) for k in range(logits.size)]
        self.target_menu = choice(
            look, classes, PREDICTED if target is None else int(target), "the class explained"
        )
        self.epsilon = w.FloatSlider(
            value=epsilon, min=0.0, max=epsilon_max, step=epsilon_max / 200, readout_format=".3g"
        )
        self.epsilon.add_class("lrp-epsilon")
        self.gamma = w.FloatSlider(value=gamma, min=0.0, max=gamma_max, step=0.01)
        self.gamma.add_class("lrp-gamma")
        self.alpha = w.FloatSlider(value=alpha, min=1.0, max=alpha_max, step=0.05)
        self.alpha.add_class("lrp-alpha")
        self.beta_label = look.label()
        self.status = look.html()
        self.image = look.image()
        self.image.add_class("lrp-heatmap")

        controls = w.VBox(
            [
                look.control("rule", self.rule_menu, width=None),
                look.control("1st layer", self.first_menu, width=None),
                look.control("class", self.target_menu, width=None),
                look.control("ε", self.epsilon),
                look.control("γ", self.gamma),
                w.HBox(
                    [look.control("α", self.alpha), self.beta_label],
                    layout=w.Layout(flex_flow="row wrap", align_items="center"),
                ),
            ]
        )
        self.widget = w.VBox(
            [w.HBox([controls, self.image], layout=w.Layout(flex_flow="row wrap")), self.status]
        )
        self._sync_controls()
        self.update(raise_errors=True)  # the first update also draws the figure from scratch
        if live is None:
            self.update(raise_errors=True)  # ... so time a second, ordinary one
            live = self.timings[-1] <= live_budget
        self.live = bool(live)
        for slider in (self.epsilon, self.gamma, self.alpha):
            slider.continuous_update = self.live
        self.status.value = self._status_html()
        for control in (
            self.rule_menu,
            self.first_menu,
            self.target_menu,
            self.epsilon,
            self.gamma,
            self.alpha,
        ):
            control.observe(self._on_change, names="value")

    # ---- the rule the controls describe ------------------------------------------------
    @property
    def rule(self) -> Rule:
        """The rule of the weighted layers, from the menu and the sliders."""
        name = self.rule_menu.value
        if name == "LRP-0":
            return LRP0()
        if name == "ε":
            return Epsilon(self.epsilon.value)
        if name == "γ":
            return Gamma(self.gamma.value)
        if name == "αβ":
            return AlphaBeta(self.alpha.value)
        return ZPlus()

    @property
    def first_rule(self) -> Rule | None:
        """The rule of the first weighted layer, or None for "same"."""
        name = self.first_menu.value
        if name == "flat":
            return Flat()
        if name == "w²":
            return WSquare()
        if name == "z^B":
            low, high = self.bounds or (float(self.x.min()), float(self.x.max()))
            return ZBox(low, high)
        return None

    @property
    def spec(self) -> Rule | Composite:
        """What is passed to :func:`lrp_tutor.fast.explain`: the rule, or a composite when
        the first layer has its own rule."""
        rule, first = self.rule, self.first_rule
        if first is None:
            return rule
        return Composite(default=rule, first=first, label=f"{rule.name}, first layer {first.name}")

    @property
    def target(self) -> int | None:
        return None if self.target_menu.value == PREDICTED else int(self.target_menu.value)

    # ---- updating -------------------------------------------------------------------------
    def _sync_controls(self) -> None:
        name = self.rule_menu.value
        self.epsilon.disabled = name != "ε"
        self.gamma.disabled = name != "γ"
        self.alpha.disabled = name != "αβ"
        beta = self.alpha.value - 1.0
        self.beta_label.value = f"β = α − 1 = {beta:.3g}"

    def _on_change(self, change: Any) -> None:
        slider, new = change.get("owner"), change.get("new")
        names = {id(self.epsilon): "ε", id(self.gamma): "γ", id(self.alpha): "α"}
        if id(slider) in names and not math.isfinite(new):
            slider.value = change["old"]  # explains again, with the value put back
            self.status.value = (
                f"<span style='color:#b2182b'><b>{names[id(slider)]} = {new}</b> is not a "
                f"number a rule can take; it is back at {change['old']:.3g}."
                f"</span><br>{self.status.value}"
            )
            return
        self._sync_controls()
        self.update()

    def update(self, *, raise_errors: bool = False) -> None:
        """Explain with the controls' rule and redraw; an LRP error is shown, not raised."""
        start = time.perf_counter()
        try:
            spec = self.spec
            with torch_threads(self.threads):
                explanation = explain_one(self.model, self.x, spec, self.target)
            c = int(explanation.target[0])
            # The first layer's rule on a line of its own: one line would be wider than the
            # heatmap in lecture type and run off the picture.
            title = f"{rule_label(self.rule)} · class {c}"
            if self.first_rule is not None:
                title += f"\nfirst layer {self.first_rule.name}"
            with self.look.drawing():
                png = self.live_heatmap.render(explanation.relevance[0], title=title)
        except LRPError as error:
            if raise_errors:
                raise
            self.error = str(error)
            self.status.value = (
                f"<span style='color:#b2182b'><b>Cannot explain:</b> {html.escape(str(error))}"
                " The heatmap still shows the last rule that could be explained.</span>"
            )
            return
        self.image.value = png
        self.explanation = explanation
        self.error = None
        self.timings.append(time.perf_counter() - start)
        if self.live is not None:
            self.status.value = self._status_html()

    def _status_html(self) -> str:
        e = self.explanation
        assert e is not None
        c = int(e.target[0])
        f_c = float(e.output[0, c])
        total = float(e.relevance[0].double().sum())
        bias = float(sum(entry.bias[0] for entry in e.ledger))
        stabilizer = float(sum(entry.stabilizer[0] for entry in e.ledger))
        mode = "live" if self.live else "on release"
        return (
            f"class <b>{c}</b>: f_c(x) = <b>{number(f_c, 4)}</b> · Σ_i R_i = "
            f"<b>{number(total, 4)}</b> · absorbed {number(bias + stabilizer, 4)} "
            f"(bias {number(bias, 4)}, ε {number(stabilizer, 4)})"
            f"<br><span style='color:#666'>updated in {1000 * self.timings[-1]:.0f} ms "
            f"({mode})</span>"
        )

    @property
    def figure(self) -> Figure:
        return self.live_heatmap.figure

    def __repr__(self) -> str:
        e = self.explanation
        if e is None:
            return "<RuleExplorer: no explanation>"
        return (
            f"<RuleExplorer: {rule_label(self.spec)}, class {int(e.target[0])}, "
            f"Σ R = {float(e.relevance.sum()):.4g}>"
        )


def _logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The logits of the one sample, for the class menu (a plain forward pass, no LRP)."""
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters(), None)
    if parameter is not None:
        x = x.to(device=parameter.device, dtype=parameter.dtype)
    try:
        model.eval()
        with torch.no_grad():
            output = model(x)
    except RuntimeError as error:
        raise InputError(
            f"The model cannot take x of shape {tuple(x.shape)}: {error}. Pass one sample with "
            "a leading batch dimension of 1, shaped as the model expects, e.g. (1, C, H, W)."
        ) from error
    finally:
        for module, mode in modes.items():
            module.training = mode
    if not (isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == 1):
        explain_one(model, x, Epsilon())  # the fast path names an unsupported layer (an LSTM…)
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"The model returned {got} for x of shape {tuple(x.shape)}; the widget needs a "
            "model that returns logits of shape (1, classes)."
        )
    return output.detach().reshape(-1).double().cpu().numpy()


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 × 10ᵏ that is ≥ value (at least 1).

    >>> _nice_ceiling(0.3), _nice_ceiling(7.2), _nice_ceiling(12.0)
    (1.0, 10.0, 20.0)
    """
    if not math.isfinite(value) or value <= 1.0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= value:
            return step * power
    return 10.0 * power


def rule_explorer(model: nn.Module, x: Any, **options: Any) -> RuleExplorer:
    """A :class:`RuleExplorer` for ``model`` at the sample ``x`` (shape (1, …)).

    Options as in :class:`RuleExplorer`: ``target``, ``rule``, ``epsilon``, ``gamma``,
    ``alpha``, ``epsilon_max``, ``first``, ``bounds``, ``image``, ``shape``, ``live``,
    ``scale``.
    """
    return RuleExplorer(model, x, **options)
