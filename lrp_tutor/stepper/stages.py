r"""The four stages of one layer's step: Forward, Messages, Aggregation, Stabilization.

Each stage carries the paper's quantities as attributes, indexed ``[i, j]`` with *i* an input
and *j* an output neuron of the step's **view** (all neurons of a dense layer, one neuron and
its receptive field for a convolution; see :meth:`LayerStep.neuron
<lrp_tutor.stepper.LayerStep.neuron>`):

* :class:`Forward`: :math:`x_i`, :math:`w_{ij}`, :math:`z_{ij} = x_i w_{ij}`,
  :math:`z_j = \sum_i z_{ij} + b_j`, :math:`a_j`.
* :class:`Messages`: :math:`R_{i \leftarrow j} = \sum_p c_p z^p_{ij} / \mathrm{stab}(z^p_j)
  \cdot R_j` under the step's rule, the stabilised denominators, and what bias and ε absorbed.
* :class:`Aggregation`: :math:`R_i = \sum_j R_{i \leftarrow j}` for the whole layer and the
  layer's books :math:`\sum_j R_j = \sum_i R_i + \text{bias} + \text{stabiliser}`.
* :class:`Stabilization`: how ε (or β) moves each denominator :math:`z_j \to \mathrm{stab}(z_j)`
  and each message, compared with LRP-0's :math:`z_{ij} / z_j \cdot R_j`.

Every stage has a short ``repr``, an HTML view with the formula and its numbers, ``check()``
(conservation in words) and ``plot()`` (drawn by :mod:`lrp_tutor.viz`).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..rules import safe_divide
from . import _format as f
from ._layers import Elementwise, LinearLayer, RoutingLayer
from ._propagate import PartMessages, modified_input, part_messages

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .step import LayerStep

__all__ = ["Stage", "Forward", "Messages", "Aggregation", "Stabilization"]

TOLERANCE = 1e-10


def _within(residual: np.ndarray, scale: np.ndarray, tolerance: float) -> bool:
    """|residual| ≤ tolerance · max(1, |scale|) everywhere (as the ledger checks)."""
    scale = np.maximum(1.0, np.abs(np.asarray(scale, dtype=np.float64)))
    return bool(np.all(np.abs(residual) <= tolerance * scale))


class Stage:
    """Base class of the stages: knows its step, formats itself, checks itself."""

    title = "Stage"

    def __init__(self, step: LayerStep) -> None:
        self.step = step

    # what the subclasses provide -------------------------------------------------------
    def check(self, tolerance: float = TOLERANCE) -> str:
        """Say in words whether this stage's bookkeeping holds, and by how much."""
        raise NotImplementedError

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        """Whether :meth:`check` finds everything in order."""
        raise NotImplementedError

    def _summary(self) -> str:
        raise NotImplementedError

    def _html_body(self) -> str:
        raise NotImplementedError

    # shared ----------------------------------------------------------------------------
    @property
    def _view(self):  # noqa: ANN202
        return self.step.view

    def _in_label(self, row: int) -> str:
        return f.index_label(int(self._view.inputs[row]), self.step.x.shape)

    def _out_label(self, column: int) -> str:
        return f.index_label(int(self._view.outputs[column]), self.step.a.shape)

    def _out_labels(self) -> list[str]:
        return [self._out_label(j) for j in range(len(self._view.outputs))]

    def _columns(self) -> range:
        return range(min(len(self._view.outputs), f.MAX_COLUMNS))

    def _rows(self, weight: np.ndarray) -> np.ndarray:
        """The inputs worth listing for one neuron: all, or the largest |weight| in order."""
        if weight.size <= f.MAX_ROWS:
            return np.arange(weight.size)
        return np.sort(np.argsort(-np.abs(weight), kind="stable")[: f.MAX_ROWS])

    def __repr__(self) -> str:
        return f"<{self.title} · {self.step.label} · {self._summary()}>"

    def _repr_html_(self) -> str:
        return f.box(f"{self.title} · {self.step.label}", self._html_body(), f.para(self.check()))


