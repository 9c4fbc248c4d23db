r"""The neuron inspector: pick a layer and a neuron *j*, see what it receives and sends back.

For output neuron *j* of the chosen layer (from :meth:`LayerStep.neuron
<lrp_tutor.stepper.LayerStep.neuron>`):

* its contributions :math:`z_{ij} = x_i w_{ij}` and its messages
  :math:`R_{i \leftarrow j}` side by side (:func:`lrp_tutor.viz.messages`; of a large
  receptive field the ``max_inputs`` inputs with the largest :math:`|z_{ij}|`),
* its denominator :math:`z_j = \sum_i z_{ij} + b_j` and, per part *p* of the rule, the
  stabilised :math:`\mathrm{stab}(z^p_j) = z^p_j + \varepsilon\,\mathrm{sign}(z^p_j)`
  (:func:`lrp_tutor.viz.stabilization`),
* in numbers: :math:`R_j`, :math:`\sum_i R_{i \leftarrow j}` and what bias and ε absorbed.

>>> import numpy as np
>>> from lrp_tutor.stepper import Walkthrough
>>> walk = Walkthrough([(np.array([[1.0, -1.0], [2.0, 1.0]]), np.array([0.0, 0.5]), "relu"),
...                     (np.ones((2, 1)), None, None)]).forward([1.0, 1.0]).backward()
>>> inspector = neuron_inspector(walk, layer="0")
>>> inspector.neuron.value = 1
>>> inspector.z_ij  # x_i · w_i1 for the inputs x = (1, 1)
array([-1.,  1.])
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure
from torch import nn

from .. import viz
from ..composites import Composite
from ..errors import InputError
from ..rules import Rule
from ..stepper import LayerStep, Walkthrough
from ..viz._axes import number
from ._base import WidgetShell
from ._choice import choice
from ._image import png_bytes
from ._inputs import as_walkthrough, index_label
from ._look import Look

__all__ = ["NeuronInspector", "neuron_inspector"]


class NeuronInspector(WidgetShell):
    r"""Inspect one output neuron *j* of one layer of a propagated walkthrough.

    Parameters
    ----------
    walk : Walkthrough
        Forwarded and propagated.
    layer : str or int, optional
        The layer shown first (name like ``"3"`` or label, or forward index); default the top
        layer that takes a rule.
    neuron : int or tuple, optional
        The neuron shown first (flat index or ``(c, h, w)``); default the one with the largest
        :math:`|R_j|`.
    max_inputs : int, default 16
        Show at most this many inputs *i* in the figure (those with the largest
        :math:`|z_{ij}|`); the numbers below cover all.
    scale : float, optional
        Lecture-mode size (default: follow :func:`lrp_tutor.viz.lecture_mode`).

    Attributes
    ----------
    neuron_step : LayerStep
        The chosen layer's step focused on the chosen neuron.
    z_ij, R_ij : ndarray, shape (n_I,)
        Contributions and messages of every input *i* of the receptive field.
    shown_inputs : ndarray of int
        The rows of ``z_ij`` drawn in the figure.
    denominators : dict of str to float
        :math:`\mathrm{stab}(z^p_j)` per part label (empty for layers that route relevance).
    """

    def __init__(
        self,
        walk: Walkthrough,
        *,
        layer: str | int | None = None,
        neuron: int | tuple[int, ...] | None = None,
        max_inputs: int = 16,
        scale: float | None = None,
    ) -> None:
        if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
            raise InputError(f"max_inputs must be a positive integer, got {max_inputs!r}.")
        if not isinstance(walk, Walkthrough) or len(walk) == 0:
            raise InputError(
                "NeuronInspector needs a propagated Walkthrough (walk.forward(x).backward()); "
                "neuron_inspector(model, x) builds one."
            )
        self.walk = walk
        self.max_inputs = max_inputs
        self.look = look = Look(scale)
        self._quiet = False
        steps = list(walk)
        start = self._find_layer(layer, steps)
        self.layer = choice(look, [(s.label, s.index) for s in steps], start.index, "the layer")
        self.neuron = w.IntSlider(min=0, max=start.a.size - 1, step=1, continuous_update=True)
        self.neuron.add_class("lrp-neuron")
        self.neuron_label = look.label()
        self.strongest_button = look.button(
            "strongest", "jump to the neuron with the largest |R_j| of this layer", width=130
        )
        self.strongest_button.on_click(lambda _: self._jump_to_strongest())
        self.header = look.html(size=16)
        self.messages_image = look.image()
        self.denominator_image = look.image()
        self.numbers = look.html()
        self.figures: dict[str, Figure] = {}
        controls = w.VBox(
            [
                look.control("layer", self.layer, width=None),
                w.HBox(
                    [
                        look.control("neuron j", self.neuron, width=260),
                        self.strongest_button,
                        self.neuron_label,
                    ],
                    layout=w.Layout(align_items="center", flex_flow="row wrap"),
                ),
            ]
        )
        pictures = w.HBox(
            [self.messages_image, self.denominator_image],
            layout=w.Layout(flex_flow="row wrap", align_items="flex-start"),
        )
        self.widget = w.VBox([self.header, controls, pictures, self.numbers])
        self._select_layer(start, neuron)
        self.layer.observe(self._on_layer, names="value")
        self.neuron.observe(self._on_neuron, names="value")

    # ---- choosing --------------------------------------------------------------------------
    @staticmethod
    def _find_layer(layer: str | int | None, steps: list[LayerStep]) -> LayerStep:
        if layer is None:
            with_rule = [s for s in steps if s.rule is not None]
            return (with_rule or steps)[-1]
        for s in steps:
            if layer in (s.index, s.name, s.label) and not isinstance(layer, bool):
                return s
        names = ", ".join(repr(s.name) for s in steps)
        raise InputError(f"layer {layer!r} is not in the walkthrough; it has: {names}.")

    @property
    def step(self) -> LayerStep:
        """The chosen layer's step (its default view)."""
        return self.walk[int(self.layer.value)]

    def _select_layer(self, step: LayerStep, neuron: Any = None) -> None:
        if neuron is None:  # the strongest: largest |R_j|
            j = int(np.argmax(np.abs(step.relevance_out.reshape(-1))))
        else:
            j = int(np.ravel_multi_index(step.neuron(neuron).focus[0], step.a.shape))
        self._quiet = True
        try:
            self.neuron.max = step.a.size - 1
            self.neuron.value = j
        finally:
            self._quiet = False
        self._show()

    def _on_layer(self, _change: Any) -> None:
        self._select_layer(self.step)

    def _on_neuron(self, _change: Any) -> None:
        if not self._quiet:
            self._show()

    def _jump_to_strongest(self) -> None:
        self._select_layer(self.step)

    # ---- what is shown ---------------------------------------------------------------------
    def _show(self) -> None:
        step = self.step
        self.neuron_step = focused = step.neuron(int(self.neuron.value))
        forward, messages = focused.forward, focused.messages
        view = focused.view
        self.z_ij = forward.z_ij[:, 0].copy()
        self.R_ij = messages.R_ij[:, 0].copy()
        self.denominators = {p.label: float(p.denominator[0]) for p in messages.parts}
        self.shown_inputs = _strongest(self.z_ij, self.max_inputs)
        labels = [index_label(int(view.inputs[i]), step.x.shape) for i in self.shown_inputs]
        j_label = index_label(int(view.outputs[0]), step.a.shape)
        R_j = float(messages.R_j[0])
        self.neuron_label.value = f"j = {j_label},  R_j = {number(R_j, 4)}"
        rule = "routes relevance (no rule)" if step.rule is None else f"rule {step.rule!r}"
        self.header.value = (
            f"<b>{html.escape(step.label)}</b> · {html.escape(rule)} · neuron "
            f"<b>j = {j_label}</b> · {self.z_ij.size} input(s) i"
        )
        shown = ""
        if self.shown_inputs.size < self.z_ij.size:
            shown = f" (the {self.shown_inputs.size} largest $|z_{{ij}}|$ of {self.z_ij.size})"
        with self.look.drawing():
            self.figures = {
                "messages": viz.messages(
                    self.z_ij[self.shown_inputs],
                    self.R_ij[self.shown_inputs],
                    title=f"neuron j = {j_label} · {step.label}{shown}",
                    input_labels=labels,
                    output_labels=[j_label],
                )
            }
            self.messages_image.value = png_bytes(self.figures["messages"])
            if messages.parts:
                parts = messages.parts
                self.figures["denominators"] = viz.stabilization(
                    np.array([p.z_j[0] for p in parts]),
                    np.array([p.denominator[0] for p in parts]),
                    labels=[f"${_math(p.label)}_j$" for p in parts],
                    title=f"denominator of j = {j_label}: $z_j \\to$ stab$(z_j)$",
                    epsilon=max(p.epsilon for p in parts) or None,
                )
                self.denominator_image.value = png_bytes(self.figures["denominators"])
                self.denominator_image.layout.display = None
            else:
                self.denominator_image.layout.display = "none"
        self.numbers.value = self._numbers_html(focused)

    def _numbers_html(self, focused: LayerStep) -> str:
        forward, messages = focused.forward, focused.messages
        z_sum = float(forward.z_ij[:, 0].sum())
        b_j = float(forward.b_j[0])
        lines = [
            f"z_j = Σ_i z_ij + b_j = {number(z_sum, 4)} {_plus(b_j)} = "
            f"<b>{number(float(forward.z_j[0]), 4)}</b>  (a_j = {number(float(forward.a_j[0]), 4)})"
        ]
        for p in messages.parts:
            c = "" if p.coefficient == 1 else f" (coefficient {number(p.coefficient, 4)})"
            lines.append(
                f"part {html.escape(p.label)}{c}: z_j = {number(float(p.z_j[0]), 4)}, "
                f"stab(z_j) = z_j + ε·sign(z_j) = {number(float(p.z_j[0]), 4)} "
                f"{'+' if p.z_j[0] >= 0 else '−'} {number(p.epsilon, 4)} = "
                f"<b>{number(float(p.denominator[0]), 4)}</b>"
            )
        if not messages.parts:
            lines.append("This layer routes relevance: R_{i←j} = w_ij · R_j, no denominator.")
        lines.append(
            f"R_j = <b>{number(float(messages.R_j[0]), 4)}</b> = Σ_i R_{{i←j}} + bias + ε = "
            f"{number(float(messages.R_ij[:, 0].sum()), 4)} "
            f"{_plus(float(messages.bias_absorbed[0]))} "
            f"{_plus(float(messages.stabilizer_absorbed[0]))}"
        )
        return "<br>".join(lines) + f"<br><i>{html.escape(messages.check())}</i>"

    @property
    def figure(self) -> Figure:
        return self.figures["messages"]

    def __repr__(self) -> str:
        return (
            f"<NeuronInspector: {self.step.label}, neuron {self.neuron_step.focus[0]}, "
            f"z_j = {float(self.neuron_step.forward.z_j[0]):.4g}, "
            f"R_j = {float(self.neuron_step.messages.R_j[0]):.4g}>"
        )


