r"""The rule book applied to one layer: messages of a few neurons, relevance of the whole layer.

A rule is a list of parts *p* (see :mod:`lrp_tutor.rules`). For part *p*

.. math::

    z^p_{ij} = \sum_t \phi_t(x_i)\,\rho_t(w_{ij}), \qquad
    z^p_j = \sum_i z^p_{ij} + \rho^p(b_j), \qquad
    R_{i \leftarrow j} = \sum_p c_p \frac{z^p_{ij}}{\mathrm{stab}(z^p_j)} R_j .

A relative ε (``Epsilon(0.25, relative=True)``) is :math:`\varepsilon \cdot \mathrm{RMS}(z^p)`
over **all** output neurons of the layer, so :func:`propagate` computes it from the whole
layer's :math:`z^p` and keeps it (:attr:`Propagation.epsilons`), and :func:`part_messages`,
which sees only a view's neurons, is handed it.

:func:`part_messages` evaluates this neuron by neuron on a :class:`~._layers.View` (the
didactic form, an (n_I, n_J) matrix per part). :func:`propagate` evaluates the same formula
for the whole layer in Montavon's four steps, without building any matrix of messages:

.. math::

    z^p = \rho(W)^\top \phi(x) + \rho^p(b), \quad s^p = R / \mathrm{stab}(z^p), \quad
    c^p = \rho(W)\, s^p, \quad R_{in} = \sum_p c_p \sum_t \phi_t(x) \odot c^p_t .

Both use :func:`lrp_tutor.rules.stabilize` and :func:`lrp_tutor.rules.safe_divide`, and both
book what the bias and the stabiliser absorbed:

.. math::

    \text{bias}_j = \sum_p c_p \frac{\rho^p(b_j)}{\mathrm{stab}(z^p_j)} R_j, \qquad
    \text{stab}_j = \sum_p c_p \frac{\varepsilon_p\,\mathrm{sign}(z^p_j)}{\mathrm{stab}(z^p_j)}
    R_j \;\; (+\, c_p R_j \text{ where } \mathrm{stab}(z^p_j) = 0).

A rule without parts (:class:`~lrp_tutor.rules.Pass`) and the routing layers send
:math:`R_{i \leftarrow j} = w_{ij} R_j` with fixed 0/1 weights instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..rules import Part, Rule, safe_divide, sign
from ._layers import Layer, LinearLayer, RoutingLayer, View

__all__ = ["PartMessages", "Propagation", "modified_input", "part_messages", "propagate"]


def modified_input(phi: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
    r""":math:`\phi(x)` for one sample, computed on a batch of one so that bounds shaped like a
    batch (e.g. ZBox's ``low`` of shape (1, C, 1, 1)) broadcast as in the fast path."""
    return np.array(phi(x[None]), dtype=np.float64).reshape(x.shape)


@dataclass
class PartMessages:
    r"""The messages of one part *p* of a rule for the neurons of a view.

    Attributes
    ----------
    label : str
        The part's name ("z", "z⁺", "z⁻").
    coefficient : float
        :math:`c_p` (1, α or −β).
    epsilon : float
        The ε the part's stabiliser added: its ε, or for a relative ε, ε·RMS(z) of the whole
        layer's :math:`z^p` (the sample's).
    z_ij : ndarray, shape (n_I, n_J)
        :math:`z^p_{ij} = \sum_t \phi_t(x_i)\rho_t(w_{ij})`.
    bias_j : ndarray, shape (n_J,)
        :math:`\rho^p(b_j)`.
    z_j : ndarray, shape (n_J,)
        :math:`z^p_j = \sum_i z^p_{ij} + \rho^p(b_j)`.
    denominator : ndarray, shape (n_J,)
        :math:`\mathrm{stab}(z^p_j)`.
    R_ij : ndarray, shape (n_I, n_J)
        This part's share of the messages, :math:`c_p z^p_{ij} / \mathrm{stab}(z^p_j) R_j`.
    bias_absorbed, stabilizer_absorbed : ndarray, shape (n_J,)
        What this part's bias and stabiliser absorbed, per neuron.
    """

    label: str
    coefficient: float
    epsilon: float
    z_ij: np.ndarray
    bias_j: np.ndarray
    z_j: np.ndarray
    denominator: np.ndarray
    R_ij: np.ndarray
    bias_absorbed: np.ndarray
    stabilizer_absorbed: np.ndarray


def part_messages(
    part: Part,
    phi_x: list[np.ndarray],
    view: View,
    r_j: np.ndarray,
    epsilon: float | None = None,
) -> PartMessages:
    """The messages of ``part`` for the neurons of ``view``.

    ``phi_x[t]`` is :math:`\\phi_t(x_i)` at the view's inputs (0 at padding); ``r_j`` is
    :math:`R_j` of the view's outputs; ``epsilon`` the ε to add (from
    :attr:`Propagation.epsilons`; needed for a relative ε, which depends on every neuron of the
    layer, not only the view's).
    """
    if epsilon is None:
        if part.relative and part.epsilon:
            raise ValueError("part_messages: a relative ε needs the whole layer's ε·RMS(z).")
        epsilon = part.epsilon
    z_ij = sum(
        p[:, None] * term.weight(view.w_ij) for p, term in zip(phi_x, part.terms, strict=True)
    )
    bias_j = np.asarray(part.bias(view.b_j), dtype=np.float64)
    z_j = z_ij.sum(axis=0) + bias_j
    denominator = part.stabilize(z_j, epsilon=epsilon)
    s_j = safe_divide(r_j, denominator)  # R_j / stab(z_j), 0 where stab(z_j) = 0
    c = part.coefficient
    return PartMessages(
        label=part.label,
        coefficient=c,
        epsilon=float(epsilon),
        z_ij=z_ij,
        bias_j=bias_j,
        z_j=z_j,
        denominator=denominator,
        R_ij=c * z_ij * s_j,
        bias_absorbed=c * bias_j * s_j,
        stabilizer_absorbed=c * (epsilon * sign(z_j) * s_j + (denominator == 0) * r_j),
    )


@dataclass
class Propagation:
    """The relevance a whole layer sends to its input, and what it absorbed per output neuron;
    ``epsilons``: per part of the rule, the ε its stabiliser added (ε·RMS(z) if relative)."""

    R_in: np.ndarray
    bias: np.ndarray
    stabilizer: np.ndarray
    epsilons: tuple[float, ...] = ()


def propagate(layer: Layer, rule: Rule | None, x: np.ndarray, r_out: np.ndarray) -> Propagation:
    """Montavon's four steps for every neuron of ``layer`` at once (input ``x``, relevance
    ``r_out`` at the output)."""
    none = np.zeros(r_out.shape)
    if isinstance(layer, RoutingLayer):
        return Propagation(layer.route(x, r_out), none, none)
    assert isinstance(layer, LinearLayer) and rule is not None
    if not rule.parts:  # Pass: hand R_j on to input i = j
        if r_out.size != x.size:
            raise InputError(
                f"Layer {layer.label}: the rule {rule!r} passes relevance on unchanged, which "
                f"needs as many inputs as outputs ({x.size} ≠ {r_out.size}). Give it another rule."
            )
        return Propagation(r_out.reshape(x.shape).copy(), none, none)
    r_in = np.zeros(x.shape)
    bias, stabilizer = none.copy(), none.copy()
    epsilons = []
    b = layer.bias_map(r_out.shape)
    phi_cache: dict[int, np.ndarray] = {}
    for part in rule.parts:
        phis = [_cached(phi_cache, term.input, x) for term in part.terms]
        bias_j = np.asarray(part.bias(b), dtype=np.float64)
        z = bias_j + sum(
            layer.apply(phi, term.weight) for phi, term in zip(phis, part.terms, strict=True)
        )
        epsilon = float(part.epsilon_of(z))  # ε, or ε·RMS(z) over the whole layer
        epsilons.append(epsilon)
        denominator = part.stabilize(z, epsilon=epsilon)
        s = safe_divide(r_out, denominator)
        c = part.coefficient
        for phi, term in zip(phis, part.terms, strict=True):
            r_in += c * phi * layer.transpose(s, term.weight, x.shape)
        bias += c * bias_j * s
        stabilizer += c * (epsilon * sign(z) * s + (denominator == 0) * r_out)
    return Propagation(r_in, bias, stabilizer, tuple(epsilons))


def _cached(cache: dict[int, np.ndarray], phi: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
    key = id(phi)
    if key not in cache:
        cache[key] = modified_input(phi, x)
    return cache[key]
