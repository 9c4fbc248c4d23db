r"""The rule book: every LRP rule, written once for numpy arrays and torch tensors.

A layer with inputs :math:`x_i`, weights :math:`w_{ij}` and bias :math:`b_j` sends the
relevance :math:`R_j` of its output neuron *j* back to its inputs as messages

.. math::

    R_{i \leftarrow j} = \sum_p c_p \, \frac{z^p_{ij}}{\mathrm{stab}(z^p_j)} \, R_j ,
    \qquad
    z^p_{ij} = \sum_t \phi_t(x_i)\, \rho_t(w_{ij}),
    \qquad
    z^p_j = \sum_i z^p_{ij} + \rho^p(b_j),

and aggregates them, :math:`R_i = \sum_j R_{i \leftarrow j}`.  A rule is therefore a
short list of **parts** *p* (one for most rules; a positive and a negative one for αβ),
each with a coefficient :math:`c_p` (1, or α and −β), a few **terms** *t* that say how the
input and the weight are modified (:math:`\phi_t`, :math:`\rho_t`), a bias modifier and the
stabiliser

.. math::

    \mathrm{stab}(z) = z + \varepsilon \cdot \mathrm{sign}(z), \qquad \mathrm{sign}(0) = +1 .

With a **relative** stabiliser (``Epsilon(0.25, relative=True)``, as in Montavon et al.'s
tutorial) ε scales with the layer: :math:`\varepsilon_n = \varepsilon \cdot
\mathrm{RMS}_n(z)`, the root mean square of :math:`z_j` over all output neurons *j* of the
layer for sample *n* (:func:`rms`). Each sample has its own, so an explanation never depends on
what else is in the batch, and scaling a layer's input by *c* > 0 scales ε with it.

A neuron whose stabilised denominator is exactly zero (only possible with ε = 0, or with a
relative ε in a sample whose :math:`z_j` are all 0, so that :math:`\varepsilon_n = 0`) sends
no messages: 0/0 := 0, never NaN.  Because :math:`\sum_p c_p = 1` for every rule, what a neuron
does not pass on is exactly what its bias and its stabiliser absorbed:

.. math::

    R_j - \sum_i R_{i \leftarrow j}
    = \sum_p c_p \frac{\rho^p(b_j)}{\mathrm{stab}(z^p_j)} R_j
    + \sum_p c_p \frac{\varepsilon\,\mathrm{sign}(z^p_j)}{\mathrm{stab}(z^p_j)} R_j .

(with ε the ε that was added: :math:`\varepsilon \cdot \mathrm{RMS}_n(z^p)` for a relative
one; a relative ε is the same for every neuron *j* of the sample, so the ledger books it just
like an absolute one.)

The stepper (``lrp_tutor.stepper``) evaluates these formulas neuron by neuron in float64;
the fast path (``lrp_tutor.fast``) evaluates the same parts for whole batches as
:math:`z = \rho(W)^\top \phi(x) + \rho(b)`, :math:`s = R / \mathrm{stab}(z)`,
:math:`c = \rho(W)\, s`, :math:`R_{in} = \phi(x) \odot c`, with :math:`W_{ij}` from input *i*
to neuron *j*.

Examples
--------
>>> import numpy as np
>>> from lrp_tutor.rules import Epsilon
>>> rule = Epsilon(0.25)
>>> rule.parts[0].stabilize(np.array([-1.0, 0.0, 2.0]))
array([-1.25,  0.25,  2.25])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .errors import RuleError

__all__ = [
    "Rule",
    "Part",
    "Term",
    "LRP0",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "WSquare",
    "Flat",
    "ZBox",
    "Pass",
    "sign",
    "stabilize",
    "rms",
    "safe_divide",
]

Array = TypeVar("Array")  # a numpy.ndarray or a torch.Tensor; every helper keeps the type

DEFAULT_EPSILON = 1e-6
"""The stabiliser of every rule that does not take ε as its parameter (as in Zennit)."""


# --------------------------------------------------------------------------------------
# Array helpers that work for numpy arrays and torch tensors alike.


def _is_numpy(a: Any) -> bool:
    return isinstance(a, np.ndarray | np.generic)


def _torch() -> Any:
    import torch  # only the tensor branches need it

    return torch


def declares(**properties: bool) -> Callable[[Callable], Callable]:
    """Attach what the fast path may rely on to an input or weight modifier, so that it is
    read from the rule book instead of recognised by identity. The properties:

    - ``homogeneous``: :math:`\\rho(t w) = t \\rho(w)` for t > 0 (a positive scale of the
      weights, e.g. a merged BatchNorm, can act on the outputs instead).
    - ``takes_out``: it accepts ``out=`` (its result can be written into scratch memory).
    - ``signed``: it selects by sign (:math:`x^+`, :math:`x^-`).
    - ``zero_if_nonnegative``: it is 0 wherever its argument is ≥ 0 (:math:`x^-` of a
      non-negative input vanishes, and its products are skipped).

    >>> negative.zero_if_nonnegative, positive.homogeneous, ones_like.homogeneous
    (True, True, False)
    """

    def mark(modifier: Callable) -> Callable:
        for name in ("homogeneous", "takes_out", "signed", "zero_if_nonnegative"):
            setattr(modifier, name, properties.get(name, False))
        return modifier

    return mark


@declares(homogeneous=True, takes_out=True, signed=True)
def positive(a: Array, out: Array | None = None) -> Array:
    """:math:`a^+ = \\max(a, 0)`, written into ``out`` when given (same shape and kind)."""
    if out is None:
        return a.clip(min=0)
    return np.clip(a, 0, None, out=out) if _is_numpy(a) else _torch().clamp(a, min=0, out=out)


@declares(homogeneous=True, takes_out=True, signed=True, zero_if_nonnegative=True)
def negative(a: Array, out: Array | None = None) -> Array:
    """:math:`a^- = \\min(a, 0)`, written into ``out`` when given (same shape and kind)."""
    if out is None:
        return a.clip(max=0)
    return np.clip(a, None, 0, out=out) if _is_numpy(a) else _torch().clamp(a, max=0, out=out)


@declares(homogeneous=True)
def identity(a: Array) -> Array:
    """:math:`a` itself."""
    return a


@declares()
def ones_like(a: Array) -> Array:
    """An array of ones with the shape, dtype (and device) of ``a``."""
    if _is_numpy(a):
        return np.ones_like(a)
    return a.new_ones(a.shape)


@declares(homogeneous=True)
def zeros_like(a: Array) -> Array:
    """An array of zeros with the shape, dtype (and device) of ``a``."""
    if _is_numpy(a):
        return np.zeros_like(a)
    return a.new_zeros(a.shape)


def constant_like(a: Array, value: Any) -> Array:
    """``value`` (a number, or an array broadcastable to ``a``) broadcast to ``a``'s shape."""
    if _is_numpy(a):
        return np.broadcast_to(np.asarray(value, dtype=a.dtype), a.shape)
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    return torch.as_tensor(value, dtype=a.dtype, device=a.device).expand(a.shape)