def _strongest(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest |values|, in increasing order (all if fewer).

    >>> _strongest(np.array([0.1, -3.0, 2.0, 0.0]), 2)
    array([1, 2])
    """
    if values.size <= count:
        return np.arange(values.size)
    return np.sort(np.argsort(-np.abs(values), kind="stable")[:count])


def _plus(value: float) -> str:
    """``+ 0.5`` or ``− 0.5``, to continue a sum.

    >>> _plus(0.5), _plus(-0.25)
    ('+ 0.5', '− 0.25')
    """
    return f"{'−' if value < 0 else '+'} {number(abs(value), 4)}"


def _math(label: str) -> str:
    """A part label for mathtext: ``z⁺`` → ``z^+``."""
    return label.replace("⁺", "^+").replace("⁻", "^-")


def neuron_inspector(
    walk_or_model: Walkthrough | nn.Module | list[Any],
    x: Any = None,
    *,
    target: int | None = None,
    rule: Rule | Composite | None = None,
    layer: str | int | None = None,
    neuron: int | tuple[int, ...] | None = None,
    max_inputs: int = 16,
    scale: float | None = None,
) -> NeuronInspector:
    """A :class:`NeuronInspector` for a walkthrough, or for a model and one sample.

    ``walk_or_model``, ``x``, ``target`` and ``rule`` as in :func:`stepper`; ``layer``,
    ``neuron``, ``max_inputs`` and ``scale`` as in :class:`NeuronInspector`.
    """
    walk = as_walkthrough(walk_or_model, x, target=target, rule=rule)
    return NeuronInspector(walk, layer=layer, neuron=neuron, max_inputs=max_inputs, scale=scale)
