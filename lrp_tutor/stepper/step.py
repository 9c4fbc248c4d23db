r"""One layer of a walkthrough: its input and output, its rule, its relevance and its stages.

A :class:`LayerStep` shows a **view**: some output neurons *j* and their inputs *i*. A dense
layer shows all its neurons (its messages form one (n_in, n_out) matrix); convolution and
pooling layers show one output neuron and its receptive field; activations, Flatten and
Dropout show all neurons when there are at most 16. By default the single neuron is the one
with the largest :math:`|R_j|`; :meth:`LayerStep.neuron` chooses another. The relevance of
the whole layer (``relevance_in``, ``relevance_out`` and the ledger) never depends on the view.

Stages are computed when first asked for and then kept.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from ..errors import InputError
from ..ledger import LedgerEntry
from ..rules import Rule
from . import _format as f
from ._layers import Layer, View
from ._propagate import Propagation
from .stages import Aggregation, Forward, Messages, Stabilization

__all__ = ["LayerStep"]


class LayerStep:
    r"""The walkthrough of one layer.

    Attributes
    ----------
    index : int
        Position of the layer in forward order.
    name : str
        The module's name (``"features.0"``); ``label`` adds its type, ``"features.0 (Conv2d)"``.
    module : nn.Module
        The user's module.
    rule : Rule or None
        The rule that redistributes this layer's relevance (None for routing layers).
    x, a : ndarray
        The layer's input and output for the sample (no batch dimension).
    relevance_out : ndarray
        :math:`R_j` for every output (shape of ``a``).
    relevance_in : ndarray
        :math:`R_i` for every input (shape of ``x``).
    bias_absorbed, stabilizer_absorbed : ndarray
        What each output neuron's bias and stabiliser absorbed (shape of ``a``).
    focus : list of tuple
        The output neurons the stages show, as indices into ``a``.
    forward, messages, aggregation, stabilization : Stage
        The four stages (see :mod:`lrp_tutor.stepper.stages`).
    """

    def __init__(
        self,
        index: int,
        layer: Layer,
        rule: Rule | None,
        x: np.ndarray,
        a: np.ndarray,
        relevance_out: np.ndarray,
        propagation: Propagation,
        focus: np.ndarray | None = None,
    ) -> None:
        self.index = index
        self.layer = layer
        self.rule = rule
        self.x = x
        self.a = a
        self.relevance_out = relevance_out
        self.relevance_in = propagation.R_in
        self.bias_absorbed = propagation.bias
        self.stabilizer_absorbed = propagation.stabilizer
        self._propagation = propagation
        self._focus = layer.default_focus(relevance_out) if focus is None else focus

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def module(self) -> nn.Module:
        return self.layer.module

    @property
    def label(self) -> str:
        return self.layer.label

    @property
    def focus(self) -> list[tuple[int, ...]]:
        return [tuple(int(k) for k in np.unravel_index(j, self.a.shape)) for j in self._focus]

    def neuron(self, j: int | tuple[int, ...]) -> LayerStep:
        """The same step, its stages showing output neuron ``j`` only.

        ``j`` is an index into the layer's output: an int for a vector, ``(c, h, w)`` for a
        feature map (an int is then a flat index). The whole-layer relevance is unchanged.

        >>> import numpy as np
        >>> from lrp_tutor.stepper import Walkthrough
        >>> walk = Walkthrough([(np.eye(2), np.zeros(2), None)]).forward([1.0, 2.0]).backward()
        >>> walk[0].neuron(1).forward.z_j
        array([2.])
        """
        flat = self._flat_index(j)
        return LayerStep(
            self.index,
            self.layer,
            self.rule,
            self.x,
            self.a,
            self.relevance_out,
            self._propagation,
            np.array([flat]),
        )

    def _flat_index(self, j: Any) -> int:
        shape = self.a.shape
        try:
            if isinstance(j, tuple | list):
                if len(j) != len(shape):
                    raise ValueError
                return int(np.ravel_multi_index(tuple(int(k) for k in j), shape))
            if isinstance(j, bool) or not isinstance(j, int | np.integer):
                raise ValueError
            if not 0 <= int(j) < self.a.size:
                raise ValueError
            return int(j)
        except ValueError:
            raise InputError(
                f"Layer {self.label}: neuron {j!r} does not exist; its output has shape {shape} "
                f"(give an int below {self.a.size} or an index tuple of length {len(shape)})."
            ) from None

    @cached_property
    def view(self) -> View:
        """The view's output neurons, their receptive fields and weights."""
        return self.layer.view(self.x, self._focus)

    @cached_property
    def forward(self) -> Forward:
        return Forward(self)

    @cached_property
    def messages(self) -> Messages:
        return Messages(self)

    @cached_property
    def aggregation(self) -> Aggregation:
        return Aggregation(self)

    @cached_property
    def stabilization(self) -> Stabilization:
        return Stabilization(self)

    @property
    def ledger_entry(self) -> LedgerEntry:
        """This layer's line in the conservation ledger."""
        return LedgerEntry(
            self.label,
            self.relevance_out.sum(),
            self.relevance_in.sum(),
            self.bias_absorbed.sum(),
            self.stabilizer_absorbed.sum(),
        )

    @property
    def stages(self) -> tuple[Forward, Messages, Aggregation, Stabilization]:
        return self.forward, self.messages, self.aggregation, self.stabilization

    def holds(self, tolerance: float = 1e-10) -> bool:
        """Whether every stage's check holds."""
        return all(stage.holds(tolerance) for stage in self.stages)

    def check(self, tolerance: float = 1e-10) -> str:
        """The checks of all four stages, one per line."""
        return "\n".join(f"{s.title}: {s.check(tolerance)}" for s in self.stages)

    def _rule_text(self) -> str:
        return "routes relevance" if self.rule is None else f"rule {self.rule!r}"

    def __repr__(self) -> str:
        return (
            f"<LayerStep {self.index} · {self.label} · {self._rule_text()} · "
            f"{self.x.shape} → {self.a.shape} · Σ R_out {f.num(self.relevance_out.sum())}, "
            f"Σ R_in {f.num(self.relevance_in.sum())}>"
        )

    def _repr_html_(self) -> str:
        entry = self.ledger_entry
        books = (
            f"Σ R_out = {f.num(entry.relevance_out[0])}, Σ R_in = {f.num(entry.relevance_in[0])}, "
            f"bias {f.num(entry.bias[0])}, ε {f.num(entry.stabilizer[0])}"
        )
        shown = ", ".join(f.index_label(int(j), self.a.shape) for j in self._focus[:8])
        more = " …" if len(self._focus) > 8 else ""
        return f.box(
            f"Step {self.index} · {self.label} · {self._rule_text()}",
            f.para(f"{self.x.shape} → {self.a.shape}; {books}"),
            f.para(
                f"Showing output neuron(s) {shown}{more}; see .forward, .messages, "
                ".aggregation, .stabilization."
            ),
            "".join(f.para(line) for line in self.check().splitlines()),
        )