def sign(z: Array, out: Array | None = None) -> Array:
    """The sign with the convention :math:`\\mathrm{sign}(0) = +1`.

    With ``out`` (tensors, the fast path's scratch memory) it is written there as
    ``copysign(1, z)``, one pass without temporaries; that gives −1 for −0.0, a value only a
    sum of zeros takes, whose neuron sends no messages either way.

    >>> sign(np.array([-2.0, 0.0, 3.0]))
    array([-1.,  1.,  1.])
    """
    if out is not None and not _is_numpy(z):
        torch = _torch()
        return torch.copysign(torch.ones((), dtype=z.dtype, device=z.device), z, out=out)
    one = ones_like(z)
    return (z >= 0) * one - (z < 0) * one


def stabilize(
    z: Array, epsilon: Any, sign_z: Array | None = None, out: Array | None = None
) -> Array:
    """:math:`\\mathrm{stab}(z) = z + \\varepsilon \\cdot \\mathrm{sign}(z)`, sign(0) = +1.

    ``epsilon``: a number, or an array that broadcasts against ``z`` (a relative ε, one per
    sample: :meth:`Part.epsilon_of`); ``sign_z``: the sign, where the caller has it already;
    ``out``: where to write (tensors).

    >>> stabilize(np.array([-1.0, 0.0, 2.0]), 0.5)
    array([-1.5,  0.5,  2.5])
    """
    scalar = isinstance(epsilon, int | float | np.integer | np.floating)
    if scalar and epsilon == 0:
        return z
    if sign_z is None:
        sign_z = sign(z)
    if out is not None and not _is_numpy(z):
        torch = _torch()
        if scalar:
            return torch.add(z, sign_z, alpha=epsilon, out=out)
        return torch.mul(sign_z, epsilon, out=out).add_(z)
    return z + epsilon * sign_z