class Forward(Stage):
    r"""Forward stage: what the view's neurons computed.

    Attributes
    ----------
    x_i : ndarray, shape (n_I,)
        The inputs of the view's receptive field (0 at padding).
    w_ij : ndarray, shape (n_I, n_J)
        The weights (0/1 routing weights for activations and max-pooling).
    b_j : ndarray, shape (n_J,)
        The biases (0 where the layer has none).
    z_ij : ndarray, shape (n_I, n_J)
        :math:`z_{ij} = x_i w_{ij}`, the contribution of input *i* to neuron *j*.
    z_j : ndarray, shape (n_J,)
        :math:`z_j = \sum_i z_{ij} + b_j`.
    a_j : ndarray, shape (n_J,)
        The layer's output :math:`a_j` (:math:`= z_j` for linear layers, :math:`g(z_j)` for an
        activation *g*).
    residual : ndarray, shape (n_J,)
        :math:`z_j` minus what the layer itself computed (zero up to rounding).
    """

    title = "Forward"

    def __init__(self, step: LayerStep) -> None:
        super().__init__(step)
        view = step.view
        self.x_i = view.gather(step.x)
        self.w_ij = view.w_ij
        self.b_j = view.b_j
        self.z_ij = self.x_i[:, None] * self.w_ij
        self.z_j = self.z_ij.sum(axis=0) + self.b_j
        self.a_j = step.a.reshape(-1)[view.outputs]
        reference = step.layer.z(step.x, step.a).reshape(-1)[view.outputs]
        self.residual = self.z_j - reference

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return _within(self.residual, self.z_j, tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        n = self.z_j.size
        what = (
            "z_j = x_j and a_j = g(z_j)"
            if isinstance(self.step.layer, Elementwise)
            else "z_j = Σ_i z_ij + b_j reproduces the layer's output"
        )
        if self.holds(tolerance):
            return f"{what} for all {n} neuron(s), worst difference {f.worst(self.residual):.2g}."
        j = int(np.argmax(np.abs(self.residual)))
        return (
            f"Mismatch: Σ_i z_ij + b_j = {f.num(self.z_j[j])} but the layer computed "
            f"{f.num(self.z_j[j] - self.residual[j])} at neuron {self._out_label(j)}."
        )

    def _summary(self) -> str:
        return (
            f"x_i {self.x_i.shape}, w_ij {self.w_ij.shape}, z_j {f.short(self.z_j)}, "
            f"a_j {f.short(self.a_j)}"
        )

    def _html_body(self) -> str:
        if isinstance(self.step.layer, Elementwise):
            formula = "z_j = x_j,  a_j = g(z_j)  (an element-wise activation g)"
        else:
            formula = "z_ij = x_i · w_ij,   z_j = Σ_i z_ij + b_j,   a_j = the layer's output"
        lines = []
        for j in self._columns():
            rows = self._rows(self.z_ij[:, j])
            terms = " + ".join(f"{f.signed(self.x_i[i])}·{f.signed(self.w_ij[i, j])}" for i in rows)
            if rows.size < self.x_i.size:
                terms += f" + … ({self.x_i.size - rows.size} more)"
            if self.b_j[j] != 0:
                terms += f" + {f.signed(self.b_j[j])}"
            lines.append(
                f"j = {self._out_label(j)}:  z_j = {terms} = {f.num(self.z_j[j])},  "
                f"a_j = {f.num(self.a_j[j])}"
            )
        body = "".join(f.para(line) for line in [formula, *lines])
        return body + f.more(len(lines), self.z_j.size, "neurons")

    def plot(self, *, ax: Any = None) -> Figure:
        """Bar chart of :math:`z_j` (via :func:`lrp_tutor.viz.bars`)."""
        from .. import viz

        return viz.bars(
            self.z_j,
            labels=self._out_labels(),
            ax=ax,
            title=f"z_j = Σ_i z_ij + b_j · {self.step.label}",
            ylabel="$z_j$",
            xlabel="neuron $j$",
        )


class Messages(Stage):
    r"""Messages stage: :math:`R_{i \leftarrow j}` for the view's neurons under the step's rule.

    Attributes
    ----------
    R_j : ndarray, shape (n_J,)
        The relevance of the view's output neurons.
    R_ij : ndarray, shape (n_I, n_J)
        The messages :math:`R_{i \leftarrow j} = \sum_p c_p z^p_{ij} / \mathrm{stab}(z^p_j)
        \cdot R_j` (routing layers: :math:`w_{ij} R_j`).
    parts : tuple of PartMessages
        Per part *p* of the rule: :math:`z^p_{ij}`, :math:`z^p_j`, :math:`\mathrm{stab}(z^p_j)`
        and its share of the messages. Empty for routing layers and ``Pass``.
    denominators : dict
        ``{part label: stab(z^p_j)}``.
    bias_absorbed, stabilizer_absorbed, absorbed : ndarray, shape (n_J,)
        Relevance each neuron's bias, stabiliser, and both together, kept.
    residual : ndarray, shape (n_J,)
        :math:`R_j - \sum_i R_{i \leftarrow j} - \text{absorbed}_j` (zero up to rounding).
    """

    title = "Messages"

    def __init__(self, step: LayerStep) -> None:
        super().__init__(step)
        view, rule = step.view, step.rule
        self.R_j = step.relevance_out.reshape(-1)[view.outputs]
        self.parts: tuple[PartMessages, ...] = ()
        if isinstance(step.layer, LinearLayer) and rule is not None and rule.parts:
            epsilons = step._propagation.epsilons  # a relative ε is the whole layer's
            self.parts = tuple(
                part_messages(
                    part,
                    [view.gather(modified_input(t.input, step.x)) for t in part.terms],
                    view,
                    self.R_j,
                    epsilons[p] if p < len(epsilons) else None,
                )
                for p, part in enumerate(rule.parts)
            )
            self.R_ij = sum(p.R_ij for p in self.parts)
            self.bias_absorbed = sum(p.bias_absorbed for p in self.parts)
            self.stabilizer_absorbed = sum(p.stabilizer_absorbed for p in self.parts)
        else:
            if isinstance(step.layer, RoutingLayer):
                routing = view.w_ij
            else:  # Pass on a linear layer: R_j goes to input i = j
                routing = (view.inputs[:, None] == view.outputs[None, :]).astype(np.float64)
            self.R_ij = routing * self.R_j
            self.bias_absorbed = np.zeros(self.R_j.size)
            self.stabilizer_absorbed = np.zeros(self.R_j.size)
        self.denominators = {p.label: p.denominator for p in self.parts}
        self.absorbed = self.bias_absorbed + self.stabilizer_absorbed
        self.residual = self.R_j - self.R_ij.sum(axis=0) - self.absorbed

    @property
    def formula(self) -> str:
        """The rule's formula (or the routing formula)."""
        if self.parts:
            return self.step.rule.formula
        if isinstance(self.step.layer, RoutingLayer):
            return "R_{i←j} = w_ij · R_j  (w_ij = 1 where relevance is routed, else 0)"
        return "R_{i←j} = R_j if i = j, else 0  (Pass)"

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return _within(self.residual, self.R_j, tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        n = self.R_j.size
        if self.holds(tolerance):
            return (
                f"Σ_i R_{{i←j}} + absorbed = R_j for all {n} neuron(s), "
                f"worst difference {f.worst(self.residual):.2g}."
            )
        j = int(np.argmax(np.abs(self.residual)))
        return (
            f"Conservation fails at neuron {self._out_label(j)}: Σ_i R_{{i←j}} + absorbed = "
            f"{f.num(self.R_j[j] - self.residual[j])} but R_j = {f.num(self.R_j[j])}."
        )

    def _summary(self) -> str:
        absorbed = f", absorbed {f.short(self.absorbed)}" if np.any(self.absorbed) else ""
        return f"R_ij {self.R_ij.shape}, R_j {f.short(self.R_j)}{absorbed}"

    def _computation(self, i: int, j: int) -> str:
        pieces = []
        for p in self.parts:
            factor = "" if p.coefficient == 1 else f"{f.signed(p.coefficient)}·"
            pieces.append(
                f"{factor}{f.signed(p.z_ij[i, j])}/{f.signed(p.denominator[j])}·"
                f"{f.signed(self.R_j[j])}"
            )
        return " + ".join(pieces) if pieces else f"{f.num(self.R_ij[i, j])} (routed)"

    def _html_body(self) -> str:
        blocks = [f.para(self.formula)]
        for j in self._columns():
            rows = self._rows(self.R_ij[:, j])
            table = f.table(
                ["i", "R_{i←j}", "computed as"],
                [
                    [self._in_label(i), f.num(self.R_ij[i, j]), self._computation(i, j)]
                    for i in rows
                ],
            )
            blocks.append(f.para(f"Neuron j = {self._out_label(j)}, R_j = {f.num(self.R_j[j])}"))
            blocks.append(table + f.more(rows.size, self.R_ij.shape[0], "inputs"))
            blocks.append(
                f.para(
                    f"Σ_i R_{{i←j}} + bias + ε = {f.num(self.R_ij[:, j].sum())} + "
                    f"{f.signed(self.bias_absorbed[j])} + {f.signed(self.stabilizer_absorbed[j])}"
                    f" = {f.num(self.R_j[j] - self.residual[j])}  (R_j = {f.num(self.R_j[j])})"
                )
            )
        return "".join(blocks) + f.more(len(self._columns()), self.R_j.size, "neurons")

    def plot(self, *, ax: Any = None) -> Figure:
        """:math:`z_{ij}` beside :math:`R_{i \\leftarrow j}`
        (via :func:`lrp_tutor.viz.messages`)."""
        from .. import viz

        return viz.messages(
            self.step.forward.z_ij,
            self.R_ij,
            ax=ax,
            title=f"messages · {self.step.label}",
            input_labels=[self._in_label(i) for i in range(self.R_ij.shape[0])],
            output_labels=self._out_labels(),
        )


class Aggregation(Stage):
    r"""Aggregation stage: :math:`R_i = \sum_j R_{i \leftarrow j}` for the whole layer.

    :math:`R_i` is computed for every input at once (Montavon's four steps; im2col for
    convolutions), whatever the view.

    Attributes
    ----------
    R_i : ndarray
        The relevance of every input of the layer (the layer's input shape).
    R_j : ndarray
        The relevance of every output (the layer's output shape).
    sum_in, sum_out : float
        :math:`\sum_i R_i` and :math:`\sum_j R_j`.
    bias, stabilizer : float
        What all the layer's biases and stabilisers absorbed.
    residual : float
        :math:`\sum_j R_j - \sum_i R_i - \text{bias} - \text{stabiliser}`.
    """

    title = "Aggregation"

    def __init__(self, step: LayerStep) -> None:
        super().__init__(step)
        self.R_i = step.relevance_in
        self.R_j = step.relevance_out
        self.sum_in = float(self.R_i.sum())
        self.sum_out = float(self.R_j.sum())
        self.bias = float(step.bias_absorbed.sum())
        self.stabilizer = float(step.stabilizer_absorbed.sum())
        self.residual = self.sum_out - self.sum_in - self.bias - self.stabilizer

    @cached_property
    def R_i_from_messages(self) -> np.ndarray | None:
        r""":math:`\sum_j R_{i \leftarrow j}` added up from the view's messages (input-shaped),
        when the view shows every output neuron; otherwise ``None``."""
        view = self._view
        if view.outputs.size != self.R_j.size:
            return None
        sent = self.step.messages.R_ij.sum(axis=1)
        real = view.inputs >= 0
        total = np.bincount(view.inputs[real], weights=sent[real], minlength=self.R_i.size)
        return total.reshape(self.R_i.shape)

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        ok = _within(np.array([self.residual]), np.array([self.sum_out]), tolerance)
        if self.R_i_from_messages is not None:
            ok = ok and _within(self.R_i_from_messages - self.R_i, self.R_i, tolerance)
        return ok

    def check(self, tolerance: float = TOLERANCE) -> str:
        books = (
            f"Σ_i R_i + bias + ε = Σ_j R_j: {f.num(self.sum_in)} + {f.signed(self.bias)} + "
            f"{f.signed(self.stabilizer)} = {f.num(self.sum_out)}, "
            f"difference {abs(self.residual):.2g}"
        )
        if not _within(np.array([self.residual]), np.array([self.sum_out]), tolerance):
            books = "Conservation fails: " + books
        if self.R_i_from_messages is None:
            return books + "."
        gap = f.worst(self.R_i_from_messages - self.R_i)
        return (
            f"R_i = Σ_j R_{{i←j}} for all {self.R_i.size} inputs (worst difference {gap:.2g}); "
            f"{books}."
        )

    def _summary(self) -> str:
        return (
            f"R_i {f.short(self.R_i)}, Σ R_in {f.num(self.sum_in)}, Σ R_out {f.num(self.sum_out)}"
        )

    def _html_body(self) -> str:
        r_i = self.R_i.reshape(-1)
        rows = self._rows(r_i)
        messages = self.step.messages.R_ij if self.R_i_from_messages is not None else None
        table_rows = []
        for i in rows:
            label = f.index_label(int(i), self.R_i.shape)
            if messages is not None and messages.shape[1] <= f.MAX_COLUMNS:
                row = int(np.flatnonzero(self._view.inputs == i)[0])
                sum_text = " + ".join(f.signed(m) for m in messages[row]) + " = "
            else:
                sum_text = ""
            table_rows.append([label, sum_text + f.num(r_i[i])])
        body = f.para("R_i = Σ_j R_{i←j}") + f.table(["i", "R_i"], table_rows)
        return body + f.more(rows.size, r_i.size, "inputs")

    def plot(self, *, ax: Any = None) -> Figure:
        """Bar chart of :math:`R_i` (via :func:`lrp_tutor.viz.bars`)."""
        from .. import viz

        r_i = self.R_i.reshape(-1)
        labels = [f.index_label(i, self.R_i.shape) for i in range(r_i.size)]
        return viz.bars(r_i, labels=labels, ax=ax, title=f"R_i = Σ_j R_(i←j) · {self.step.label}")


class Stabilization(Stage):
    r"""Stabilization stage: how the rule moves the denominators and the messages.

    LRP-0 divides by :math:`z_j` itself. A rule divides by :math:`\mathrm{stab}(z^p_j)` instead:
    ε pushes it away from zero (:math:`z_j + \varepsilon\,\mathrm{sign}(z_j)`), αβ splits it into
    a positive and a negative part, γ/z⁺/flat/w² change :math:`z_j` altogether.

    Attributes
    ----------
    z_j : ndarray, shape (n_J,)
        The LRP-0 denominators :math:`z_j = \sum_i x_i w_{ij} + b_j`.
    part_z_j : dict
        ``{part label: z^p_j}`` before stabilisation.
    denominators : dict
        ``{part label: stab(z^p_j)}``.
    shift : dict
        ``{part label: stab(z^p_j) − z_j}``.
    R_ij : ndarray, shape (n_I, n_J)
        The rule's messages.
    R_ij_lrp0 : ndarray, shape (n_I, n_J)
        LRP-0's messages :math:`z_{ij} / z_j \cdot R_j` (0/0 := 0).
    message_shift : ndarray, shape (n_I, n_J)
        ``R_ij − R_ij_lrp0``.
    stabilizer_absorbed : ndarray, shape (n_J,)
        What ε absorbed per neuron.
    """

    title = "Stabilization"

    def __init__(self, step: LayerStep) -> None:
        super().__init__(step)
        forward, messages = step.forward, step.messages
        self.z_j = forward.z_j
        self.part_z_j = {p.label: p.z_j for p in messages.parts}
        self.denominators = dict(messages.denominators)
        self.shift = {label: d - self.z_j for label, d in self.denominators.items()}
        self.R_ij = messages.R_ij
        if messages.parts:
            self.R_ij_lrp0 = safe_divide(forward.z_ij, self.z_j) * messages.R_j
        else:
            self.R_ij_lrp0 = messages.R_ij
        self.message_shift = self.R_ij - self.R_ij_lrp0
        self.stabilizer_absorbed = messages.stabilizer_absorbed
        self.bias_absorbed = messages.bias_absorbed
        self._messages = messages

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return self._messages.holds(tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        if not self.denominators:
            return (
                "No denominators here: relevance is routed, nothing is stabilised or absorbed; "
                f"{self._messages.check(tolerance)}"
            )
        moved = max(f.worst(s) for s in self.shift.values())
        return (
            f"The rule moves the {self.z_j.size} denominator(s) z_j → stab(z_j) by at most "
            f"{moved:.2g} and the messages by at most {f.worst(self.message_shift):.2g} "
            f"(compared with LRP-0); the stabiliser absorbs {f.num(self.stabilizer_absorbed.sum())}"
            f" and the bias {f.num(self.bias_absorbed.sum())}, so "
            f"{self._messages.check(tolerance)}"
        )

    def _summary(self) -> str:
        parts = ", ".join(f"stab({k}_j) {f.short(v)}" for k, v in self.denominators.items())
        return f"z_j {f.short(self.z_j)}" + (f", {parts}" if parts else ", no denominators")

    def _html_body(self) -> str:
        header = ["j", "z_j"] + [f"stab({k}_j)" for k in self.denominators]
        rows = []
        for j in self._columns():
            row = [self._out_label(j), f.num(self.z_j[j])]
            row += [f.num(d[j]) for d in self.denominators.values()]
            rows.append(row)
        formula = "stab(z) = z + ε·sign(z), sign(0) = +1;  LRP-0 divides by z_j itself"
        rule_parts = self.step.rule.parts if self.step.rule is not None else ()
        for part, shown in zip(rule_parts, self._messages.parts, strict=False):
            if part.relative:  # ε·RMS(z) over all the layer's neurons, not only those shown
                formula += (
                    f";  relative ε: ε = {part.epsilon:g}·RMS({shown.label}) of the whole layer "
                    f"= {f.num(shown.epsilon)}"
                )
        return f.para(formula) + f.table(header, rows) + f.more(len(rows), self.z_j.size, "neurons")

    def plot(self, *, ax: Any = None) -> Figure:
        """:math:`z_j` against :math:`\\mathrm{stab}(z^p_j)` (via
        :func:`lrp_tutor.viz.stabilization`), one panel per part of the rule (the first part
        only when ``ax`` is given)."""
        from .. import viz

        parts = self._messages.parts
        panels = [(p.label, p.denominator, p.epsilon) for p in parts] or [("z", self.z_j, None)]
        labels = self._out_labels()
        if len(panels) == 1 or ax is not None:
            label, stabilized, epsilon = panels[0]
            title = f"z_j → stab({label}_j) · {self.step.label}"
            return viz.stabilization(
                self.z_j, stabilized, ax=ax, labels=labels, title=title, epsilon=epsilon or None
            )
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3))
        for axis, (label, stabilized, epsilon) in zip(axes, panels, strict=True):
            title = f"z_j → stab({label}_j)"
            viz.stabilization(
                self.z_j, stabilized, ax=axis, labels=labels, title=title, epsilon=epsilon or None
            )
        return figure
