r"""The stepper widget: walk a network from its output to its input, one layer per click.

Every position shows one :class:`~lrp_tutor.stepper.LayerStep` of a
:class:`~lrp_tutor.stepper.Walkthrough`:

* its messages :math:`R_{i \leftarrow j}` beside the contributions :math:`z_{ij}`
  (:func:`lrp_tutor.viz.messages`, via ``step.messages.plot()``),
* their aggregation :math:`R_i = \sum_j R_{i \leftarrow j}` (:func:`lrp_tutor.viz.bars` for a
  vector, :func:`lrp_tutor.viz.heatmap` for a feature map, channels summed),
* the running conservation sum read from the ledger: from :math:`f_c(x)` at the output, what
  has been passed on so far and what bias and ε absorbed on the way,
  :math:`\sum_i R_i + \text{absorbed} = f_c(x)`.

Keyboard: ipywidgets has no global shortcuts. The ◀ / ▶ buttons are ordinary HTML buttons:
Tab to them and press Enter or Space. Better, click the slider's handle (or Tab to it) and use
the ← / → arrow keys: the slider is the position, so every arrow key moves one layer. The ▷
(Play) button steps through all layers by itself.

>>> import numpy as np
>>> from lrp_tutor.stepper import Walkthrough
>>> walk = Walkthrough([(np.eye(2), np.zeros(2), "relu"), (np.ones((2, 1)), None, None)])
>>> widget = stepper(walk, np.array([1.0, 2.0]))
>>> widget.step.label, widget.position
('2 (Linear)', 0)
>>> widget.next_button.click()
>>> widget.step.label
'1 (ReLU)'
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure
from torch import nn

from .. import viz
from ..composites import Composite
from ..errors import InputError
from ..rules import Rule
from ..stepper import LayerStep, Walkthrough
from ..viz._axes import number
from ._base import WidgetShell
from ._image import png_bytes
from ._inputs import as_walkthrough
from ._look import Look

__all__ = ["StepperWidget", "stepper", "BARS_MAX"]

BARS_MAX = 64
"""A vector of at most this many inputs shows :math:`R_i` as labelled bars, a longer one as
plain bars; a feature map shows a heatmap (channels summed)."""


class StepperWidget(WidgetShell):
    r"""Step through a propagated :class:`~lrp_tutor.stepper.Walkthrough`, output first.

    Parameters
    ----------
    walk : Walkthrough
        Forwarded and propagated (``walk.forward(x).backward(...)``).
    scale : float, optional
        Text and figure size (lecture mode); default :func:`lrp_tutor.viz.style.current`.
    play_interval : int, default 1500
        Milliseconds per layer of the ▷ button.

    Attributes
    ----------
    position : int
        0 is the top (output) layer, ``len(walk) − 1`` the first layer.
    step : LayerStep
        The step shown, ``walk[len(walk) − 1 − position]``.
    figures : dict of str to Figure
        ``"messages"`` and ``"aggregation"``, as shown.
    """

    def __init__(
        self, walk: Walkthrough, *, scale: float | None = None, play_interval: int = 1500
    ) -> None:
        if not isinstance(walk, Walkthrough) or len(walk) == 0:
            raise InputError(
                "StepperWidget needs a propagated Walkthrough (walk.forward(x).backward()); "
                "stepper(model, x) builds one."
            )
        self.walk = walk
        self.look = look = Look(scale)
        n = len(walk)
        self.previous_button = look.button(
            "◀ back", "previous layer, towards the output (Tab here, then Enter or Space)"
        )
        self.next_button = look.button(
            "next ▶", "next layer, towards the input (Tab here, then Enter or Space)"
        )
        self.slider = w.IntSlider(
            value=0,
            min=0,
            max=n - 1,
            step=1,
            description="",
            readout=True,
            continuous_update=True,
            tooltip="click the handle, then use ← → to move one layer",
        )
        self.slider.add_class("lrp-stepper-position")
        self.play = w.Play(value=0, min=0, max=n - 1, step=1, interval=play_interval)
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.previous_button.on_click(lambda _: self.previous())
        self.next_button.on_click(lambda _: self.next())
        self.slider.observe(self._on_position, names="value")

        self.header = look.html(size=16)
        self.messages_image = look.image()
        self.aggregation_image = look.image()
        self.books = look.html()
        # The ledger's table cannot wrap: on a narrow screen in lecture type it scrolls in its
        # own box instead of making the whole widget (and its pictures) scroll.
        self.books.layout.overflow = "auto"
        self.books.layout.max_width = "100%"
        self.check = look.html(size=13)
        self.figures: dict[str, Figure] = {}

        controls = w.HBox(
            [
                self.previous_button,
                self.next_button,
                look.control("output → input", self.slider, width=260, label_width=140),
                self.play,
            ],
            layout=w.Layout(align_items="center", flex_flow="row wrap"),
        )
        pictures = w.HBox(
            [self.messages_image, self.aggregation_image],
            layout=w.Layout(flex_flow="row wrap", align_items="flex-start"),
        )
        self.widget = w.VBox([self.header, controls, pictures, self.books, self.check])
        self._show()

    # ---- navigation ----------------------------------------------------------------------
    @property
    def position(self) -> int:
        return int(self.slider.value)

    @property
    def step(self) -> LayerStep:
        return self.walk[len(self.walk) - 1 - self.position]

    def next(self) -> None:
        """One layer down, towards the input (the ▶ button)."""
        self.slider.value = min(self.position + 1, self.slider.max)

    def previous(self) -> None:
        """One layer up, towards the output (the ◀ button)."""
        self.slider.value = max(self.position - 1, 0)

    def _on_position(self, _change: Any) -> None:
        self._show()

    # ---- what is shown ----------------------------------------------------------------------
    def _show(self) -> None:
        step, look = self.step, self.look
        self.previous_button.disabled = self.position == 0
        self.next_button.disabled = self.position == self.slider.max
        with look.drawing():
            self.figures = {
                "messages": step.messages.plot(),
                "aggregation": _aggregation_figure(step),
            }
            self.messages_image.value = png_bytes(self.figures["messages"])
            self.aggregation_image.value = png_bytes(self.figures["aggregation"])
        rule = "routes relevance (no rule)" if step.rule is None else f"rule {step.rule!r}"
        self.header.value = (
            f"<b>Step {self.position + 1} of {len(self.walk)}</b> (output → input): "
            f"layer <b>{html.escape(step.label)}</b> · {html.escape(rule)} · "
            f"{step.x.shape} → {step.a.shape}"
        )
        self.books.value = self._books_html()
        self.check.value = html.escape(step.messages.check() + " " + step.aggregation.check())

    @property
    def figure(self) -> Figure:
        return self.figures["messages"]

    @property
    def running(self) -> dict[str, float]:
        r"""The running conservation sum at the input of the current layer (sample 0).

        ``start`` :math:`= \sum_j R_j` at the top layer (:math:`f_c(x)`), ``passed``
        :math:`= \sum_i R_i` here, ``bias`` and ``stabilizer``: absorbed from the top down to
        here, ``residual`` :math:`=` start − passed − bias − stabilizer.
        """
        entries = list(self.walk.ledger)[self.step.index :]
        start = float(entries[-1].relevance_out[0])
        passed = float(entries[0].relevance_in[0])
        bias = float(sum(e.bias[0] for e in entries))
        stabilizer = float(sum(e.stabilizer[0] for e in entries))
        return {
            "start": start,
            "passed": passed,
            "bias": bias,
            "stabilizer": stabilizer,
            "residual": start - passed - bias - stabilizer,
        }

    def _books_html(self) -> str:
        entries = list(self.walk.ledger)
        rows = []
        for k in reversed(range(self.step.index, len(entries))):
            e = entries[k]
            weight = "bold" if k == self.step.index else "normal"
            cells = [
                html.escape(e.layer),
                number(float(e.relevance_out[0]), 4),
                number(float(e.relevance_in[0]), 4),
                number(float(e.bias[0]), 4),
                number(float(e.stabilizer[0]), 4),
            ]
            rows.append(
                f"<tr style='font-weight:{weight}'>"
                + "".join(f"<td style='padding:0 0.4em'>{c}</td>" for c in cells)
                + "</tr>"
            )
        head = "".join(
            f"<th style='padding:0 0.4em'>{h}</th>"
            for h in ("layer", "Σ R_out", "Σ R_in", "bias", "ε")
        )
        s = self.running
        absorbed = s["bias"] + s["stabilizer"]
        summary = (
            f"Started with Σ R = f_c(x) = <b>{number(s['start'], 4)}</b>. Passed on so far: "
            f"Σ_i R_i = <b>{number(s['passed'], 4)}</b>; absorbed on the way: "
            f"{number(absorbed, 4)} (bias {number(s['bias'], 4)}, ε {number(s['stabilizer'], 4)})."
            f" {number(s['passed'], 4)} + {number(absorbed, 4)} = "
            f"{number(s['passed'] + absorbed, 4)}, off by {abs(s['residual']):.2g}."
        )
        return f"<table><tr>{head}</tr>{''.join(rows)}</table><p>{summary}</p>"

    def __repr__(self) -> str:
        s = self.running
        return (
            f"<StepperWidget: step {self.position + 1} of {len(self.walk)}, layer "
            f"{self.step.label}; Σ R_in {s['passed']:.4g} + absorbed "
            f"{s['bias'] + s['stabilizer']:.4g} = f_c(x) {s['start']:.4g}>"
        )


def _aggregation_figure(step: LayerStep) -> Figure:
    """:math:`R_i` of the step's layer: a heatmap for a feature map (channels summed), bars
    for a vector (labelled up to :data:`BARS_MAX` inputs)."""
    R_i = step.relevance_in
    title = "$R_i = \\Sigma_j R_{i \\leftarrow j}$"
    if R_i.ndim >= 2:
        summed = "\n(channels summed)" if R_i.ndim == 3 else ""
        return viz.heatmap(R_i, title=title + summed, percentile=100)
    if R_i.size <= BARS_MAX:
        return step.aggregation.plot()
    return viz.bars(R_i, title=title, annotate=False)


def stepper(
    walk_or_model: Walkthrough | nn.Module | list[Any],
    x: Any = None,
    *,
    target: int | None = None,
    rule: Rule | Composite | None = None,
    scale: float | None = None,
    play_interval: int = 1500,
) -> StepperWidget:
    """A :class:`StepperWidget` for a walkthrough, or for a model and one sample.

    Parameters
    ----------
    walk_or_model : Walkthrough, nn.Sequential or list of (W, b, activation)
        A walkthrough (propagated, or forwarded here with ``x``) or what
        :class:`~lrp_tutor.stepper.Walkthrough` accepts.
    x : array or tensor, optional
        One sample (with or without a batch dimension of 1).
    target : int, optional
        The class to explain (default: the predicted one).
    rule : Rule or Composite, optional
        Default ``Epsilon()`` (ε = 1e-6) on every weighted layer.
    scale : float, optional
        Lecture-mode size (default: follow :func:`lrp_tutor.viz.lecture_mode`).
    play_interval : int, default 1500
        Milliseconds per layer of the ▷ button.
    """
    walk = as_walkthrough(walk_or_model, x, target=target, rule=rule)
    return StepperWidget(walk, scale=scale, play_interval=play_interval)