def rms(z: Array, batched: bool = False) -> Array:
    """The root mean square of ``z`` per sample, :math:`\\sqrt{\\tfrac1J \\sum_j z_j^2}`.

    ``batched=False``: ``z`` is one sample (every axis a neuron axis); the result is a 0-d
    array or tensor. ``batched=True``: axis 0 is the batch; one value per sample, shaped
    (N, 1, …, 1) so that it broadcasts against ``z``. All ``z`` = 0 gives 0.

    >>> rms(np.array([3.0, -4.0, 0.0, 0.0]))
    array(2.5)
    >>> rms(np.array([[1.0, -1.0], [2.0, 2.0], [0.0, 0.0]]), batched=True)
    array([[1.],
           [2.],
           [0.]])
    """
    if batched:
        flat = z.reshape(z.shape[0], -1)
        per_sample = (flat * flat).mean(1) ** 0.5
        return per_sample.reshape((z.shape[0],) + (1,) * (z.ndim - 1))
    if _is_numpy(z):
        return np.asarray(np.mean(z * z) ** 0.5)
    return (z * z).mean() ** 0.5


def safe_divide(numerator: Array, denominator: Array) -> Array:
    """``numerator / denominator``, and 0 wherever the denominator is exactly 0 (0/0 := 0).

    >>> safe_divide(np.array([1.0, 1.0]), np.array([2.0, 0.0]))
    array([0.5, 0. ])
    """
    zero = denominator == 0
    one = ones_like(denominator)
    safe = denominator * ~zero + one * zero  # 1 where the denominator is 0, to avoid 0/0
    return numerator / safe * ~zero


# --------------------------------------------------------------------------------------
# The building blocks of a rule.


@dataclass(frozen=True)
class Term:
    r"""One product :math:`\phi(x_i)\,\rho(w_{ij})` that enters :math:`z_{ij}`.

    Attributes
    ----------
    input : callable
        :math:`\phi`, the input modifier (``identity``, ``positive``, ``ones_like``…).
    weight : callable
        :math:`\rho`, the weight modifier.
    label : str
        How the term reads in a formula, e.g. ``"x⁺·w⁺"``.
    """

    input: Callable[[Any], Any]
    weight: Callable[[Any], Any]
    label: str


