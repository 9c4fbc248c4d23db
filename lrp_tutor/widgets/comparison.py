"""Rules side by side: tick the rules, see one heatmap per rule (:func:`lrp_tutor.viz.compare`).

Each rule (or composite) is explained once with the fast path, :func:`lrp_tutor.fast.explain`,
and kept; ticking a box only redraws.

>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
>>> comparison = rule_comparison(model, torch.rand(1, 4, 4), checked=["LRP-0", "z⁺"])
>>> comparison.checked
['LRP-0', 'z⁺']
>>> comparison.boxes["ε=0.25"].value = True
>>> len(comparison.panels)
3
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure
from torch import nn

from .. import viz
from ..composites import Composite, epsilon_plus_flat
from ..errors import InputError, LRPError
from ..fast import Explanation
from ..fast.inputs import check_model
from ..rules import LRP0, AlphaBeta, Epsilon, Gamma, Rule, ZPlus
from ._base import WidgetShell
from ._image import png_bytes
from ._inputs import as_sample, explain_one, resolve_threads, torch_threads
from ._look import Look

__all__ = ["RuleComparison", "rule_comparison", "default_rules"]


def default_rules() -> dict[str, Rule | Composite]:
    """The rules offered when none are given: LRP-0, ε, γ, αβ, z⁺ and ε-z⁺-flat.

    >>> list(default_rules())
    ['LRP-0', 'ε=0.25', 'γ=0.25', 'α2β1', 'z⁺', 'ε+z⁺+flat']
    """
    return {
        "LRP-0": LRP0(),
        "ε=0.25": Epsilon(0.25),
        "γ=0.25": Gamma(0.25),
        "α2β1": AlphaBeta(2.0, 1.0),
        "z⁺": ZPlus(),
        "ε+z⁺+flat": epsilon_plus_flat(),
    }


class RuleComparison(WidgetShell):
    """One heatmap per ticked rule, each with its own symmetric colour range.

    Parameters
    ----------
    model : nn.Module
    x : Tensor, shape (1, …)
        One sample with a batch dimension of 1.
    rules : mapping of str to Rule or Composite, optional
        The rules offered (default :func:`default_rules`).
    checked : sequence of str, optional
        The names ticked at start (default the first three).
    target : int, optional
        The class explained (default: the predicted one).
    image : array or tensor, optional
        Drawn under every heatmap.
    shape : tuple of int, optional
        (H, W) for a flat input.
    ncols : int, optional
        Columns of the grid (default up to 4).
    scale : float, optional
        Lecture-mode size.
    threads : int, None or "auto"
        torch threads while explaining (as in :class:`~lrp_tutor.widgets.RuleExplorer`).

    Attributes
    ----------
    boxes : dict of str to ipywidgets.Checkbox
    explanations : dict of str to Explanation
        Every rule explained so far.
    panels : list of str
        The names shown, in order (one heatmap each).
    """

    def __init__(
        self,
        model: nn.Module,
        x: Any,
        *,
        rules: Mapping[str, Rule | Composite] | None = None,
        checked: Sequence[str] | None = None,
        target: int | None = None,
        image: Any = None,
        shape: tuple[int, ...] | None = None,
        ncols: int | None = None,
        scale: float | None = None,
        threads: int | None | str = "auto",
    ) -> None:
        check_model(model)
        self.model = model
        self.x = as_sample(x)
        self.rules = dict(default_rules() if rules is None else rules)
        if not self.rules:
            raise InputError("rules is empty; pass at least one {name: rule}.")
        for name, spec in self.rules.items():
            if not isinstance(spec, Rule | Composite):
                raise InputError(
                    f"rules[{name!r}] is {spec!r}, not a rule or a composite; use e.g. "
                    "lrp_tutor.rules.Epsilon(0.25)."
                )
        checked = list(self.rules)[:3] if checked is None else list(checked)
        unknown = [name for name in checked if name not in self.rules]
        if unknown:
            raise InputError(
                f"checked names {unknown} that are not among the rules: {list(self.rules)}."
            )
        self.target, self.image_input, self.shape, self.ncols = target, image, shape, ncols
        self.threads = resolve_threads(threads, model)
        self.look = look = Look(scale)
        self.explanations: dict[str, Explanation] = {}
        self.panels: list[str] = []
        self._figure: Figure | None = None
        self.boxes = {
            name: w.Checkbox(value=name in checked, description="", indent=False)
            for name in self.rules
        }
        rows = []
        for name, box in self.boxes.items():
            box.layout.width = look.px(28)
            rows.append(w.HBox([box, look.label(name)], layout=w.Layout(align_items="center")))
        self.status = look.html()
        self.image = look.image()
        self.widget = w.VBox(
            [w.HBox(rows, layout=w.Layout(flex_flow="row wrap")), self.image, self.status]
        )
        self._show(raise_errors=True)
        for box in self.boxes.values():
            box.observe(self._on_box, names="value")

    @property
    def checked(self) -> list[str]:
        """The ticked rules' names, in the order they are offered."""
        return [name for name, box in self.boxes.items() if box.value]

    def _on_box(self, _change: Any) -> None:
        self._show()

    def _explanation(self, name: str) -> Explanation:
        if name not in self.explanations:
            with torch_threads(self.threads):
                self.explanations[name] = explain_one(
                    self.model, self.x, self.rules[name], self.target
                )
        return self.explanations[name]

    @property
    def relevances(self) -> dict[str, np.ndarray]:
        """``{name: R}`` of the ticked rules (one sample, float64 numpy)."""
        return {
            name: self._explanation(name).relevance[0].detach().cpu().double().numpy()
            for name in self.checked
        }

    def _show(self, *, raise_errors: bool = False) -> None:
        names = self.checked
        if not names:
            self.panels, self._figure = [], None
            self.image.value = b""
            self.image.layout.display = "none"
            self.status.value = "Tick at least one rule to see its heatmap."
            return
        try:
            relevances = self.relevances
            c = int(self._explanation(names[0]).target[0])
            with self.look.drawing():
                figure = viz.compare(
                    relevances,
                    self.image_input,
                    shape=self.shape,
                    ncols=self.ncols,
                    title=f"class {c}",
                )
                png = png_bytes(figure)
        except LRPError as error:
            if raise_errors:
                raise
            self.status.value = (
                f"<span style='color:#b2182b'><b>Cannot explain:</b> {html.escape(str(error))}"
                "</span>"
            )
            return
        self._figure, self.panels = figure, names
        self.image.value = png
        self.image.layout.display = None
        totals = " · ".join(
            f"{html.escape(name)}: Σ R = {float(R.sum()):.4g}" for name, R in relevances.items()
        )
        self.status.value = totals

    @property
    def figure(self) -> Figure | None:
        return self._figure

    def __repr__(self) -> str:
        return f"<RuleComparison: {', '.join(self.panels) or 'nothing ticked'}>"


def rule_comparison(model: nn.Module, x: Any, **options: Any) -> RuleComparison:
    """A :class:`RuleComparison` for ``model`` at the sample ``x`` (shape (1, …)).

    Options as in :class:`RuleComparison`: ``rules``, ``checked``, ``target``, ``image``,
    ``shape``, ``ncols``, ``scale``. (Called ``compare_rules`` before; that name is
    :func:`lrp_tutor.evaluate.compare_rules`, the pixel-flipping table.)
    """
    return RuleComparison(model, x, **options)
