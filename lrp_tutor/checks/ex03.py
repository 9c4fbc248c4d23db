r"""Exercise 03: the αβ-rule.

.. math::

    R_{i \leftarrow j} = \Big(\alpha \frac{z_{ij}^+}{\mathrm{stab}(z_j^+)}
                          - \beta \frac{z_{ij}^-}{\mathrm{stab}(z_j^-)}\Big) R_j,
    \qquad \alpha - \beta = 1,

with :math:`z_{ij}^+ = x_i^+ w_{ij}^+ + x_i^- w_{ij}^-`,
:math:`z_j^+ = \sum_i z_{ij}^+ + b_j^+`, and likewise the negative part with :math:`b_j^-`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..rules import AlphaBeta
from . import reference as ref
from ._core import (
    Case,
    Failure,
    _NotImplementedYet,
    as_array,
    as_pair,
    call,
    checker,
    compare,
    ij,
    numbered,
)

__all__ = ["ex03_split", "ex03_alphabeta"]

_SHAPES = (
    "x has shape (n_in,) and W (n_in, n_out): make x a column, x[:, None], so that row i of W "
    "meets x_i."
)


def _pos(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def _neg(a: np.ndarray) -> np.ndarray:
    return np.minimum(a, 0.0)


def _layer(seed: int, n_in: int, n_out: int, nonnegative: bool) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 2.0, n_in) if nonnegative else rng.normal(size=n_in)
    if nonnegative:
        x[1] = 0.0
    W = rng.normal(size=(n_in, n_out))
    b = np.array([0.4, -0.3, 0.2, -0.1, 0.5][:n_out])
    R_out = rng.uniform(0.2, 1.5, n_out)
    return x, W, b, R_out


@checker("03.1", "split_contributions", "split_contributions(x, W)")
def ex03_split(split_contributions: Callable) -> str:
    r"""Check Task 03.1: :math:`(z^+_{ij}, z^-_{ij})` with :math:`z^\pm_{ij} = (x_i w_{ij})^\pm`.

    Examples
    --------
    >>> def split(x, W):
    ...     z = x[:, None] * W
    ...     return np.maximum(z, 0), np.minimum(z, 0)
    >>> ex03_split(split).passed
    True
    """
    names = ("x", "W")
    cases = numbered(
        [
            Case("non-negative inputs (after a ReLU)", _layer(31, 4, 3, True)[:2], names),
            Case("signed inputs (e.g. normalised pixels)", _layer(32, 4, 3, False)[:2], names),
            Case(
                "zeros in x and W",
                (np.array([0.0, -1.5, 2.0]), np.array([[0.5, -1.0], [0.0, 2.0], [-0.5, 0.0]])),
                names,
            ),
        ],
        held_out=[Case("signed inputs, a 6×2 layer", _layer(131, 6, 2, False)[:2], names)],
    )
    for case in cases:
        x, W = case.args
        z = x[:, None] * W
        plus, minus = _pos(z), _neg(z)
        got_plus, got_minus = as_pair(
            call(split_contributions, case, _SHAPES), case, "(z_plus, z_minus)"
        )
        got_plus = as_array(got_plus, case, "z⁺_ij, shape (n_in, n_out)")
        got_minus = as_array(got_minus, case, "z⁻_ij, shape (n_in, n_out)")
        if (
            got_plus.shape == minus.shape
            and np.allclose(got_plus, minus)
            and np.allclose(got_minus, plus)
            and not np.allclose(plus, minus)
        ):
            raise Failure(f"{case.header()}\nYou returned (z⁻, z⁺); return (z⁺, z⁻).")
        compare(
            got_plus,
            plus,
            case,
            what="z⁺_ij",
            label=ij("z⁺_{i}{j}"),
            shape_hint=" = (n_in, n_out)",
            variants=[
                (
                    "with a negative input x_i < 0, a negative weight w_ij < 0 gives a positive "
                    "contribution. z⁺_ij = (x_i·w_ij)⁺ = x⁺·w⁺ + x⁻·w⁻, not x_i·w_ij⁺.",
                    lambda x=x, W=W: x[:, None] * _pos(W),
                ),
                (
                    "you forgot the term x⁻·w⁻: two negatives make a positive contribution, "
                    "z⁺_ij = x⁺·w⁺ + x⁻·w⁻.",
                    lambda x=x, W=W: _pos(x)[:, None] * _pos(W),
                ),
                (
                    "you returned z_ij itself; z⁺_ij keeps only the positive contributions, "
                    "max(x_i·w_ij, 0).",
                    lambda z=z: z,
                ),
            ],
            hint="z⁺_ij = max(x_i·w_ij, 0) = x⁺·w⁺ + x⁻·w⁻.",
        )
        compare(
            got_minus,
            minus,
            case,
            what="z⁻_ij",
            label=ij("z⁻_{i}{j}"),
            shape_hint=" = (n_in, n_out)",
            variants=[
                (
                    "z⁻_ij is the negative part itself, ≤ 0: min(x_i·w_ij, 0), not its magnitude.",
                    lambda minus=minus: -minus,
                ),
                (
                    "with a negative input x_i < 0, a positive weight gives a negative "
                    "contribution: z⁻_ij = x⁺·w⁻ + x⁻·w⁺, not x_i·w_ij⁻.",
                    lambda x=x, W=W: x[:, None] * _neg(W),
                ),
                (
                    "you forgot the term x⁻·w⁺: z⁻_ij = x⁺·w⁻ + x⁻·w⁺.",
                    lambda x=x, W=W: _pos(x)[:, None] * _neg(W),
                ),
            ],
            hint="z⁻_ij = min(x_i·w_ij, 0) = x⁺·w⁻ + x⁻·w⁺.",
        )
    return (
        f"All {len(cases)} cases agree: z⁺_ij + z⁻_ij = z_ij, with z⁺ = x⁺w⁺ + x⁻w⁻ ≥ 0 and "
        "z⁻ = x⁺w⁻ + x⁻w⁺ ≤ 0. On non-negative inputs (after a ReLU) z⁺_ij = x_i·w_ij⁺."
    )


def _alphabeta(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    R: np.ndarray,
    alpha: float,
    beta: float,
    eps: float,
    *,
    bias: str = "split",
    positive_w_only: bool = False,
    minus: bool = True,
    stabilise: bool = True,
) -> np.ndarray:
    """The αβ-rule with switches for typical mistakes."""
    z = x[:, None] * W
    if positive_w_only:
        plus, negative = x[:, None] * _pos(W), x[:, None] * _neg(W)
    else:
        plus, negative = _pos(z), _neg(z)
    b_plus, b_minus = {"split": (_pos(b), _neg(b)), "plain": (b, b), "none": (0.0, 0.0)}[bias]
    out = np.zeros(len(x))
    for coefficient, z_ij, b_j in (
        (alpha, plus, b_plus),
        (-beta if minus else beta, negative, b_minus),
    ):
        z_j = z_ij.sum(axis=0) + b_j
        d = z_j + eps * np.where(z_j >= 0, 1.0, -1.0) if stabilise else z_j
        out += coefficient * (z_ij / d * R).sum(axis=1)
    return out


@checker("03.2", "lrp_alphabeta", "lrp_alphabeta(x, W, b, R_out, alpha, beta, eps)")
def ex03_alphabeta(lrp_alphabeta: Callable) -> str:
    r"""Check Task 03.2: the αβ-rule for one sample, and that α − β ≠ 1 raises ValueError.

    Examples
    --------
    >>> def lrp_alphabeta(x, W, b, R_out, alpha=2.0, beta=1.0, eps=1e-6):
    ...     if abs(alpha - beta - 1) > 1e-12:
    ...         raise ValueError("alpha - beta must be 1")
    ...     z = x[:, None] * W
    ...     R_in = 0
    ...     for c, z_ij, b_j in ((alpha, np.maximum(z, 0), np.maximum(b, 0)),
    ...                          (-beta, np.minimum(z, 0), np.minimum(b, 0))):
    ...         z_j = z_ij.sum(axis=0) + b_j
    ...         R_in = R_in + c * (z_ij / (z_j + eps * np.where(z_j >= 0, 1, -1)) * R_out).sum(1)
    ...     return R_in
    >>> ex03_alphabeta(lrp_alphabeta).passed
    True
    """
    names = ("x", "W", "b", "R_out", "alpha", "beta", "eps")
    x5 = np.array([1.0, 0.5, 2.0, 0.0])
    W5 = np.array([[0.5, -1.0, 0.3], [1.0, 0.4, -0.2], [0.25, -0.5, 0.6], [0.7, 0.1, -0.9]])
    no_negative = (x5, W5, np.array([0.2, -0.1, 0.3]), np.array([1.0, 0.5, 2.0]))
    cases = numbered(
        [
            Case(
                "α = 2, β = 1, non-negative inputs, biases of both signs",
                (*_layer(33, 4, 3, True), 2.0, 1.0, 1e-6),
                names,
            ),
            Case("α = 2, β = 1, signed inputs", (*_layer(34, 5, 3, False), 2.0, 1.0, 0.01), names),
            Case("α = 1, β = 0 (z⁺ only)", (*_layer(35, 4, 3, False), 1.0, 0.0, 1e-6), names),
            Case("α = 3, β = 2", (*_layer(36, 4, 2, False), 3.0, 2.0, 1e-6), names),
            Case(
                "neuron j = 0 has no negative contribution (z⁻_0 = 0)",
                (*no_negative, 2.0, 1.0, 1e-6),
                names,
            ),
            Case(
                "α = 2, β = 2 does not conserve relevance: expect ValueError",
                (*_layer(37, 3, 2, False), 2.0, 2.0, 1e-6),
                names,
            ),
        ],
        held_out=[Case("α = 1.5, β = 0.5", (*_layer(132, 5, 4, False), 1.5, 0.5, 0.05), names)],
    )
    refused = cases.pop(5)  # α − β ≠ 1, checked last
    for case in cases:
        x, W, b, R, alpha, beta, eps = case.args
        args = (x, W, b, R, alpha, beta, eps)
        variants = [
            (
                "the bias enters the positive denominator as b⁺ = max(b_j, 0) and the negative "
                "one as b⁻ = min(b_j, 0); you used b_j in both.",
                lambda args=args: _alphabeta(*args, bias="plain"),
            ),
            (
                "you left out the bias: z⁺_j = Σ_i z⁺_ij + b⁺_j and z⁻_j = Σ_i z⁻_ij + b⁻_j.",
                lambda args=args: _alphabeta(*args, bias="none"),
            ),
            (
                "you swapped α and β: the positive part gets α, the negative part β.",
                lambda x=x, W=W, b=b, R=R, alpha=alpha, beta=beta, eps=eps: _alphabeta(
                    x, W, b, R, beta, alpha, eps
                ),
            ),
            (
                "the negative part is subtracted: (α·z⁺_ij/stab(z⁺_j) − β·z⁻_ij/stab(z⁻_j))·R_j; "
                "you added it.",
                lambda args=args: _alphabeta(*args, minus=False),
            ),
            (
                "you used β = α − 1 = 1 (or a fixed β) instead of the argument beta.",
                lambda x=x, W=W, b=b, R=R, alpha=alpha, eps=eps: _alphabeta(
                    x, W, b, R, alpha, 1.0, eps
                ),
            ),
            (
                "your z⁺ and z⁻ use x·w⁺ and x·w⁻, which is wrong for negative inputs (see "
                "Task 03.1).",
                lambda args=args: _alphabeta(*args, positive_w_only=True),
            ),
            (
                "you left out the stabiliser: divide by stab(z⁺_j) and stab(z⁻_j), with "
                "stab(z) = z + ε·sign(z) and sign(0) = +1.",
                lambda args=args: _alphabeta(*args, stabilise=False),
            ),
        ]
        got = as_array(call(lrp_alphabeta, case, _SHAPES), case, "R_in, shape (n_in,)")
        compare(
            got,
            ref.dense_messages(x, W, b, R, AlphaBeta(alpha, beta, eps)).sum(axis=1),
            case,
            what="R_in",
            label=lambda index: f"input i={index[0]}",
            shape_hint=" = (n_in,)",
            variants=variants,
            nonfinite=(
                "A neuron without negative contributions has z⁻_j = 0 (and all z⁻_ij = 0): "
                "divide by stab(z⁻_j) = z⁻_j + ε·sign(z⁻_j) with sign(0) = +1, which is ε there, "
                "so its negative messages are 0/ε = 0."
            ),
            hint="Compute both parts apart, each with its own denominator, then "
            "R_i = Σ_j (α·z⁺_ij/stab(z⁺_j) − β·z⁻_ij/stab(z⁻_j))·R_j.",
        )
    _check_raises(lrp_alphabeta, refused)
    return (
        f"All {len(cases) + 1} cases agree with AlphaBeta(α, β) of the rule book, and α − β ≠ 1 "
        "is refused. Without biases each neuron passes on (α − β)·R_j = R_j; α = 2, β = 1 "
        "lets negative evidence show as negative relevance."
    )


def _check_raises(lrp_alphabeta: Callable, case: Case) -> None:
    try:
        with np.errstate(all="ignore"):
            lrp_alphabeta(*case.args)
    except ValueError:
        return
    except NotImplementedError as error:
        raise _NotImplementedYet(str(error)) from None
    except Exception as error:
        raise Failure(
            f"{case.header()}\nYour function raised {type(error).__name__}: {error}. Raise a "
            "ValueError when α − β ≠ 1."
        ) from None
    raise Failure(
        f"{case.header()}\nWith α − β = 0 ≠ 1 a neuron would pass on (α − β)·R_j instead of R_j, "
        "so relevance is not conserved. Your function returned a result; raise ValueError "
        "instead, e.g. `if abs(alpha - beta - 1) > 1e-12: raise ValueError(...)`."
    )