@dataclass(frozen=True)
class Part:
    r"""One normalised share of a rule: :math:`c \cdot z_{ij} / \mathrm{stab}(z_j) \cdot R_j`.

    Attributes
    ----------
    coefficient : float
        :math:`c_p`: 1 for single-part rules, α and −β for the αβ-rule.
    terms : tuple of Term
        :math:`z_{ij} = \sum_t \phi_t(x_i)\rho_t(w_{ij})`.
    bias : callable
        :math:`\rho(b_j)`, the modified bias that enters :math:`z_j` (and absorbs relevance).
    epsilon : float
        ε of the stabiliser :math:`\mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z)`.
    label : str
        A short name of the part ("z", "z⁺", "z⁻").
    relative : bool
        Whether ε is relative: the stabiliser adds :math:`\varepsilon \cdot
        \mathrm{RMS}_n(z)` instead of ε, per sample *n* (see :meth:`epsilon_of`).
    """

    coefficient: float
    terms: tuple[Term, ...]
    bias: Callable[[Any], Any]
    epsilon: float
    label: str = "z"
    relative: bool = False

    def epsilon_of(self, z: Array, batched: bool = False) -> Any:
        """The ε that the stabiliser adds to the layer's :math:`z` (this part's, bias
        included, of **all** the layer's output neurons): ε itself, or for a relative ε,
        :math:`\\varepsilon \\cdot \\mathrm{RMS}_n(z)` for each sample *n* (:func:`rms`;
        ``batched`` as there). Both paths call this, then :meth:`stabilize` with the result.

        >>> part = Epsilon(0.5, relative=True).parts[0]
        >>> float(part.epsilon_of(np.array([3.0, -4.0, 0.0, 0.0])))
        1.25
        """
        if not self.relative or self.epsilon == 0:
            return self.epsilon
        return self.epsilon * rms(z, batched)

    def stabilize(
        self,
        z: Array,
        sign_z: Array | None = None,
        out: Array | None = None,
        *,
        epsilon: Any = None,
        batched: bool = False,
    ) -> Array:
        """:math:`\\mathrm{stab}(z_j)` with this part's ε (both paths call this).

        ``epsilon``: the ε to add, where the caller has it from :meth:`epsilon_of` (a
        relative ε needs the whole layer's :math:`z`); otherwise it is computed from ``z``
        (``batched`` as in :func:`rms`).
        """
        if epsilon is None:
            epsilon = self.epsilon_of(z, batched)
        return stabilize(z, epsilon, sign_z, out)

    @property
    def is_plain(self) -> bool:
        """True when :math:`z_{ij} = x_i w_{ij}` and :math:`z_j` is the layer's own output."""
        return (
            len(self.terms) == 1
            and self.terms[0].input is identity
            and self.terms[0].weight is identity
            and self.bias is identity
        )


_PLAIN = Term(identity, identity, "x·w")


class Rule:
    """Base class of the rules. A rule is its list of :class:`Part` s.

    Subclasses set ``parts`` in ``__init__`` after validating their parameters. Two rules
    are equal when they are of the same class with the same parameters.
    """

    parts: tuple[Part, ...] = ()
    formula: str = ""
    source: str = ""

    @property
    def params(self) -> dict[str, Any]:
        """The rule's parameters, as passed to its constructor (ε only where not default)."""
        epsilon = getattr(self, "epsilon", DEFAULT_EPSILON)
        return {} if epsilon == DEFAULT_EPSILON else {"epsilon": epsilon}

    @property
    def name(self) -> str:
        """A short readable name, e.g. ``ε=0.25``."""
        return repr(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return _params_equal(self.params, other.params)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))


