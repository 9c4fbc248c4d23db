"""The exercise checkers accept right answers and name the typical wrong ones.

The implementations below are written the way students write them (not copied from the
checkers' variants): one right answer per task, and for each task at least three typical
mistakes whose messages must name the mistake.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_tutor import checks, composites
from lrp_tutor.checks import reference as ref
from lrp_tutor.checks.ex01 import _random_layer
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, ZBox

# --------------------------------------------------------------------------------------
# Right answers, as a student would write them.


def sign(z):
    return np.where(z >= 0, 1.0, -1.0)


def contributions(x, W):
    return x[:, None] * W


def messages(x, W, b, R_out):
    z_ij = x[:, None] * W
    z_j = z_ij.sum(axis=0) + b
    return np.divide(z_ij, z_j, out=np.zeros_like(z_ij), where=z_j != 0) * R_out


def relevance_in(x, W, b, R_out):
    return messages(x, W, b, R_out).sum(axis=1)


def stabilize(z, eps):
    return z + eps * sign(z)


def lrp_epsilon(x, W, b, R_out, eps):
    z = x @ W + b
    d = stabilize(z, eps)
    s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    return x * (s @ W.T)


def absorbed(x, W, b, R_out, eps):
    z = x @ W + b
    d = stabilize(z, eps)
    s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    bias = (b * s).sum(axis=1)
    return bias, (eps * sign(z) * s).sum(axis=1) + (R_out * (d == 0)).sum(axis=1)


def split_contributions(x, W):
    xp, xn = np.maximum(x, 0)[:, None], np.minimum(x, 0)[:, None]
    wp, wn = np.maximum(W, 0), np.minimum(W, 0)
    return xp * wp + xn * wn, xp * wn + xn * wp


def lrp_alphabeta(x, W, b, R_out, alpha=2.0, beta=1.0, eps=1e-6, *, mistake=None):
    if abs(alpha - beta - 1) > 1e-12 and mistake != "no check":
        raise ValueError("alpha - beta must be 1")
    zp, zn = split_contributions(x, W)
    bp, bn = np.maximum(b, 0), np.minimum(b, 0)
    if mistake == "plain bias":
        bp = bn = b
    if mistake == "swap":
        alpha, beta = beta, alpha
    dp, dn = zp.sum(0) + bp, zn.sum(0) + bn
    if mistake != "no stabiliser":
        dp, dn = stabilize(dp, eps), stabilize(dn, eps)
    return alpha * (zp / dp * R_out).sum(1) - beta * (zn / dn * R_out).sum(1)


def receptive_field(x, kh, kw, r, c, stride):
    return x[:, r * stride : r * stride + kh, c * stride : c * stride + kw]


def conv_contributions(x, w, b, k, r, c, stride):
    kh, kw = w.shape[2:]
    z_ij = receptive_field(x, kh, kw, r, c, stride) * w[k]
    return z_ij, z_ij.sum() + b[k]


def conv_messages(x, w, b, k, r, c, stride, R_j, eps):
    kh, kw = w.shape[2:]
    z_ij, z_j = conv_contributions(x, w, b, k, r, c, stride)
    out = np.zeros_like(x)
    out[:, r * stride : r * stride + kh, c * stride : c * stride + kw] = (
        z_ij / stabilize(z_j, eps) * R_j
    )
    return out


def conv_relevance_in(x, w, b, R_out, stride, eps):
    R_in = np.zeros_like(x)
    for k, r, c in np.ndindex(*R_out.shape):
        R_in += conv_messages(x, w, b, k, r, c, stride, R_out[k, r, c], eps)
    return R_in


def pixel_bounds(mean, std):
    mean = np.asarray(mean, dtype=float).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=float).reshape(1, 3, 1, 1)
    return -mean / std, (1 - mean) / std


LOWER = ["features.2", "features.5", "features.7", "features.10", "features.12", "features.14"]
MIDDLE = ["features.17", "features.19", "features.21", "features.24", "features.26", "features.28"]


def vgg16_composite(low, high, *, first=None, middle=None, top=None):
    rules = {"features.0": first or ZBox(low, high)}
    rules.update({name: Gamma(0.25) for name in LOWER})
    rules.update({name: middle or Epsilon(0.25, relative=True) for name in MIDDLE})
    return composites.Composite(by_name=rules, by_type={torch.nn.Linear: top or LRP0()})


def flip_order(relevance):
    return np.argsort(-relevance.ravel(), kind="stable")


def pixel_flipping(f, x, relevance, target, per_step=1, baseline=0.0, *, mistake=None):
    order = flip_order(relevance)
    if mistake == "least first":
        order = order[::-1]
    image = x.copy()
    scores = [] if mistake == "no start" else [f(image)[target]]
    for k in range(x.size // per_step):
        if mistake == "not cumulative":
            image = x.copy()
        image.flat[order[k * per_step : (k + 1) * per_step]] = baseline
        scores.append(f(image)[target])
    return np.array(scores)


def aopc(scores):
    return (scores[..., :1] - scores).mean(axis=-1)


def normalize_heatmaps(R):
    largest = np.abs(R).max(axis=(1, 2), keepdims=True)
    return np.divide(R, largest, out=np.zeros_like(R), where=largest > 0)


def eigengap(eigenvalues):
    gaps = np.diff(eigenvalues)
    return int(np.argmax(gaps[1:])) + 2


def lrp_dense(x, W, b, R_out, rho, eps):
    z = x @ rho(W) + rho(b)
    d = z + eps * sign(z)
    s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    return x * (s @ rho(W).T)


def _per_sample_sum(x, W, b, R_out, rho, eps):
    z = x @ rho(W) + rho(b)
    d = z + eps * sign(z)
    s = R_out.sum(axis=1, keepdims=True) / d.sum(axis=1, keepdims=True) * np.ones_like(R_out)
    return x * (s @ rho(W).T)


def lrp_mlp(layers, x, eps, *, mistake=None):
    A = [x]
    for k, (W, b) in enumerate(layers):
        z = A[-1] @ W + b
        A.append(z if k == len(layers) - 1 or mistake == "no relu" else np.maximum(z, 0))
    logits = A[-1]
    R = np.zeros_like(logits)
    for n, c in enumerate(logits.argmax(axis=1)):
        R[n, c] = 1.0 if mistake == "one-hot" else logits[n, c]
    for k in reversed(range(len(layers))):
        W, b = layers[k]
        if mistake == "no bias":
            b = 0 * b
        R = lrp_dense(A[k], W, b, R, lambda w: w, 0.0 if mistake == "no eps" else eps)
    return R


def lrp_cnn(model, x, eps, *, mistake=None):
    layers = list(model)
    A = [x]
    with torch.no_grad():
        for layer in layers:
            A.append(layer(A[-1]))
    R = torch.zeros_like(A[-1])
    c = A[-1].argmax(dim=1)
    R[torch.arange(len(x)), c] = A[-1][torch.arange(len(x)), c]
    for layer, a in zip(layers[::-1], A[-2::-1], strict=True):
        if isinstance(layer, torch.nn.Flatten):
            R = R.reshape(a.shape)
        elif isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d)):
            a = a.clone().requires_grad_(True)
            z = layer.forward(a)
            e = eps if not isinstance(layer, torch.nn.MaxPool2d) or mistake == "pool eps" else 0
            if mistake == "float32 sign":
                d = z + e * torch.where(z >= 0, 1.0, -1.0)
            else:
                d = z + e * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
            s = torch.where(d == 0, torch.zeros_like(d), R / torch.where(d == 0, 1.0, d).to(d))
            (z * (s if mistake == "no detach" else s.detach())).sum().backward()
            R = (a * a.grad).detach()
    return R


def uniform_product(a, b, r, epsilon):
    z = a @ b
    d = z + epsilon * sign(z)
    s = np.divide(r, d, out=np.zeros_like(d), where=d != 0)
    return 0.5 * a * (s @ b.T), 0.5 * b * (a.T @ s)


def softmax_rule(x, r):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    s = e / e.sum(axis=-1, keepdims=True)
    out = x * (r - s * r.sum(axis=-1, keepdims=True))
    return np.where(np.isfinite(x), out, 0.0)


def attention_relevance(X, Wq, Wk, Wv, R_out, epsilon, *, mistake=None):
    def epsilon_rule(x, W, r):
        z = x @ W
        d = z + epsilon * sign(z)
        return x * (np.divide(r, d, out=np.zeros_like(d), where=d != 0) @ W.T)

    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    A = e / e.sum(axis=-1, keepdims=True)
    product = uniform_product
    if mistake == "full":

        def product(a, b, r, eps):
            return tuple(2 * v for v in uniform_product(a, b, r, eps))

    R_A, R_V = product(A, V, R_out, epsilon)
    R_S = softmax_rule(S, R_A)
    R_Q, R_Kt = product(Q, K.T, R_S, epsilon)
    R_K = R_Kt if mistake == "no transpose" else R_Kt.T
    R_X = epsilon_rule(X, Wv, R_V)
    if mistake == "values only":
        return R_X
    return R_X + epsilon_rule(X, Wq, R_Q) + epsilon_rule(X, Wk, R_K)


def _cp_head(X, Wq, Wk, Wv, R_out, epsilon):
    """CP-LRP: the attention weights held constant."""
    S = (X @ Wq) @ (X @ Wk).T
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    A = e / e.sum(axis=-1, keepdims=True)
    V = X @ Wv
    O = A @ V
    d = O + epsilon * sign(O)
    R_V = V * (A.T @ np.divide(R_out, d, out=np.zeros_like(d), where=d != 0))
    z = X @ Wv
    d = z + epsilon * sign(z)
    return X * (np.divide(R_V, d, out=np.zeros_like(d), where=d != 0) @ Wv.T)


# --------------------------------------------------------------------------------------
# Each checker: the right answer passes, typical mistakes are named.

RIGHT = {
    "01.1": contributions,
    "01.2": messages,
    "01.3": relevance_in,
    "02.1": stabilize,
    "02.2": lrp_epsilon,
    "02.3": absorbed,
    "03.1": split_contributions,
    "03.2": lrp_alphabeta,
    "04.1": receptive_field,
    "04.2": conv_contributions,
    "04.3": conv_messages,
    "04.4": conv_relevance_in,
    "05.1": pixel_bounds,
    "05.2": vgg16_composite,
    "06.1": flip_order,
    "06.2": pixel_flipping,
    "06.3": aopc,
    "07.1": normalize_heatmaps,
    "07.2": eigengap,
    "08.1": lrp_dense,
    "08.2": lrp_mlp,
    "08.3": lrp_cnn,
    "09.1": uniform_product,
    "09.2": softmax_rule,
    "09.3": attention_relevance,
}


def test_every_task_has_a_checker_and_a_right_answer():
    assert list(checks.TASKS) == list(RIGHT)


@pytest.mark.parametrize("task", list(RIGHT))
def test_right_answer_passes(task):
    result = checks.TASKS[task].checker(RIGHT[task])
    assert result.passed, result.message
    assert result.status == "passed" and result.implemented


WRONG = {
    "01.1": [
        (lambda x, W: x @ W, "x @ W"),
        (lambda x, W: (x[:, None] * W).T, "transposed"),
        (lambda x, W: x * W, "x[:, None] * W"),  # broadcasting error, explained
    ],
    "01.2": [
        (lambda x, W, b, R: (x[:, None] * W) / (x[:, None] * W).sum(0) * R, "bias out of z_j"),
        (lambda x, W, b, R: (x[:, None] * W) / ((x[:, None] * W).sum(0) + b), "multiply by R_j"),
        (lambda x, W, b, R: (x[:, None] * W) / ((x[:, None] * W).sum(0) + b) * R, "0/0 := 0"),
        (lambda x, W, b, R: messages(x, W.T, b, R), "W[i, j]"),
    ],
    "01.3": [
        (lambda x, W, b, R: messages(x, W, b, R).sum(axis=0), "sum over axis 1"),
        (lambda x, W, b, R: messages(x, W, b, R).sum(), "total"),
        (lambda x, W, b, R: messages(x, W, b, R).mean(axis=1), "averaged"),
    ],
    "02.1": [
        (lambda z, eps: z + eps * np.sign(z), "np.sign(0) is 0"),
        (lambda z, eps: z + eps * np.where(z > 0, 1.0, -1.0), "sign(0) = −1"),
        (lambda z, eps: z + eps, "without the sign"),
        (lambda z, eps: z - eps * sign(z), "wrong sign"),
        (lambda z, eps: z + eps * z, "multiplied ε by z instead of by sign(z)"),
    ],
    "02.2": [
        (lambda x, W, b, R, eps: lrp_epsilon(x, W, 0 * b, R, eps), "left the bias out"),
        (
            lambda x, W, b, R, eps: (R / stabilize(x @ W + b, eps)) @ W.T,
            "R_in = x * c",
        ),
        (
            lambda x, W, b, R, eps: x * ((R / (x @ W + b + eps * np.sign(x @ W + b))) @ W.T),
            "np.sign",
        ),
        (lambda x, W, b, R, eps: x * ((R / stabilize(x @ W + b, eps)) @ W.T), "0/0 := 0"),
        (
            lambda x, W, b, R, eps: x * ((R / ((x @ W + b) * (1 + eps))) @ W.T),
            "multiplied ε by z instead of by sign(z)",
        ),
    ],
    "02.3": [
        (lambda *a: absorbed(*a)[::-1], "(bias share, stabiliser share)"),
        (
            lambda x, W, b, R, eps: (
                absorbed(x, W, b, R, eps)[0],
                (eps * sign(x @ W + b) * np.nan_to_num(R / stabilize(x @ W + b, eps))).sum(1),
            ),
            "whole R_j is lost",
        ),
        (
            lambda x, W, b, R, eps: (
                (b * np.nan_to_num(R / stabilize(x @ W + b, eps))),
                absorbed(x, W, b, R, eps)[1],
            ),
            "one share per neuron",
        ),
        (lambda x, W, b, R, eps: absorbed(x, W, b, R, eps)[0], "pair"),
        (
            lambda x, W, b, R, eps: (
                absorbed(x, W, b, R, eps)[0],
                (eps * (x @ W + b) * (R / stabilize(x @ W + b, eps))).sum(1),
            ),
            "multiplied ε by z instead of by sign(z)",
        ),
    ],
    "03.1": [
        (lambda x, W: (x[:, None] * np.maximum(W, 0), x[:, None] * np.minimum(W, 0)), "x⁻·w⁻"),
        (lambda x, W: split_contributions(x, W)[::-1], "(z⁻, z⁺)"),
        (lambda x, W: (split_contributions(x, W)[0], -split_contributions(x, W)[1]), "magnitude"),
        (
            lambda x, W: (
                np.maximum(x, 0)[:, None] * np.maximum(W, 0),
                np.minimum(x[:, None] * W, 0),
            ),
            "forgot the term x⁻·w⁻",
        ),
    ],
    "03.2": [
        (lambda *a: lrp_alphabeta(*a, mistake="plain bias"), "b⁺ = max(b_j, 0)"),
        (lambda *a: lrp_alphabeta(*a, mistake="swap"), "swapped α and β"),
        (lambda *a: lrp_alphabeta(*a, mistake="no stabiliser"), "stabiliser"),
        (lambda *a: lrp_alphabeta(*a, mistake="no check"), "raise ValueError"),
    ],
    "04.1": [
        (lambda x, kh, kw, r, c, s: x[:, r : r + kh, c : c + kw], "forgot the stride"),
        (lambda x, kh, kw, r, c, s: x[:, c * s : c * s + kh, r * s : r * s + kw], "swapped rows"),
        (lambda x, kh, kw, r, c, s: x[:, r * s : r * s + kh + 1, c * s : c * s + kw + 1], "b − a"),
        (lambda x, kh, kw, r, c, s: receptive_field(x, kh, kw, r, c, s)[0], "every input channel"),
    ],
    "04.2": [
        (
            lambda x, w, b, k, r, c, s: conv_contributions(x, w[:, :, ::-1, ::-1], b, k, r, c, s),
            "flipped the kernel",
        ),
        (
            lambda x, w, b, k, r, c, s: conv_contributions(x, w, 0 * b, k, r, c, s),
            "forgot the bias",
        ),
        (
            lambda x, w, b, k, r, c, s: conv_contributions(
                x, w.transpose(1, 0, 2, 3), b, k, r, c, s
            ),
            "w[k]",
        ),
        (
            lambda x, w, b, k, r, c, s: (
                conv_contributions(x, w, b, k, r, c, s)[0],
                conv_contributions(x, w, b, k, r, c, s)[0].sum(axis=(1, 2)) + b[k],
            ),
            "one number",
        ),
    ],
    "04.3": [
        (lambda x, w, b, k, r, c, s, R, e: conv_messages(x, w, b, k, r, c, 1, R, e), "r·stride"),
        (
            lambda x, w, b, k, r, c, s, R, e: receptive_field(
                conv_messages(x, w, b, k, r, c, s, R, e), *w.shape[2:], r, c, s
            ),
            "shaped like x",
        ),
        (lambda x, w, b, k, r, c, s, R, e: conv_messages(x, w, 0 * b, k, r, c, s, R, e), "bias"),
        (lambda x, w, b, k, r, c, s, R, e: conv_messages(x, w, b, k, r, c, s, 1.0, e), "R_j"),
    ],
    "04.4": [
        (
            lambda x, w, b, R, s, e: conv_relevance_in(x, w, b, R[:1], s, e),
            "output channel k = 0",
        ),
        (
            lambda x, w, b, R, s, e: conv_relevance_in(x, w, b, R[:, :-1, :-1], s, e),
            "last output row",
        ),
        (lambda x, w, b, R, s, e: _assigning_loop(x, w, b, R, s, e), "+="),
    ],
    "05.1": [
        (lambda mean, std: (0.0, 1.0), "normalised pixels"),
        (
            lambda mean, std: (
                -np.asarray(mean) / np.asarray(std),
                (1 - np.asarray(mean)) / np.asarray(std),
            ),
            "(1, 3, 1, 1)",
        ),
        (lambda mean, std: pixel_bounds(mean, std)[::-1], "(high, low)"),
        (lambda mean, std: pixel_bounds(std, mean), "swapped mean and std"),
    ],
    "05.2": [
        (lambda low, high: composites.epsilon_gamma_box(low, high), "features.17"),
        (lambda low, high: vgg16_composite(low, high, first=Flat()), "features.0"),
        (lambda low, high: vgg16_composite(low, high, first=ZBox(0.0, 1.0)), "Task 05.1"),
        (lambda low, high: vgg16_composite(low, high, middle=Epsilon()), "barely absorbs"),
        (lambda low, high: vgg16_composite(low, high, middle=Epsilon(0.25)), "relative=True"),
        (lambda low, high: vgg16_composite(low, high, top=AlphaBeta()), "classifier.0"),
        (lambda low, high: {"features.0": ZBox(low, high)}, "composites.by_name"),
    ],
    "06.1": [
        (lambda R: np.argsort(R.ravel(), kind="stable"), "least relevant"),
        (lambda R: np.argsort(R.ravel(), kind="stable")[::-1], "ties"),
        (lambda R: np.argsort(-np.abs(R.ravel()), kind="stable"), "|R|"),
        (lambda R: np.sort(R.ravel())[::-1], "indices"),
    ],
    "06.2": [
        (lambda *a: pixel_flipping(*a, mistake="least first"), "least relevant"),
        (lambda *a: pixel_flipping(*a, mistake="no start"), "K + 1 scores"),
        (lambda *a: pixel_flipping(*a, mistake="not cumulative"), "cumulative"),
        (lambda f, x, R, t, p, b: pixel_flipping(f, x, R, int(np.argmax(f(x))), p, b), "target"),
    ],
    "06.3": [
        (lambda s: (s[..., :1] - s).sum(-1) / (s.shape[-1] - 1), "K + 1 steps"),
        (lambda s: (s - s[..., :1]).mean(-1), "positive when the score"),
        (lambda s: s.mean(-1), "averaged the scores"),
        (lambda s: (s.flat[0] - s).mean(-1), "its own score"),
    ],
    "07.1": [
        (lambda R: R / R.max(axis=(1, 2), keepdims=True), "largest R, not the largest |R|"),
        (lambda R: R / np.abs(R).max(), "one maximum over all"),
        (lambda R: R / np.abs(R).max(axis=(1, 2), keepdims=True), "0/0"),
        (lambda R: np.abs(normalize_heatmaps(R)), "keep the sign"),
    ],
    "07.2": [
        (lambda lam: int(np.argmax(np.diff(lam)[1:])) + 1, "0-based"),
        (lambda lam: int(np.argmax(np.diff(lam))) + 1, "k ≥ 2 only"),
        (lambda lam: float(np.max(np.diff(lam)[1:])), "size of the largest gap"),
        (lambda lam: int(np.argmax(np.diff(lam)[1:])) + 3, "k + 1"),
    ],
    "08.1": [
        (lambda x, W, b, R, rho, eps: lrp_dense(x, W, 0 * b, R, rho, eps), "forgot the bias"),
        (
            lambda x, W, b, R, rho, eps: x * ((R / (x @ rho(W) + rho(b))) @ rho(W).T),
            "without the stabiliser",
        ),
        (
            lambda x, W, b, R, rho, eps: x * ((R / stabilize(x @ rho(W) + rho(b), eps)) @ rho(W)),
            "c = s @ rho(W).T",  # a transposed W raises on a non-square layer: the hint says so
        ),
        (lambda x, W, b, R, rho, eps: lrp_dense(x, W, b, R, lambda w: w, eps), "never applied rho"),
        (_per_sample_sum, "sums instead of one s_j per neuron"),
        (
            lambda x, W, b, R, rho, eps: lrp_dense(x, W, b, R, rho, eps) / x,
            "R_in = x * c",
        ),
    ],
    "08.2": [
        (lambda layers, x, eps: lrp_mlp(layers, x, eps, mistake="no bias"), "forgot the bias"),
        (lambda layers, x, eps: lrp_mlp(layers, x, eps, mistake="no eps"), "stabiliser"),
        (lambda layers, x, eps: lrp_mlp(layers, x, eps, mistake="one-hot"), "seeded R with 1"),
        (lambda layers, x, eps: lrp_mlp(layers, x, eps, mistake="no relu"), "left out the ReLU"),
    ],
    "08.3": [
        (lambda model, x, eps: lrp_cnn(model, x, eps, mistake="no detach"), "did not detach s"),
        (lambda model, x, eps: lrp_cnn(model, x, eps, mistake="pool eps"), "max pooling too"),
        (lambda model, x, eps: lrp_cnn(model, x, eps, mistake="float32 sign"), "float32"),
        (lambda model, x, eps: lrp_cnn(model, x, 0.0), "without the stabiliser"),
        (lambda model, x, eps: lrp_cnn(model, x, eps)[:, 0], "shape"),
    ],
    "09.1": [
        (
            lambda a, b, r, eps: tuple(2 * v for v in uniform_product(a, b, r, eps)),
            "factor 1 instead of ½",
        ),
        (lambda a, b, r, eps: uniform_product(a, b, r, 0.0), "ignored ε"),
        (
            lambda a, b, r, eps: (
                0.5 * a * ((r / stabilize(a @ b, eps)) @ b),
                0.5 * b * (a @ (r / stabilize(a @ b, eps))),
            ),
            "wrong transposes",
        ),
        (lambda a, b, r, eps: (0.5 * a * (r @ b.T), 0.5 * b * (a.T @ r)), "s = r / stab(z)"),
        (lambda a, b, r, eps: uniform_product(a, b, r, eps)[::-1], "return (R_a, R_b)"),
        (lambda a, b, r, eps: uniform_product(a, b, r, eps)[0], "Expected a pair"),
    ],
    "09.2": [
        (lambda x, r: r, "forgot softmax's absorbed part"),
        (lambda x, r: np.where(np.isfinite(x), x * r, 0.0), "without the − s_i Σ_j R_j term"),
        (
            lambda x, r: softmax_rule(x, r) / x if x.ndim == 1 else softmax_rule(x, r),
            "forgot to multiply by x",
        ),
        (
            lambda x, r: np.where(
                np.isfinite(x), x * (r - np.exp(x) / np.exp(x).sum(-1, keepdims=True) * r), 0.0
            ),
            "s_i R_i where s_i Σ_j R_j belongs",
        ),
        (
            lambda x, r: (
                x * (r - np.exp(x) / np.exp(x).sum(-1, keepdims=True) * r.sum(-1, keepdims=True))
            ),
            "NaN or inf",
        ),
    ],
    "09.3": [
        (_cp_head, "CP-LRP"),
        (lambda *args: attention_relevance(*args, mistake="values only"), "only the value path"),
        (lambda *args: attention_relevance(*args, mistake="full"), "factor 1 instead of ½"),
        (lambda *args: attention_relevance(*args, mistake="no transpose"), "transposed back"),
    ],
}


def _assigning_loop(x, w, b, R_out, stride, eps):
    kh, kw = w.shape[2:]
    R_in = np.zeros_like(x)
    for k, r, c in np.ndindex(*R_out.shape):
        window = (
            slice(None),
            slice(r * stride, r * stride + kh),
            slice(c * stride, c * stride + kw),
        )
        R_in[window] = conv_messages(x, w, b, k, r, c, stride, R_out[k, r, c], eps)[window]
    return R_in


def test_at_least_three_mistakes_per_task():
    assert set(WRONG) == set(RIGHT)
    assert all(len(wrong) >= 3 for wrong in WRONG.values())


@pytest.mark.parametrize(
    "task, wrong, named",
    [(task, fn, named) for task, cases in WRONG.items() for fn, named in cases],
    ids=[f"{task}-{k}" for task, cases in WRONG.items() for k in range(len(cases))],
)
def test_wrong_answer_is_rejected_with_the_mistake_named(task, wrong, named):
    result = checks.TASKS[task].checker(wrong)
    assert not result.passed
    assert result.implemented
    assert named in result.message, result.message
    assert "Traceback" not in result.message


# --------------------------------------------------------------------------------------
# Held-out cases: the hidden tests of the assignments run cases the check cells do not show.


def _counting(function):
    """``function``, counting its calls in ``.calls``."""

    def counted(*args, **kwargs):
        counted.calls += 1
        return function(*args, **kwargs)

    counted.calls = 0
    return counted


@pytest.mark.parametrize("task", list(RIGHT))
def test_every_task_has_a_held_out_case_that_the_right_answer_passes(task):
    shown, graded = _counting(RIGHT[task]), _counting(RIGHT[task])
    assert checks.TASKS[task].checker(shown).passed
    result = checks.TASKS[task].checker(graded, held_out=True)
    assert result.passed, result.message
    assert graded.calls > shown.calls  # the held-out cases ran


def test_a_held_out_case_can_fail_alone_and_says_so():
    """An answer fitted to the cases a student sees passes the check cell, not the grading."""

    def fitted(x, W):  # right on the shown cases (4 inputs or more), wrong on 1 input
        return x[:, None] * W if len(x) > 1 else np.zeros_like(W)

    assert checks.ex01_contributions(fitted).passed
    result = checks.ex01_contributions(fitted, held_out=True)
    assert not result.passed
    assert "(held out for grading)" in result.message.splitlines()[0], result.message


# --------------------------------------------------------------------------------------
# What every checker does with broken functions.


def test_message_names_case_entry_expected_and_got():
    result = checks.ex01_messages(lambda x, W, b, R: messages(x, W, 0 * b, R))
    first, where, mistake = result.message.splitlines()
    assert first.startswith('Case 1 of 4, "random 4×3 layer')
    assert where.startswith("At i=0, j=0 (R_{0←0}): expected ")
    x, W, b, R = _random_layer(1, 4, 3, True)
    expected = ref.dense_messages(x, W, b, R, LRP0())[0, 0]
    assert f"expected {expected:.6g}" in where
    assert mistake.startswith("Likely mistake: you left the bias out of z_j")


def test_not_implemented_is_reported_as_such():
    def stub(x, W):
        raise NotImplementedError("Task 01.1: return z_ij")

    result = checks.ex01_contributions(stub)
    assert not result.passed and not result.implemented
    assert result.status == "not implemented"
    assert "Task 01.1: return z_ij" in result.message


def test_exception_in_student_code_is_one_sentence_with_the_line():
    def broken(x, W):
        y = x[:, None] * W
        return y.nonexistent

    result = checks.ex01_contributions(broken)
    assert "AttributeError" in result.message
    assert "in `broken`" in result.message and "return y.nonexistent" in result.message
    assert "Traceback" not in result.message


def test_none_nan_shape_and_non_function():
    assert "forget the `return`" in checks.ex01_contributions(lambda x, W: None).message
    nan = checks.ex06_aopc(lambda s: np.full(s.shape[:-1], np.nan)).message
    assert "NaN" in nan
    shape = checks.ex01_contributions(lambda x, W: np.zeros(7)).message
    assert "shape (4, 3)" in shape and "got shape (7,)" in shape
    assert "Pass the function itself" in checks.ex01_contributions(np.zeros(3)).message
    assert "expected" in checks.ex01_contributions(lambda x, W: "z").message


def test_changing_the_input_in_place_is_reported():
    def in_place(f, x, relevance, target, per_step=1, baseline=0.0):
        order = flip_order(relevance)
        scores = [f(x)[target]]
        for k in range(x.size // per_step):
            x.flat[order[k * per_step : (k + 1) * per_step]] = baseline
            scores.append(f(x)[target])
        return np.array(scores)

    result = checks.ex06_pixel_flipping(in_place)
    assert "changed its argument `x` in place" in result.message


def test_torch_tensors_are_accepted():
    result = checks.ex01_contributions(
        lambda x, W: torch.from_numpy(x)[:, None] * torch.from_numpy(W)
    )
    assert result.passed, result.message


def test_float32_answers_get_a_precision_hint():
    result = checks.ex01_contributions(lambda x, W: (x[:, None] * W).astype(np.float32))
    assert not result.passed and "float32" in result.message


def test_result_repr_html_and_assert_passed():
    good = checks.ex02_stabilize(stabilize)
    bad = checks.ex02_stabilize(lambda z, eps: z + eps * np.sign(z))
    assert repr(good).startswith("✔ Task 02.1 stabilize(z, eps) — passed")
    assert repr(bad).startswith("✘ Task 02.1 stabilize(z, eps) — failed")
    assert "#1b5e20" in good._repr_html_() and "#b71c1c" in bad._repr_html_()
    good.assert_passed()
    with pytest.raises(AssertionError, match="np.sign"):
        bad.assert_passed()
    assert bool(good) and not bool(bad)


def test_html_escapes_the_message():
    result = checks.CheckResult("01.1", "f", False, "a < b & c")
    assert "a &lt; b &amp; c" in result._repr_html_()


# --------------------------------------------------------------------------------------
# The references themselves, against independent computations.


def test_attention_references_equal_the_engine():
    """The references of exercise 09 are what lt.explain computes with AttnLRP (ε = 0)."""
    from lrp_tutor import explain
    from lrp_tutor.checks import ex09
    from lrp_tutor.rules import LRP0 as Zero

    zero = composites.Composite(
        by_type={torch.nn.Module: Zero()}, default=Zero(), attention="attn_lrp"
    )
    rng = np.random.default_rng(11)
    X, Wq, Wk, Wv = (rng.normal(size=s) for s in ((4, 3), (3, 3), (3, 3), (3, 2)))
    C = rng.uniform(0.5, 1.5, (4, 2))
    t = [torch.from_numpy(a) for a in (Wq, Wk, Wv, C)]

    class Head(torch.nn.Module):
        def forward(self, x):
            q, k, v = x @ t[0], x @ t[1], x @ t[2]
            A = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
            return ((A @ v) * t[3]).sum((1, 2)).unsqueeze(1)

    e = explain(Head().eval(), torch.from_numpy(X)[None], composite=zero)
    e.ledger.check(1e-10)
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T
    A = np.exp(S - S.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    R_out = (A @ V) * C  # what the head's output receives from the linear read-out
    expected = ex09.attention_relevance(X, Wq, Wk, Wv, R_out, 0.0)
    np.testing.assert_allclose(e.relevance[0].numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(attention_relevance(X, Wq, Wk, Wv, R_out, 0.0), expected, rtol=1e-12)
    x, r = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    np.testing.assert_allclose(ex09.softmax_rule(x, r), softmax_rule(x, r), rtol=1e-12)
    assert abs(ex09.softmax_rule(x, r).sum() - r.sum()) > 1e-3  # it absorbs: not conserving


def test_dense_reference_is_the_four_steps():
    rng = np.random.default_rng(5)
    x, W, b, R = rng.normal(size=4), rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=3)
    z = x @ W + b
    four_steps = x * (W @ (R / (z + 0.1 * sign(z))))
    np.testing.assert_allclose(
        ref.dense_messages(x, W, b, R, Epsilon(0.1)).sum(1), four_steps, rtol=1e-12
    )


def test_dense_absorbed_closes_the_ledger():
    rng = np.random.default_rng(6)
    for rule in (Epsilon(0.3), LRP0(), AlphaBeta(2, 1), Gamma(0.5)):
        x, W, b, R = (
            rng.normal(size=5),
            rng.normal(size=(5, 4)),
            rng.normal(size=4),
            rng.normal(size=4),
        )
        bias, stab = ref.dense_absorbed(x, W, b, R, rule)
        R_in = ref.dense_messages(x, W, b, R, rule).sum()
        assert abs(R.sum() - (R_in + bias + stab)) < 1e-10


def test_conv_reference_equals_transposed_convolution():
    rng = np.random.default_rng(7)
    x, w, b = rng.normal(size=(2, 7, 6)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    stride, eps = 2, 0.05
    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
    z = torch.nn.functional.conv2d(xt[None], wt, bt, stride=stride)
    R = torch.from_numpy(rng.uniform(0.1, 1, tuple(z.shape[1:])))[None]
    s = R / (z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z)))
    pad = (
        x.shape[1] - ((z.shape[2] - 1) * stride + 3),
        x.shape[2] - ((z.shape[3] - 1) * stride + 2),
    )
    c = torch.nn.functional.conv_transpose2d(s, wt, stride=stride, output_padding=pad)
    fast = (xt[None] * c)[0].numpy()
    slow = ref.conv_relevance_in(x, w, b, R[0].numpy(), stride, Epsilon(eps))
    np.testing.assert_allclose(slow, fast, rtol=1e-10, atol=1e-12)


def test_pixel_flipping_reference_on_a_linear_model():
    rng = np.random.default_rng(8)
    f = checks.LinearModel(rng.normal(size=(2, 6)), rng.normal(size=2))
    x, R = rng.uniform(size=(2, 3)), rng.normal(size=(2, 3))
    curve = ref.pixel_flipping_curve(f, x, R, 1, per_step=2, baseline=0.5)
    order = np.argsort(-R.ravel())
    # a linear model: each removed pixel changes the score by V[c, i]·(baseline − x_i)
    steps = (f.V[1, order] * (0.5 - x.ravel()[order])).reshape(3, 2).sum(1)
    np.testing.assert_allclose(curve, f(x)[1] + np.concatenate([[0], np.cumsum(steps)]), rtol=1e-12)
    np.testing.assert_allclose(ref.aopc(curve), np.mean(curve[0] - curve), rtol=1e-12)


def test_vgg16_skeleton_has_torchvision_names():
    model = checks.vgg16_skeleton()
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    assert linears == ["classifier.0", "classifier.3", "classifier.6"]
    assert composites.montavon_vgg(model, 0.0, 1.0).resolve(model)["features.17"] == Epsilon(
        0.25, relative=True
    )
