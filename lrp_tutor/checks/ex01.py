r"""Exercise 01: contributions and messages of a dense layer (LRP-0).

The layer computes :math:`z_j = \sum_i x_i w_{ij} + b_j` with ``W`` shaped (n_in, n_out),
i.e. ``z = x @ W + b``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..rules import LRP0
from . import reference as ref
from ._core import Case, as_array, call, checker, compare, ij, numbered

__all__ = ["ex01_contributions", "ex01_messages", "ex01_relevance_in"]

_NAMES_CONTRIB = ("x", "W")
_BROADCAST = (
    "x has shape (n_in,) and W (n_in, n_out). numpy lines up the LAST axes, so `x * W` pairs "
    "x with the outputs j. Make x a column first: x[:, None] * W multiplies row i of W by x_i, "
    "and w_ij = W[i, j]."
)
_NAMES_LAYER = ("x", "W", "b", "R_out")


def _random_layer(seed: int, n_in: int, n_out: int, positive: bool = False) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, n_in) if positive else rng.normal(size=n_in)
    W = rng.normal(size=(n_in, n_out))
    b = rng.normal(scale=0.5, size=n_out)
    R_out = rng.uniform(0.2, 1.5, n_out)
    return x, W, b, R_out


def _zero_neuron_layer() -> tuple:
    """A layer whose neuron j = 0 has z_0 = 0 exactly (its contributions cancel the bias)."""
    x = np.array([1.0, 2.0, -1.0, 0.5])
    W = np.array([[1.0, 0.5, -1.0], [0.5, 1.0, 2.0], [2.0, -0.5, 1.0], [-1.0, 1.0, 0.5]])
    b = np.array([0.5, -0.25, 1.0])  # z = [-0.5 + 0.5, 3.5 - 0.25, 2.25 + 1] = [0, 3.25, 3.25]
    R_out = np.array([1.0, 2.0, -0.5])
    return x, W, b, R_out


def _layer_cases() -> list[Case]:
    return numbered(
        [
            Case(
                "random 4×3 layer with bias, positive inputs",
                _random_layer(1, 4, 3, True),
                _NAMES_LAYER,
            ),
            Case("negative inputs, biases of both signs", _random_layer(2, 4, 3), _NAMES_LAYER),
            Case(
                "a neuron with z_j = 0 (it must send nothing)", _zero_neuron_layer(), _NAMES_LAYER
            ),
            Case("square 3×3 layer (catches a transposed W)", _random_layer(3, 3, 3), _NAMES_LAYER),
        ],
        held_out=[Case("a wide 6×5 layer", _random_layer(101, 6, 5), _NAMES_LAYER)],
    )


@checker("01.1", "contributions", "contributions(x, W)")
def ex01_contributions(contributions: Callable) -> str:
    r"""Check Task 01.1: :math:`z_{ij} = x_i w_{ij}`, shape (n_in, n_out).

    Examples
    --------
    >>> ex01_contributions(lambda x, W: x[:, None] * W).passed
    True
    >>> result = ex01_contributions(lambda x, W: x @ W)
    >>> result.passed, result.message.splitlines()[-1][:50]
    (False, 'Likely mistake: you computed z_j = Σ_i x_i·w_ij (x')
    """
    cases = numbered(
        [
            Case("random 4×3 layer", _random_layer(11, 4, 3, True)[:2], _NAMES_CONTRIB),
            Case("negative inputs", _random_layer(12, 4, 3)[:2], _NAMES_CONTRIB),
            Case(
                "square 3×3 layer (catches a transposed W)",
                _random_layer(13, 3, 3)[:2],
                _NAMES_CONTRIB,
            ),
            Case("one output neuron", _random_layer(14, 5, 1)[:2], _NAMES_CONTRIB),
        ],
        held_out=[Case("one input, 4 outputs", _random_layer(111, 1, 4)[:2], _NAMES_CONTRIB)],
    )
    for case in cases:
        x, W = case.args
        got = as_array(call(contributions, case, _BROADCAST), case, "z_ij")
        compare(
            got,
            x[:, None] * W,
            case,
            what="z_ij",
            label=ij("z_{i}{j}"),
            shape_hint=" = (n_in, n_out)",
            variants=[
                (
                    "you computed z_j = Σ_i x_i·w_ij (x @ W), the neuron's input. z_ij keeps "
                    "the individual products, one per input i and output j.",
                    lambda x=x, W=W: x @ W,
                ),
                (
                    "you multiplied w_ij by x_j instead of x_i: `x * W` broadcasts x along the "
                    "last axis (j). Use x[:, None] * W, so that row i of W is multiplied by x_i.",
                    lambda x=x, W=W: x[None, :] * W,
                ),
                (
                    "you returned z transposed, shaped (n_out, n_in). Index it as z[i, j] with "
                    "i the input and j the output, like W.",
                    lambda x=x, W=W: (x[:, None] * W).T,
                ),
            ],
            hint="Check the formula: z[i, j] = x[i] * W[i, j] for every input i and output j.",
        )
    return (
        f"All {len(cases)} cases agree: z_ij = x_i·w_ij. Summing over the inputs i gives the "
        "neuron's input, Σ_i z_ij + b_j = z_j (x @ W + b)."
    )


_NONFINITE_LRP0 = (
    "A neuron with z_j = 0 sends no messages (0/0 := 0, and also z_ij/0 := 0). Divide only "
    "where z_j ≠ 0, e.g. np.divide(z_ij, z_j, out=np.zeros_like(z_ij), where=z_j != 0)."
)


def _message_variants(x: np.ndarray, W: np.ndarray, b: np.ndarray, R: np.ndarray) -> list:
    def lrp0(z_ij: np.ndarray, z_j: np.ndarray, R_j: np.ndarray) -> np.ndarray:
        return np.where(z_j == 0, 0.0, z_ij / np.where(z_j == 0, 1.0, z_j) * R_j)

    z_ij = x[:, None] * W
    return [
        (
            "you left the bias out of z_j. The denominator is the neuron's full input, "
            "z_j = Σ_i z_ij + b_j; the bias keeps its share of R_j.",
            lambda: lrp0(z_ij, z_ij.sum(axis=0), R),
        ),
        (
            "you did not multiply by R_j: the messages split the relevance R_j of neuron j "
            "in the proportions z_ij / z_j.",
            lambda: lrp0(z_ij, z_ij.sum(axis=0) + b, 1.0),
        ),
        (
            "you divided by a sum over the outputs j (axis 1). z_j sums over the inputs i "
            "(axis 0): z_j = Σ_i z_ij + b_j.",
            lambda: lrp0(z_ij, z_ij.sum(axis=1, keepdims=True) + b, R),
        ),
        (
            "you used w_ji = W[j, i]. W has shape (n_in, n_out): the weight from input i to "
            "output j is W[i, j].",
            lambda: lrp0(x[:, None] * W.T, (x[:, None] * W.T).sum(axis=0) + b, R),
        ),
        (
            "your contributions use x_j instead of x_i (`x * W` broadcasts x along j); "
            "see Task 01.1.",
            lambda: lrp0(x[None, :] * W, (x[None, :] * W).sum(axis=0) + b, R),
        ),
        (
            "you returned the messages transposed, shaped (n_out, n_in); index them as "
            "R[i, j] = R_{i←j}, like W.",
            lambda: ref.dense_messages(x, W, b, R, LRP0()).T,
        ),
    ]


@checker("01.2", "messages", "messages(x, W, b, R_out)")
def ex01_messages(messages: Callable) -> str:
    r"""Check Task 01.2: :math:`R_{i \leftarrow j} = z_{ij} / z_j \cdot R_j` (LRP-0, 0/0 := 0).

    Examples
    --------
    >>> def messages(x, W, b, R_out):
    ...     z_ij = x[:, None] * W
    ...     z_j = z_ij.sum(axis=0) + b
    ...     return np.divide(z_ij, z_j, out=np.zeros_like(z_ij), where=z_j != 0) * R_out
    >>> ex01_messages(messages).passed
    True
    """
    cases = _layer_cases()
    for case in cases:
        x, W, b, R_out = case.args
        got = as_array(call(messages, case, _BROADCAST), case, "the messages R_{i←j}")
        compare(
            got,
            ref.dense_messages(x, W, b, R_out, LRP0()),
            case,
            what="the messages R_{i←j}",
            label=ij("R_{{{i}←{j}}}"),
            shape_hint=" = (n_in, n_out)",
            variants=_message_variants(x, W, b, R_out),
            nonfinite=_NONFINITE_LRP0,
            hint="Check the formula R_{i←j} = z_ij / z_j · R_j with z_j = Σ_i z_ij + b_j.",
        )
    x, W, b, R_out = cases[0].args
    sent = ref.dense_messages(x, W, b, R_out, LRP0()).sum(axis=0)
    return (
        f"All {len(cases)} cases agree with LRP-0. Each neuron passes on "
        f"Σ_i R_{{i←j}} = R_j·(z_j − b_j)/z_j; in case 1 neuron 0 passes on {sent[0]:.4f} of "
        f"R_0 = {R_out[0]:.4f}, and its bias keeps the rest."
    )


@checker("01.3", "relevance_in", "relevance_in(x, W, b, R_out)")
def ex01_relevance_in(relevance_in: Callable) -> str:
    r"""Check Task 01.3: :math:`R_i = \sum_j R_{i \leftarrow j}`, shape (n_in,).

    Examples
    --------
    >>> def relevance_in(x, W, b, R_out):
    ...     z_ij = x[:, None] * W
    ...     z_j = z_ij.sum(axis=0) + b
    ...     s = np.divide(R_out, z_j, out=np.zeros_like(z_j), where=z_j != 0)
    ...     return (z_ij * s).sum(axis=1)
    >>> ex01_relevance_in(relevance_in).passed
    True
    """
    cases = _layer_cases()
    for case in cases:
        x, W, b, R_out = case.args
        expected = ref.dense_messages(x, W, b, R_out, LRP0())
        variants = [
            (
                "you summed over the inputs i (axis 0). R_i collects the messages input i "
                "receives from every output neuron j: sum over axis 1.",
                lambda m=expected: m.sum(axis=0),
            ),
            (
                "you returned the total Σ_i Σ_j R_{i←j}; R_i keeps one value per input i "
                "(sum over axis 1 only).",
                lambda m=expected: m.sum(),
            ),
            (
                "you averaged the messages; R_i is their sum, R_i = Σ_j R_{i←j}.",
                lambda m=expected: m.mean(axis=1),
            ),
        ]
        variants += [
            (f"{diagnosis} (See Task 01.2: your messages are not right yet.)", _summed(compute))
            for diagnosis, compute in _message_variants(x, W, b, R_out)[:-1]
        ]
        got = as_array(call(relevance_in, case, _BROADCAST), case, "R_i")
        compare(
            got,
            expected.sum(axis=1),
            case,
            what="R_i",
            label=lambda index: f"input i={index[0]}",
            shape_hint=" = (n_in,)",
            variants=variants,
            nonfinite=_NONFINITE_LRP0,
            hint="R_i = Σ_j R_{i←j}: add up, for each input i, the messages of all outputs j.",
        )
    x, W, b, R_out = cases[0].args
    R_in = ref.dense_messages(x, W, b, R_out, LRP0()).sum(axis=1)
    bias, _ = ref.dense_absorbed(x, W, b, R_out, LRP0())
    return (
        f"All {len(cases)} cases agree. Conservation in case 1: Σ_i R_i = {R_in.sum():.4f}, "
        f"Σ_j R_j = {R_out.sum():.4f}; the biases absorbed {bias:.4f} "
        f"(Σ_j b_j/z_j·R_j), and {R_in.sum():.4f} {'+' if bias >= 0 else '−'} {abs(bias):.4f} "
        f"= {R_out.sum():.4f}."
    )


def _summed(compute: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    return lambda: compute().sum(axis=1)