def _params_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def _check_number(rule: str, name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise RuleError(
            f"{rule}: {name} must be a real number, got {type(value).__name__} {value!r}."
        )
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise RuleError(f"{rule}: {name} must be a finite number ≥ {minimum:g}, got {value!r}.")
    return value


# --------------------------------------------------------------------------------------
# The rules.


class Epsilon(Rule):
    r"""LRP-ε (Bach et al. 2015, eq. 58), with an absolute or a relative ε.

    .. math::

        R_{i \leftarrow j} = \frac{x_i w_{ij}}{z_j + \varepsilon\,\mathrm{sign}(z_j)} R_j,
        \qquad z_j = \sum_i x_i w_{ij} + b_j

    ε absorbs some relevance of weakly activated neurons, which makes explanations
    sparser and less noisy. ε = 0 is LRP-0.

    With ``relative=True`` the stabiliser scales with the layer, as in Montavon et al.'s LRP
    tutorial (``incr(z) = z + 0.25·RMS(z)``):

    .. math::

        \mathrm{stab}(z_j) = z_j + \varepsilon\,\mathrm{RMS}_n(z)\,\mathrm{sign}(z_j),
        \qquad \mathrm{RMS}_n(z) = \sqrt{\tfrac1J \textstyle\sum_{j'} z_{j'}^2}

    over all *J* output neurons of the layer (every channel and position), for each sample
    *n* on its own: an explanation never depends on what else is in the batch, and a
    neuron is "weak" compared with its layer, whatever the scale of the activations
    (scaling the input of a bias-free ReLU network by *c* > 0 scales the relevance by *c*).
    A sample whose :math:`z_j` are all 0 has :math:`\varepsilon_n = 0`: its neurons send
    nothing (0/0 := 0) and the ledger books their relevance as absorbed by the stabiliser.

    Parameters
    ----------
    epsilon : float, default 1e-6
        The stabiliser, ε ≥ 0 (ε > 0 when relative).
    relative : bool, default False
        Whether ε is a fraction of the layer's RMS(z) (per sample) instead of a number.

    Examples
    --------
    >>> Epsilon(0.25)
    Epsilon(epsilon=0.25)
    >>> Epsilon(0.25, relative=True)
    Epsilon(epsilon=0.25, relative=True)
    >>> Epsilon(0.25, relative=True).name
    'ε=0.25·RMS(z)'
    """

    formula = "R_{i←j} = x_i·w_ij / (z_j + ε·sign(z_j)) · R_j"
    source = "Bach et al. 2015, PLOS ONE, eq. (58)"

    def __init__(self, epsilon: float = DEFAULT_EPSILON, relative: bool = False) -> None:
        name = type(self).__name__
        self.epsilon = _check_number(name, "epsilon", epsilon)
        if not isinstance(relative, bool | np.bool_):
            raise RuleError(
                f"{name}: relative must be True or False, got {type(relative).__name__} "
                f"{relative!r}. relative=True scales epsilon with the RMS of the layer's z."
            )
        self.relative = bool(relative)
        if self.relative and self.epsilon == 0:
            raise RuleError(
                f"{name}: a relative epsilon must be > 0, got epsilon={self.epsilon!r} with "
                "relative=True (ε·RMS(z) would be 0). For LRP-0 use LRP0(); otherwise give "
                "epsilon > 0, e.g. Epsilon(0.25, relative=True)."
            )
        if self.relative:
            self.formula = (
                "R_{i←j} = x_i·w_ij / (z_j + ε·RMS(z)·sign(z_j)) · R_j,  "
                "RMS(z) = √(mean_j z_j²) of the layer, per sample"
            )
            self.source = "Montavon et al. 2019, LRP: An Overview, sec. 10.2; Montavon's tutorial"
        self.parts = (Part(1.0, (_PLAIN,), identity, self.epsilon, "z", self.relative),)

    @property
    def params(self) -> dict[str, Any]:
        if getattr(self, "relative", False):
            return {"epsilon": self.epsilon, "relative": True}
        return {"epsilon": self.epsilon}

    @property
    def name(self) -> str:
        if getattr(self, "relative", False):
            return f"ε={self.epsilon:g}·RMS(z)"
        return f"ε={self.epsilon:g}"


class LRP0(Epsilon):
    r"""LRP-0, the basic rule (Bach et al. 2015, eq. 56): ε-rule with ε = 0.

    .. math::

        R_{i \leftarrow j} = \frac{x_i w_{ij}}{z_j} R_j, \qquad 0/0 := 0

    On a bias-free ReLU network LRP-0 equals gradient × input.

    Examples
    --------
    >>> LRP0().parts[0].epsilon
    0.0
    """

    formula = "R_{i←j} = x_i·w_ij / z_j · R_j"
    source = "Bach et al. 2015, PLOS ONE, eq. (56)"

    def __init__(self) -> None:
        super().__init__(0.0)

    @property
    def params(self) -> dict[str, Any]:
        return {}

    @property
    def name(self) -> str:
        return "LRP-0"


class Gamma(Rule):
    r"""LRP-γ (Montavon et al. 2019, eq. 10.4): favour positive contributions.

    .. math::

        R_{i \leftarrow j} = \frac{x_i (w_{ij} + \gamma w_{ij}^+)}
        {\mathrm{stab}\big(\sum_i x_i (w_{ij} + \gamma w_{ij}^+) + b_j + \gamma b_j^+\big)} R_j

    Meant for layers whose inputs are non-negative (after a ReLU). γ = 0 is LRP-0 (with the
    small stabiliser); γ → ∞ tends to z⁺.

    Parameters
    ----------
    gamma : float, default 0.25
        γ ≥ 0.
    epsilon : float, default 1e-6
        The stabiliser.

    Examples
    --------
    >>> Gamma(0.25).parts[0].terms[0].weight(np.array([-1.0, 2.0]))
    array([-1. ,  2.5])
    """

    formula = "R_{i←j} = x_i·(w_ij + γ·w_ij⁺) / stab(Σ_i x_i·(w_ij + γ·w_ij⁺) + b_j + γ·b_j⁺) · R_j"
    source = "Montavon et al. 2019, Layer-Wise Relevance Propagation: An Overview, eq. (10.4)"

    def __init__(self, gamma: float = 0.25, epsilon: float = DEFAULT_EPSILON) -> None:
        self.gamma = _check_number(type(self).__name__, "gamma", gamma)
        self.epsilon = _check_number(type(self).__name__, "epsilon", epsilon)
        g = self.gamma

        @declares(homogeneous=True)
        def rho(w: Array) -> Array:
            return w + g * positive(w)

        term = Term(identity, rho, "x·(w+γw⁺)")
        self.parts = (Part(1.0, (term,), rho, self.epsilon, "z"),)

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, **super().params}

    @property
    def name(self) -> str:
        return f"γ={self.gamma:g}"


