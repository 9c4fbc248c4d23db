r"""Exercise 02: the ε-rule with its sign convention, for a batch.

.. math::

    \mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z),\quad \mathrm{sign}(0) = +1,
    \qquad R_{i \leftarrow j} = \frac{z_{ij}}{\mathrm{stab}(z_j)} R_j ,\quad 0/0 := 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..rules import Epsilon
from . import reference as ref
from ._core import Case, Failure, as_array, as_pair, call, checker, compare, entry, numbered

__all__ = ["ex02_stabilize", "ex02_lrp_epsilon", "ex02_absorbed"]

_NAMES = ("x", "W", "b", "R_out", "eps")
_BROADCAST = (
    "x has shape (N, n_in), a batch of N samples. The four steps work on the whole batch: "
    "z = x @ W + b (N, n_out), s = R_out / stab(z), c = s @ W.T (N, n_in), R_in = x * c."
)


def _sign(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1.0, -1.0)


_EPS_TIMES_Z = (
    "you multiplied ε by z instead of by sign(z): z + ε·z only scales z by (1 + ε), so a "
    "z_j near 0 stays near 0 (and z_j = 0 stays 0). The stabiliser moves z a fixed step ε "
    "away from 0: stab(z) = z + ε·sign(z), with sign(z) = np.where(z >= 0, 1.0, -1.0)."
)
"""The diagnosis of stab(z) = z + ε·z, in every task of exercise 02."""


@checker("02.1", "stabilize", "stabilize(z, eps)")
def ex02_stabilize(stabilize: Callable) -> str:
    r"""Check Task 02.1: :math:`\mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z)`, sign(0) = +1.

    Examples
    --------
    >>> ex02_stabilize(lambda z, eps: z + eps * np.where(z >= 0, 1.0, -1.0)).passed
    True
    >>> print(ex02_stabilize(lambda z, eps: z + eps * np.sign(z)).message.splitlines()[1])
    At index 0: expected 0.25, got 0 (2 of 4 entries differ).
    """
    cases = numbered(
        [
            Case("z with exact zeros", (np.array([0.0, -1.0, 0.0, 2.0]), 0.25), ("z", "eps")),
            Case("positive and negative z", (np.array([-2.0, -0.5, 0.3, 4.0]), 0.1), ("z", "eps")),
            Case("ε = 0 leaves z unchanged", (np.array([-1.0, 0.0, 3.0]), 0.0), ("z", "eps")),
            Case(
                "a batch, shape (2, 3)",
                (np.array([[0.5, 0.0, -0.01], [-3.0, 0.0, 1e-3]]), 0.01),
                ("z", "eps"),
            ),
        ],
        held_out=[
            Case(
                "a column of z, shape (4, 1), ε = 1",
                (np.array([[0.0], [-0.25], [2.0], [-7.5]]), 1.0),
                ("z", "eps"),
            )
        ],
    )
    for case in cases:
        z, eps = case.args
        got = as_array(call(stabilize, case), case, "stab(z), an array shaped like z")
        compare(
            got,
            z + eps * _sign(z),
            case,
            what="stab(z)",
            label=lambda index: "index " + ", ".join(map(str, index)),
            shape_hint=" (the shape of z)",
            variants=[
                (
                    "np.sign(0) is 0, so your stab(0) = 0 and a neuron with z_j = 0 would "
                    "divide by zero. The convention is sign(0) = +1: use "
                    "np.where(z >= 0, 1.0, -1.0).",
                    lambda z=z, eps=eps: z + eps * np.sign(z),
                ),
                (_EPS_TIMES_Z, lambda z=z, eps=eps: z + eps * z),
                (
                    "you used sign(0) = −1 (z > 0 instead of z >= 0). The convention is "
                    "sign(0) = +1: stab(0) = +ε.",
                    lambda z=z, eps=eps: z + eps * np.where(z > 0, 1.0, -1.0),
                ),
                (
                    "you added ε without the sign. For z < 0, z + ε moves the denominator "
                    "towards 0 and inflates the messages; z + ε·sign(z) moves z away from 0.",
                    lambda z=z, eps=eps: z + eps,
                ),
                (
                    "wrong sign: z − ε·sign(z) moves z towards 0 (and can make it 0). The "
                    "stabiliser pushes z away from 0: z + ε·sign(z).",
                    lambda z=z, eps=eps: z - eps * _sign(z),
                ),
                (
                    "you returned ε·sign(z) alone; add it to z: stab(z) = z + ε·sign(z).",
                    lambda z=z, eps=eps: eps * _sign(z),
                ),
            ],
            hint="stab(z) = z + ε·sign(z), element by element, with sign(0) = +1.",
        )
    return (
        f"All {len(cases)} cases agree: stab(z) = z + ε·sign(z) with sign(0) = +1, so "
        "|stab(z)| ≥ ε and stab(z) has the sign of z: for ε > 0 no neuron divides by 0."
    )


def _zero_neuron_batch() -> tuple:
    """One sample whose neuron j = 0 has z_0 = 0 exactly."""
    x = np.array([[1.0, 2.0, -1.0, 0.5]])
    W = np.array([[1.0, 0.5, -1.0], [0.5, 1.0, 2.0], [2.0, -0.5, 1.0], [-1.0, 1.0, 0.5]])
    b = np.array([0.5, -0.25, 1.0])
    R_out = np.array([[1.0, 2.0, -0.5]])
    return x, W, b, R_out


def _random_batch(seed: int, n: int, n_in: int, n_out: int, eps: float) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    W = rng.normal(size=(n_in, n_out))
    b = rng.normal(scale=0.5, size=n_out)
    R_out = rng.uniform(0.2, 1.5, (n, n_out))
    return x, W, b, R_out, eps


def _batch_cases() -> list[Case]:
    return numbered(
        [
            Case("one sample (N = 1), ε = 0.1", _random_batch(21, 1, 4, 3, 0.1), _NAMES),
            Case("a batch of 3 samples, ε = 0.01", _random_batch(22, 3, 4, 3, 0.01), _NAMES),
            Case("ε = 0.5 and a neuron with z_j = 0 exactly", (*_zero_neuron_batch(), 0.5), _NAMES),
            Case(
                "ε = 0 (LRP-0) and a neuron with z_j = 0: it sends nothing",
                (*_zero_neuron_batch(), 0.0),
                _NAMES,
            ),
            Case(
                "square layer, a batch of 2 (catches W vs. W.T)",
                _random_batch(23, 2, 3, 3, 0.05),
                _NAMES,
            ),
        ],
        held_out=[
            Case("a batch of 4, a 6×2 layer, ε = 0.2", _random_batch(201, 4, 6, 2, 0.2), _NAMES)
        ],
    )


def _epsilon_reference(
    x: np.ndarray, W: np.ndarray, b: np.ndarray, R: np.ndarray, eps: float
) -> np.ndarray:
    rule = Epsilon(eps)
    return np.stack([ref.dense_messages(x[n], W, b, R[n], rule).sum(axis=1) for n in range(len(x))])


def _four_steps(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    R: np.ndarray,
    denominator: Callable[[np.ndarray], np.ndarray],
    *,
    transpose: bool = True,
    times_x: bool = True,
    batch_sum: bool = False,
) -> np.ndarray:
    """The four steps, with switches for typical mistakes."""
    z = x @ W + b
    d = denominator(z)
    s = np.where(d == 0, 0.0, R / np.where(d == 0, 1.0, d))
    if batch_sum:
        s = s.sum(axis=0, keepdims=True)
    c = s @ (W.T if transpose else W)
    return x * c if times_x else c


def _nonfinite(eps: float) -> str:
    if eps > 0:
        return (
            "With ε > 0, stab(z_j) is never 0 — unless sign(0) = 0: did you use np.sign? "
            "The convention is sign(0) = +1 (Task 02.1)."
        )
    return (
        "With ε = 0 a neuron with z_j = 0 sends no messages (0/0 := 0): set s_j = 0 where "
        "stab(z_j) = 0, e.g. np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)."
    )


@checker("02.2", "lrp_epsilon", "lrp_epsilon(x, W, b, R_out, eps)")
def ex02_lrp_epsilon(lrp_epsilon: Callable) -> str:
    r"""Check Task 02.2: the ε-rule for a batch, :math:`R_i = \sum_j z_{ij}/\mathrm{stab}(z_j) R_j`.

    Examples
    --------
    >>> def lrp_epsilon(x, W, b, R_out, eps):
    ...     z = x @ W + b
    ...     d = z + eps * np.where(z >= 0, 1.0, -1.0)
    ...     s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    ...     return x * (s @ W.T)
    >>> ex02_lrp_epsilon(lrp_epsilon).passed
    True
    """
    cases = _batch_cases()
    for case in cases:
        x, W, b, R, eps = case.args

        def stab(z: np.ndarray, eps: float = eps) -> np.ndarray:
            return z + eps * _sign(z)

        variants = [
            (
                "you left the bias out: z_j = Σ_i x_i·w_ij + b_j (z = x @ W + b).",
                lambda x=x, W=W, R=R, stab=stab: _four_steps(x, W, 0.0, R, stab),
            ),
            (
                "you multiplied s by W instead of W.T. With W shaped (n_in, n_out), "
                "c_i = Σ_j w_ij·s_j is s @ W.T.",
                lambda x=x, W=W, b=b, R=R, stab=stab: _four_steps(
                    x, W, b, R, stab, transpose=False
                ),
            ),
            (
                "you returned c; the last step multiplies by the input: R_in = x * c.",
                lambda x=x, W=W, b=b, R=R, stab=stab: _four_steps(x, W, b, R, stab, times_x=False),
            ),
            (
                f"{_EPS_TIMES_Z} (Task 02.1)",
                lambda x=x, W=W, b=b, R=R, eps=eps: _four_steps(x, W, b, R, lambda z: z + eps * z),
            ),
            (
                "you added ε without its sign: stab(z) = z + ε·sign(z) (Task 02.1).",
                lambda x=x, W=W, b=b, R=R, eps=eps: _four_steps(x, W, b, R, lambda z: z + eps),
            ),
            (
                "you used sign(0) = −1; the convention is sign(0) = +1 (Task 02.1).",
                lambda x=x, W=W, b=b, R=R, eps=eps: _four_steps(
                    x, W, b, R, lambda z: z + eps * np.where(z > 0, 1.0, -1.0)
                ),
            ),
            (
                "you left out the stabiliser: the denominator is stab(z_j) = z_j + ε·sign(z_j), "
                "not z_j.",
                lambda x=x, W=W, b=b, R=R: _four_steps(x, W, b, R, lambda z: z),
            ),
            (
                "you summed over the batch: every sample n has its own z, s and R.",
                lambda x=x, W=W, b=b, R=R, stab=stab: _four_steps(x, W, b, R, stab, batch_sum=True),
            ),
        ]
        got = as_array(call(lrp_epsilon, case, _BROADCAST), case, "R_in, shape (N, n_in)")
        compare(
            got,
            _epsilon_reference(x, W, b, R, eps),
            case,
            what="R_in",
            label=entry("sample n", "input i"),
            shape_hint=" = (N, n_in)",
            variants=variants,
            nonfinite=_nonfinite(eps),
            hint="Check the four steps: z = x @ W + b; s = R_out / stab(z); c = s @ W.T; "
            "R_in = x * c.",
        )
    x, W, b, R, eps = cases[1].args
    R_in = _epsilon_reference(x, W, b, R, eps)
    return (
        f"All {len(cases)} cases agree with the ε-rule of the rule book. In case 2 (ε = {eps}) "
        f"sample 0 receives Σ_j R_j = {R[0].sum():.4f} and passes on Σ_i R_i = "
        f"{R_in[0].sum():.4f}: the bias and ε absorbed the difference (Task 02.3)."
    )


@checker("02.3", "absorbed", "absorbed(x, W, b, R_out, eps)")
def ex02_absorbed(absorbed: Callable) -> str:
    r"""Check Task 02.3: what the bias and the stabiliser absorb, per sample.

    .. math::

        \text{bias}_n = \sum_j \frac{b_j}{\mathrm{stab}(z_j)} R_j ,\qquad
        \text{stabiliser}_n = \sum_j \frac{\varepsilon\,\mathrm{sign}(z_j)}{\mathrm{stab}(z_j)} R_j
        + \sum_{j:\ \mathrm{stab}(z_j) = 0} R_j

    Examples
    --------
    >>> def absorbed(x, W, b, R_out, eps):
    ...     z = x @ W + b
    ...     d = z + eps * np.where(z >= 0, 1.0, -1.0)
    ...     s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    ...     bias = (b * s).sum(axis=1)
    ...     return bias, R_out.sum(axis=1) - (x * (s @ W.T)).sum(axis=1) - bias
    >>> ex02_absorbed(absorbed).passed
    True
    """
    cases = numbered(
        _batch_cases()[:4],
        held_out=[
            Case("a batch of 5, a 3×4 layer, ε = 0.3", _random_batch(202, 5, 3, 4, 0.3), _NAMES)
        ],
    )
    for case in cases:
        x, W, b, R, eps = case.args
        rule = Epsilon(eps)
        shares = np.array([ref.dense_absorbed(x[n], W, b, R[n], rule) for n in range(len(x))])
        bias_expected, stab_expected = shares[:, 0], shares[:, 1]
        z = x @ W + b
        d = z + eps * _sign(z)
        s = np.where(d == 0, 0.0, R / np.where(d == 0, 1.0, d))
        d_times_z = z + eps * z  # the ε·z mistake
        s_times_z = np.where(d_times_z == 0, 0.0, R / np.where(d_times_z == 0, 1.0, d_times_z))
        out = call(absorbed, case, _BROADCAST)
        bias_got, stab_got = as_pair(out, case, "(bias share, stabiliser share)")
        bias_got = as_array(bias_got, case, "the bias share, shape (N,)")
        stab_got = as_array(stab_got, case, "the stabiliser share, shape (N,)")
        if (
            bias_got.shape == stab_got.shape == bias_expected.shape
            and np.allclose(bias_got, stab_expected)
            and np.allclose(stab_got, bias_expected)
            and not np.allclose(bias_got, bias_expected)
        ):
            raise Failure(
                f"{case.header()}\nYou returned (stabiliser share, bias share); return "
                "(bias share, stabiliser share)."
            )
        label = entry("sample n")
        compare(
            bias_got,
            bias_expected,
            case,
            what="the bias share Σ_j b_j/stab(z_j)·R_j",
            label=label,
            shape_hint=" = (N,), one number per sample",
            variants=[
                (
                    "you returned one share per neuron j; add them up per sample: "
                    "Σ_j b_j/stab(z_j)·R_j.",
                    lambda b=b, s=s: b * s,
                ),
                (_EPS_TIMES_Z, lambda b=b, s=s_times_z: (b * s).sum(1)),
                (
                    "you forgot R_j: neuron j's bias keeps the share b_j/stab(z_j) of R_j.",
                    lambda b=b, d=d: np.where(d == 0, 0.0, b / np.where(d == 0, 1.0, d)).sum(1),
                ),
                (
                    "you divided by z_j; the denominator of every message is stab(z_j).",
                    lambda b=b, z=z, R=R: np.where(z == 0, 0.0, b * R / np.where(z == 0, 1, z)).sum(
                        1
                    ),
                ),
                (
                    "you summed over the whole batch; return one share per sample (axis 1).",
                    lambda b=b, s=s: (b * s).sum(),
                ),
            ],
            nonfinite=_nonfinite(eps),
            hint="bias share of sample n = Σ_j b_j / stab(z_nj) · R_nj.",
        )
        compare(
            stab_got,
            stab_expected,
            case,
            what="the stabiliser share Σ_j ε·sign(z_j)/stab(z_j)·R_j",
            label=label,
            shape_hint=" = (N,), one number per sample",
            variants=[
                (
                    "a neuron with stab(z_j) = 0 sends nothing, so its whole R_j is lost: "
                    "count it in the stabiliser share. Then Σ_i R_i + bias + stabiliser = "
                    "Σ_j R_j holds exactly.",
                    lambda d=d, s=s, eps=eps, z=z: (eps * _sign(z) * s).sum(1),
                ),
                (
                    _EPS_TIMES_Z + " The stabiliser takes ε·sign(z_j)/stab(z_j)·R_j.",
                    lambda s=s, eps=eps, z=z, d=d, R=R: (
                        (eps * z * s).sum(1) + (R * (d == 0)).sum(1)
                    ),
                ),
                (
                    "you used ε without its sign: the stabiliser adds ε·sign(z_j), so it takes "
                    "ε·sign(z_j)/stab(z_j)·R_j.",
                    lambda s=s, eps=eps, d=d, R=R: (eps * s).sum(1) + (R * (d == 0)).sum(1),
                ),
                (
                    "you returned one share per neuron j; add them up per sample.",
                    lambda s=s, eps=eps, z=z, d=d, R=R: eps * _sign(z) * s + R * (d == 0),
                ),
            ],
            nonfinite=_nonfinite(eps),
            hint="stabiliser share = Σ_j ε·sign(z_j)/stab(z_j)·R_j, plus R_j for each neuron "
            "with stab(z_j) = 0. Check: Σ_i R_i + bias + stabiliser = Σ_j R_j.",
        )
    return (
        f"All {len(cases)} cases agree. Nothing is hidden: Σ_j R_j = Σ_i R_i + bias share "
        "+ stabiliser share for every sample, which is the conservation ledger lrp_tutor "
        "keeps per layer."
    )
