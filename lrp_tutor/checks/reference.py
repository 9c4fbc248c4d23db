r"""The references the checkers compare with, computed from the rule book.

Every rule is a list of parts (:mod:`lrp_tutor.rules`); the messages of a dense layer are

.. math::

    R_{i \leftarrow j} = \sum_p c_p \, \frac{z^p_{ij}}{\mathrm{stab}(z^p_j)} \, R_j ,
    \qquad z^p_{ij} = \sum_t \phi_t(x_i)\,\rho_t(w_{ij}),
    \qquad z^p_j = \sum_i z^p_{ij} + \rho^p(b_j).

A convolution is a dense layer per output neuron: its receptive field is its :math:`x_i`,
its kernel its :math:`w_{ij}`. These functions are deliberately slow and explicit (one
sample, one neuron at a time, float64); the exercises ask for the same quantities in other
forms, so a student's answer and the reference are computed independently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..rules import Rule, safe_divide, sign

__all__ = [
    "dense_contributions",
    "dense_messages",
    "dense_absorbed",
    "receptive_field",
    "conv_output",
    "conv_neuron_messages",
    "conv_relevance_in",
    "flip_order",
    "pixel_flipping_curve",
    "aopc",
    "normalized_heatmaps",
    "eigengap",
]


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def dense_contributions(x: Any, W: Any, rule: Rule) -> list[np.ndarray]:
    r"""The contributions :math:`z^p_{ij}` of each part of ``rule``, each shaped (n_in, n_out).

    >>> from lrp_tutor.rules import LRP0
    >>> dense_contributions(np.array([1.0, -2.0]), np.array([[1.0], [3.0]]), LRP0())[0]
    array([[ 1.],
           [-6.]])
    """
    x, W = _f64(x), _f64(W)
    return [sum(t.input(x)[:, None] * t.weight(W) for t in part.terms) for part in rule.parts]


def dense_messages(x: Any, W: Any, b: Any, R_out: Any, rule: Rule) -> np.ndarray:
    r"""The messages :math:`R_{i \leftarrow j}` of one sample, shape (n_in, n_out).

    ``W`` is shaped (n_in, n_out), the layer computes ``z = x @ W + b``.

    >>> from lrp_tutor.rules import LRP0
    >>> dense_messages([1.0, 1.0], [[1.0], [3.0]], [0.0], [2.0], LRP0())
    array([[0.5],
           [1.5]])
    """
    x, W, b, R_out = _f64(x), _f64(W), _f64(b), _f64(R_out)
    messages = np.zeros(W.shape)
    for part, z_ij in zip(rule.parts, dense_contributions(x, W, rule), strict=True):
        z_j = z_ij.sum(axis=0) + part.bias(b)
        messages += part.coefficient * safe_divide(z_ij, part.stabilize(z_j)[None, :]) * R_out
    return messages


def dense_absorbed(x: Any, W: Any, b: Any, R_out: Any, rule: Rule) -> tuple[float, float]:
    r"""What the bias and the stabiliser absorb in one sample: (bias, stabiliser).

    .. math::

        \text{bias} = \sum_j \sum_p c_p \frac{\rho^p(b_j)}{\mathrm{stab}(z^p_j)} R_j, \qquad
        \text{stabiliser} = \sum_j \sum_p c_p
            \frac{\varepsilon\,\mathrm{sign}(z^p_j)}{\mathrm{stab}(z^p_j)} R_j

    plus :math:`c_p R_j` into the stabiliser for each neuron whose stab(z^p_j) is 0 (it
    sends nothing), so that :math:`\sum_j R_j = \sum_i R_i + \text{bias} + \text{stabiliser}`.

    >>> from lrp_tutor.rules import Epsilon
    >>> dense_absorbed([1.0], [[1.0]], [1.0], [3.0], Epsilon(1.0))
    (1.0, 1.0)
    """
    x, W, b, R_out = _f64(x), _f64(W), _f64(b), _f64(R_out)
    bias = stabiliser = 0.0
    for part, z_ij in zip(rule.parts, dense_contributions(x, W, rule), strict=True):
        z_j = z_ij.sum(axis=0) + part.bias(b)
        denominator = part.stabilize(z_j)
        c = part.coefficient
        bias += float(np.sum(c * safe_divide(part.bias(b), denominator) * R_out))
        eps = part.epsilon_of(z_j) * sign(z_j)  # ε, or ε·RMS(z) if relative
        stabiliser += float(np.sum(c * safe_divide(eps, denominator) * R_out))
        stabiliser += float(np.sum(c * R_out * (denominator == 0)))
    return bias, stabiliser


def receptive_field(x: Any, kh: int, kw: int, r: int, c: int, stride: int) -> np.ndarray:
    """The inputs that output neuron (·, r, c) of a convolution sees: (C_in, kh, kw).

    >>> receptive_field(np.arange(16.0).reshape(1, 4, 4), 2, 2, 1, 0, 2)
    array([[[ 8.,  9.],
            [12., 13.]]])
    """
    x = _f64(x)
    return x[:, r * stride : r * stride + kh, c * stride : c * stride + kw]


def conv_output(x: Any, w: Any, b: Any, stride: int) -> np.ndarray:
    """z = conv2d(x, w, b, stride) of one image (C_in, H, W), computed by PyTorch in float64.

    >>> conv_output(np.ones((1, 3, 3)), np.ones((1, 1, 2, 2)), np.zeros(1), 1)[0]
    array([[4., 4.],
           [4., 4.]])
    """
    import torch

    out = torch.nn.functional.conv2d(
        torch.as_tensor(_f64(x))[None],
        torch.as_tensor(_f64(w)),
        torch.as_tensor(_f64(b)),
        stride=stride,
    )
    return out[0].numpy()


def conv_neuron_messages(
    x: Any, w: Any, b: Any, k: int, r: int, c: int, stride: int, R_j: float, rule: Rule
) -> np.ndarray:
    r"""The messages :math:`R_{i \leftarrow j}` of output neuron j = (k, r, c), shaped like x.

    The neuron is a dense layer with one output: its inputs are its receptive field, its
    weights the kernel ``w[k]``, its bias ``b[k]``. Inputs outside the receptive field
    get no message (0).

    >>> from lrp_tutor.rules import LRP0
    >>> m = conv_neuron_messages(np.ones((1, 3, 3)), np.ones((1, 1, 2, 2)), np.zeros(1),
    ...                          0, 1, 1, 1, 4.0, LRP0())
    >>> m[0]
    array([[0., 0., 0.],
           [0., 1., 1.],
           [0., 1., 1.]])
    """
    x, w, b = _f64(x), _f64(w), _f64(b)
    kh, kw = w.shape[2:]
    patch = receptive_field(x, kh, kw, r, c, stride)
    messages = dense_messages(patch.ravel(), w[k].reshape(-1, 1), b[k : k + 1], [R_j], rule)
    out = np.zeros_like(x)
    out[:, r * stride : r * stride + kh, c * stride : c * stride + kw] = messages.reshape(
        patch.shape
    )
    return out


def conv_relevance_in(x: Any, w: Any, b: Any, R_out: Any, stride: int, rule: Rule) -> np.ndarray:
    r""":math:`R_i = \sum_j R_{i \leftarrow j}` over every output neuron j of the convolution.

    >>> from lrp_tutor.rules import LRP0
    >>> conv_relevance_in(np.ones((1, 3, 3)), np.ones((1, 1, 2, 2)), np.zeros(1),
    ...                   np.ones((1, 2, 2)), 1, LRP0())[0]
    array([[0.25, 0.5 , 0.25],
           [0.5 , 1.  , 0.5 ],
           [0.25, 0.5 , 0.25]])
    """
    R_out = _f64(R_out)
    total = np.zeros_like(_f64(x))
    for k, r, c in np.ndindex(*R_out.shape):
        total += conv_neuron_messages(x, w, b, k, r, c, stride, R_out[k, r, c], rule)
    return total


def flip_order(relevance: Any) -> np.ndarray:
    """Flat pixel indices, most relevant first; ties: the lower index first.

    >>> flip_order(np.array([[0.1, 0.5], [0.5, -1.0]]))
    array([1, 2, 0, 3])
    """
    return np.argsort(-_f64(relevance).ravel(), kind="stable")


def pixel_flipping_curve(
    f: Callable[[np.ndarray], Any],
    x: Any,
    relevance: Any,
    target: int,
    per_step: int = 1,
    baseline: float = 0.0,
) -> np.ndarray:
    r"""The scores :math:`f_c(x^{(k)})`, k = 0 … K, removing ``per_step`` pixels per step.

    :math:`x^{(k)}` is ``x`` with its :math:`k \cdot` ``per_step`` most relevant pixels set to
    ``baseline``; K = n // per_step for n pixels.

    >>> pixel_flipping_curve(lambda x: x.ravel(), np.array([1.0, 2.0]), np.array([0.0, 1.0]), 1)
    array([2., 0., 0.])
    """
    image = _f64(x).copy()
    order = flip_order(relevance)
    steps = image.size // per_step
    scores = [float(np.asarray(f(image))[target])]
    for k in range(1, steps + 1):
        image.flat[order[(k - 1) * per_step : k * per_step]] = baseline
        scores.append(float(np.asarray(f(image))[target]))
    return np.array(scores)


def aopc(scores: Any) -> np.ndarray:
    r"""Area over the perturbation curve (Samek et al. 2017).

    .. math::

        \mathrm{AOPC} = \frac{1}{K+1}\sum_{k=0}^{K} \big(f(x^{(0)}) - f(x^{(k)})\big)

    ``scores`` of shape (K+1,) or (N, K+1); the result has shape () or (N,).

    >>> aopc(np.array([3.0, 1.0, 0.0, 0.0]))
    array(2.)
    """
    s = _f64(scores)
    return np.asarray((s[..., :1] - s).mean(axis=-1))


def normalized_heatmaps(relevance: Any) -> np.ndarray:
    r"""Each heatmap divided by its largest absolute value, :math:`h_n = R_n / \max_d |R_{n,d}|`
    (an all-zero heatmap stays zero), one heatmap at a time.

    >>> normalized_heatmaps(np.array([[[2.0, -4.0]], [[0.0, 0.0]]])).tolist()
    [[[0.5, -1.0]], [[0.0, 0.0]]]
    """
    R = _f64(relevance)
    out = np.zeros_like(R)
    for n in range(len(R)):
        largest = max(abs(float(v)) for v in R[n].ravel())
        if largest > 0:
            out[n] = R[n] / largest
    return out


def eigengap(eigenvalues: Any) -> int:
    r"""The suggested number of clusters: the k ≥ 2 with the largest gap
    :math:`\lambda_{k+1} - \lambda_k` (eigenvalues ascending, counted from k = 1).

    >>> eigengap([0.0, 0.01, 0.02, 0.6, 0.65])
    3
    """
    values = [float(v) for v in np.asarray(eigenvalues).ravel()]
    best, best_gap = 2, -np.inf
    for k in range(2, len(values)):  # λ_k is values[k - 1]
        gap = values[k] - values[k - 1]
        if gap > best_gap:
            best, best_gap = k, gap
    return best