_POSITIVE_TERMS = (Term(positive, positive, "x⁺·w⁺"), Term(negative, negative, "x⁻·w⁻"))
_NEGATIVE_TERMS = (Term(positive, negative, "x⁺·w⁻"), Term(negative, positive, "x⁻·w⁺"))


class AlphaBeta(Rule):
    r"""LRP-αβ (Bach et al. 2015, eq. 60, the β-rule): positive and negative parts apart.

    .. math::

        R_{i \leftarrow j} = \Big(\alpha \frac{z_{ij}^+}{\mathrm{stab}(z_j^+)}
                              - \beta \frac{z_{ij}^-}{\mathrm{stab}(z_j^-)}\Big) R_j,
        \qquad \alpha - \beta = 1

    with :math:`z_{ij}^+ = (x_i w_{ij})^+ = x_i^+ w_{ij}^+ + x_i^- w_{ij}^-`,
    :math:`z_j^+ = \sum_i z_{ij}^+ + b_j^+`, and the negative part likewise with
    :math:`b_j^-`. α − β = 1 keeps relevance conserved.

    Parameters
    ----------
    alpha : float, default 2
        α ≥ 1.
    beta : float, optional
        β ≥ 0; defaults to α − 1. Any other value raises :class:`~lrp_tutor.errors.RuleError`.
    epsilon : float, default 1e-6
        The stabiliser of both parts.

    Examples
    --------
    >>> AlphaBeta(2, 1)
    AlphaBeta(alpha=2.0, beta=1.0)
    >>> [p.coefficient for p in AlphaBeta(2, 1).parts]
    [2.0, -1.0]
    """

    formula = "R_{i←j} = (α·z_ij⁺ / stab(z_j⁺) − β·z_ij⁻ / stab(z_j⁻)) · R_j,  α − β = 1"
    source = "Bach et al. 2015, PLOS ONE, eq. (60)"

    def __init__(
        self, alpha: float = 2.0, beta: float | None = None, epsilon: float = DEFAULT_EPSILON
    ) -> None:
        name = type(self).__name__
        alpha = _check_number(name, "alpha", alpha, minimum=1.0)  # so that β = α − 1 ≥ 0
        beta = alpha - 1.0 if beta is None else _check_number(name, "beta", beta)
        if abs(alpha - beta - 1.0) > 1e-12:
            raise RuleError(
                f"{name}: alpha − beta must be 1 so that relevance is conserved, got "
                f"alpha={alpha:g}, beta={beta:g} (alpha − beta = {alpha - beta:g}). "
                f"Pass beta={alpha - 1:g}, or leave beta out."
            )
        self.alpha, self.beta = alpha, beta
        self.epsilon = _check_number(name, "epsilon", epsilon)
        self.parts = (
            Part(alpha, _POSITIVE_TERMS, positive, self.epsilon, "z⁺"),
            Part(-beta, _NEGATIVE_TERMS, negative, self.epsilon, "z⁻"),
        )
        if beta == 0:
            self.parts = self.parts[:1]

    @property
    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, **super().params}

    @property
    def name(self) -> str:
        return f"α{self.alpha:g}β{self.beta:g}"


class ZPlus(Rule):
    r"""LRP-z⁺ (Montavon et al. 2019, eq. 10.6 with signed inputs): only positive parts.

    .. math::

        R_{i \leftarrow j} = \frac{z_{ij}^+}{\mathrm{stab}(\sum_i z_{ij}^+ + b_j^+)} R_j,
        \qquad z_{ij}^+ = x_i^+ w_{ij}^+ + x_i^- w_{ij}^-

    The same as ``AlphaBeta(1, 0)``. On non-negative inputs :math:`z_{ij}^+ = x_i w_{ij}^+`.

    Examples
    --------
    >>> len(ZPlus().parts)
    1
    """

    formula = "R_{i←j} = z_ij⁺ / stab(Σ_i z_ij⁺ + b_j⁺) · R_j"
    source = "Montavon et al. 2019, Layer-Wise Relevance Propagation: An Overview, eq. (10.6)"

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        self.epsilon = _check_number(type(self).__name__, "epsilon", epsilon)
        self.parts = (Part(1.0, _POSITIVE_TERMS, positive, self.epsilon, "z⁺"),)

    @property
    def name(self) -> str:
        return "z⁺"


class WSquare(Rule):
    r"""LRP-w² (Montavon et al. 2017, Deep Taylor Decomposition): ignore the input.

    .. math::

        R_{i \leftarrow j} = \frac{w_{ij}^2}{\mathrm{stab}(\sum_i w_{ij}^2)} R_j

    For the first layer when inputs are unbounded; no bias.

    Examples
    --------
    >>> WSquare().parts[0].terms[0].weight(np.array([-2.0, 3.0]))
    array([4., 9.])
    """

    formula = "R_{i←j} = w_ij² / stab(Σ_i w_ij²) · R_j"
    source = "Montavon et al. 2017, Pattern Recognition 65, Deep Taylor Decomposition"

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        self.epsilon = _check_number(type(self).__name__, "epsilon", epsilon)
        term = Term(ones_like, _square, "1·w²")
        self.parts = (Part(1.0, (term,), zeros_like, self.epsilon, "z"),)

    @property
    def name(self) -> str:
        return "w²"


@declares()
def _square(w: Array) -> Array:
    return w * w


class Flat(Rule):
    r"""LRP-flat (Lapuschkin et al. 2019): spread relevance uniformly over the receptive field.

    .. math::

        R_{i \leftarrow j} = \frac{1}{\mathrm{stab}(\sum_i 1)} R_j

    i.e. weights and inputs all one, no bias. With zero padding, padded positions count 0.

    Examples
    --------
    >>> Flat().parts[0].terms[0].label
    '1·1'
    """

    formula = "R_{i←j} = 1 / stab(Σ_i 1) · R_j"
    source = "Lapuschkin et al. 2019, Nature Communications 10, Unmasking Clever Hans predictors"

    def __init__(self, epsilon: float = DEFAULT_EPSILON) -> None:
        self.epsilon = _check_number(type(self).__name__, "epsilon", epsilon)
        term = Term(ones_like, ones_like, "1·1")
        self.parts = (Part(1.0, (term,), zeros_like, self.epsilon, "z"),)

    @property
    def name(self) -> str:
        return "flat"


class ZBox(Rule):
    r"""LRP-z^B (Montavon et al. 2017): for pixel layers whose inputs lie in [low, high].

    .. math::

        R_{i \leftarrow j} = \frac{x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-}
        {\mathrm{stab}\big(\sum_i x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-\big)} R_j

    No bias enters (as in Zennit, where :math:`b - b^+ - b^-` cancels).

    Parameters
    ----------
    low, high : float or array
        The lowest and highest value each input can take, broadcastable to the input
        (e.g. per channel after normalisation). low < high everywhere.

    Examples
    --------
    >>> ZBox(low=0.0, high=1.0)
    ZBox(low=0.0, high=1.0)
    """

    formula = "R_{i←j} = (x_i·w_ij − l_i·w_ij⁺ − h_i·w_ij⁻) / stab(Σ_i …) · R_j"
    source = "Montavon et al. 2017, Pattern Recognition 65, Deep Taylor Decomposition"

    def __init__(self, low: Any, high: Any, epsilon: float = DEFAULT_EPSILON) -> None:
        name = type(self).__name__
        low_a, high_a = _as_bound(name, "low", low), _as_bound(name, "high", high)
        try:
            ordered = np.all(low_a < high_a)
        except ValueError as error:
            raise RuleError(
                f"{name}: low {low_a.shape} and high {high_a.shape} do not broadcast together."
            ) from error
        if not ordered:
            raise RuleError(
                f"{name}: low must be < high everywhere, got low={low!r}, high={high!r}. "
                "They are the smallest and largest value an input pixel can take."
            )
        self.low, self.high = low, high
        self.epsilon = _check_number(name, "epsilon", epsilon)
        low_f, high_f = _bound_value(low), _bound_value(high)

        @declares()
        def minus_low(x: Array) -> Array:
            return -constant_like(x, _fitting_bound(name, "low", low_f, x))

        @declares()
        def minus_high(x: Array) -> Array:
            return -constant_like(x, _fitting_bound(name, "high", high_f, x))

        terms = (
            Term(identity, identity, "x·w"),
            Term(minus_low, positive, "−l·w⁺"),
            Term(minus_high, negative, "−h·w⁻"),
        )
        self.parts = (Part(1.0, terms, zeros_like, self.epsilon, "z"),)

    @property
    def params(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, **super().params}

    @property
    def name(self) -> str:
        return "z^B"


def _as_bound(rule: str, name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(_bound_value(value), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise RuleError(f"{rule}: {name} must be a number or an array, got {value!r}.") from error
    if not np.all(np.isfinite(array)):
        raise RuleError(f"{rule}: {name} must be finite, got {value!r}.")
    return array


def _fitting_bound(rule: str, name: str, value: Any, x: Array) -> Any:
    """``value`` itself when it broadcasts to the shape of the layer's input ``x``; else a
    :class:`~lrp_tutor.errors.RuleError` that names both shapes (not blaming x)."""
    shape, target = np.shape(value), tuple(x.shape)
    try:
        fits = np.broadcast_shapes(shape, target) == target
    except ValueError:
        fits = False
    if not fits:
        raise RuleError(
            f"{rule}: {name} has shape {shape}, which does not fit the input of the layer it "
            f"is applied to, shape {target}. Give a number, or bounds that broadcast to that "
            "shape (per channel of an image batch (N, C, H, W): shape (C, 1, 1)); z^B belongs "
            "to the first layer (composite first=)."
        )
    return value


def _bound_value(value: Any) -> Any:
    """A float stays a float; a torch tensor becomes a numpy array (on the CPU)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


class Pass(Rule):
    r"""Pass the relevance through unchanged: :math:`R_i = R_i^{out}`.

    For layers whose output has the shape of their input and that should not redistribute:
    element-wise activations, normalisation. It has no parts.

    Examples
    --------
    >>> Pass().parts
    ()
    """

    formula = "R_i = R_i (unchanged)"
    source = "Montavon et al. 2019, Layer-Wise Relevance Propagation: An Overview, sec. 10.3"

    def __init__(self) -> None:
        self.parts = ()

    @property
    def name(self) -> str:
        return "pass"
