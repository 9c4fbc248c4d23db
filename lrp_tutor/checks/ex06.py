r"""Exercise 06: pixel flipping and AOPC (Samek et al. 2017).

Remove the most relevant pixels first, a few per step, and track the target's score
:math:`f_c(x^{(k)})`. A faithful explanation makes it drop fast:

.. math::

    \mathrm{AOPC} = \frac{1}{K + 1} \sum_{k=0}^{K} \big(f_c(x^{(0)}) - f_c(x^{(k)})\big).

The references are computed here from first principles (:mod:`.reference`); the package's
``lrp_tutor.evaluate.pixel_flipping`` does the same for PyTorch models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import reference as ref
from ._core import Case, Failure, as_array, call, checker, compare, diagnose, entry, numbered

__all__ = ["ex06_flip_order", "ex06_pixel_flipping", "ex06_aopc", "LinearModel"]


class LinearModel:
    """A tiny numpy model, f(x) = V · x.ravel() + c, returning one logit per class.

    >>> f = LinearModel(np.ones((2, 4)), np.zeros(2))
    >>> f(np.ones((2, 2)))
    array([4., 4.])
    """

    def __init__(self, V: np.ndarray, c: np.ndarray) -> None:
        self.V, self.c = np.asarray(V, dtype=np.float64), np.asarray(c, dtype=np.float64)
        self.label = f"f (a linear model with {len(self.c)} classes)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.V @ np.asarray(x, dtype=np.float64).ravel() + self.c


def _order_message(case: Case, got: np.ndarray, expected: np.ndarray, R: np.ndarray) -> str:
    k = int(np.argmax(got != expected))
    e, g = int(expected[k]), int(got[k])
    flat = R.ravel()
    shown = f"(R = {flat[g]:.4g})" if 0 <= g < flat.size else "(not a pixel index)"
    return (
        f"{case.header()}\nAt position {k}: expected pixel {e} (R = {flat[e]:.4g}), "
        f"got pixel {g} {shown}."
    )


@checker("06.1", "flip_order", "flip_order(relevance)")
def ex06_flip_order(flip_order: Callable) -> str:
    r"""Check Task 06.1: flat pixel indices, most relevant first, ties by lower index.

    Examples
    --------
    >>> ex06_flip_order(lambda R: np.argsort(-R.ravel(), kind="stable")).passed
    True
    >>> print(ex06_flip_order(lambda R: np.argsort(R.ravel())).message.splitlines()[-1][:52])
    Likely mistake: you sorted the least relevant pixels
    """
    rng = np.random.default_rng(61)
    cases = numbered(
        [
            Case("a random 3×4 heatmap", (rng.normal(size=(3, 4)),), ("relevance",)),
            Case(
                "ties: several pixels with the same relevance",
                (np.array([[0.0, 0.5, 0.0], [0.5, -1.0, 0.0], [0.2, 0.0, 0.5]]),),
                ("relevance",),
            ),
            Case(
                "a 2×5 heatmap, mostly negative", (rng.normal(-1.0, 1.0, (2, 5)),), ("relevance",)
            ),
        ],
        held_out=[
            Case(
                "a 1×6 heatmap with ties at the top",
                (np.array([[0.3, 0.9, -0.2, 0.9, 0.0, 0.3]]),),
                ("relevance",),
            )
        ],
    )
    for case in cases:
        (R,) = case.args
        flat = R.ravel()
        expected = ref.flip_order(R)
        got = as_array(call(flip_order, case), case, "an array of pixel indices")
        if got.shape == expected.shape and np.array_equal(got, expected):
            continue
        variants = [
            (
                "you sorted the least relevant pixels first; pixel flipping removes the most "
                "relevant first: sort by −R.",
                lambda flat=flat: np.argsort(flat, kind="stable"),
            ),
            (
                "reversing an ascending sort ([::-1]) also reverses the order of ties. Sort "
                "by −R with a stable sort: np.argsort(-R.ravel(), kind='stable').",
                lambda flat=flat: np.argsort(flat, kind="stable")[::-1],
            ),
            (
                "you sorted by |R|. Negative relevance speaks against the class; the most "
                "relevant pixel has the largest R, not the largest |R|.",
                lambda flat=flat: np.argsort(-np.abs(flat), kind="stable"),
            ),
            (
                "you returned the sorted relevance values; return the pixel indices "
                "(np.argsort gives them).",
                lambda flat=flat: np.sort(flat)[::-1],
            ),
            (
                "you sorted each row on its own. Flatten first, R.ravel(), and sort all "
                "pixels together; return flat indices (row * width + column).",
                lambda R=R: np.argsort(-R, axis=-1, kind="stable"),
            ),
        ]
        if got.shape != expected.shape:
            diagnosis = diagnose(got, variants)
            raise Failure(
                f"{case.header()}\nExpected {expected.size} flat pixel indices, shape "
                f"{expected.shape}, got shape {got.shape}."
                + (f"\nLikely mistake: {diagnosis}" if diagnosis else "")
            )
        text = _order_message(case, got, expected, R)
        diagnosis = diagnose(got, variants)
        if diagnosis:
            text += f"\nLikely mistake: {diagnosis}"
        elif np.array_equal(np.sort(got), np.arange(flat.size)) and np.allclose(
            flat[got.astype(int)], flat[expected]
        ):
            text += (
                "\nYour order is right up to ties: pixels with equal relevance must come in "
                "the order of their flat index. Use a stable sort: "
                "np.argsort(-R.ravel(), kind='stable')."
            )
        else:
            text += "\nReturn np.argsort of −R.ravel(): index 0 is the most relevant pixel."
        raise Failure(text)
    return (
        f"All {len(cases)} cases agree: most relevant first, ties in the order of the flat "
        "index, so that every run removes the pixels in the same order."
    )


def _model(seed: int, n: int, classes: int = 3) -> LinearModel:
    rng = np.random.default_rng(seed)
    return LinearModel(rng.normal(size=(classes, n)), rng.normal(size=classes))


def _curve(
    f: Callable,
    x: np.ndarray,
    order: np.ndarray,
    target: int,
    per_step: int,
    baseline: float,
    *,
    cumulative: bool = True,
    first: bool = True,
) -> np.ndarray:
    """A pixel-flipping curve for a given order, with switches for typical mistakes."""
    scores = [f(x)[target]] if first else []
    image = x.copy()
    for k in range(1, x.size // per_step + 1):
        if not cumulative:
            image = x.copy()
        image.flat[order[(k - 1) * per_step : k * per_step]] = baseline
        scores.append(f(image)[target])
    return np.array(scores)


@checker("06.2", "pixel_flipping", "pixel_flipping(f, x, relevance, target, per_step, baseline)")
def ex06_pixel_flipping(pixel_flipping: Callable) -> str:
    r"""Check Task 06.2: the scores :math:`f_c(x^{(k)})`, k = 0 … K, K = n // per_step.

    Examples
    --------
    >>> def pixel_flipping(f, x, relevance, target, per_step=1, baseline=0.0):
    ...     order = np.argsort(-relevance.ravel(), kind="stable")
    ...     x = x.copy()
    ...     scores = [f(x)[target]]
    ...     for k in range(x.size // per_step):
    ...         x.flat[order[k * per_step : (k + 1) * per_step]] = baseline
    ...         scores.append(f(x)[target])
    ...     return np.array(scores)
    >>> ex06_pixel_flipping(pixel_flipping).passed
    True
    """
    names = ("f", "x", "relevance", "target", "per_step", "baseline")
    rng = np.random.default_rng(62)
    x1, x2, x3 = rng.uniform(0, 1, (4, 4)), rng.uniform(0, 1, (4, 4)), rng.uniform(0, 1, (3, 4))
    f1, f2, f3 = _model(1, 16), _model(2, 16), _model(3, 12)
    weak = int(np.argmin(f2(x2)))
    ties = np.array([[0.5, 0.0, 0.5, 0.1], [0.0, 0.5, -0.2, 0.0], [0.1, 0.1, 0.0, 0.5]])
    cases = numbered(
        [
            Case(
                "a 4×4 image, one pixel per step",
                (f1, x1, rng.normal(size=(4, 4)), 1, 1, 0.0),
                names,
            ),
            Case(
                "4 pixels per step, removed pixels set to 0.5",
                (f1, x1, rng.normal(size=(4, 4)), 2, 4, 0.5),
                names,
            ),
            Case(
                f"the target {weak} is not the predicted class",
                (f2, x2, rng.normal(size=(4, 4)), weak, 2, 0.0),
                names,
            ),
            Case("ties in the relevance, 3 pixels per step", (f3, x3, ties, 0, 3, 0.0), names),
        ],
        held_out=[
            Case(
                "5 pixels per step (2 of the 12 pixels stay), baseline 1",
                (f3, x3, np.random.default_rng(161).normal(size=(3, 4)), 2, 5, 1.0),
                names,
            )
        ],
    )
    for case in cases:
        f, x, R, target, per_step, baseline = case.args
        order = ref.flip_order(R)
        predicted = int(np.argmax(f(x)))
        compare(
            as_array(call(pixel_flipping, case), case, "the scores, shape (K + 1,)"),
            ref.pixel_flipping_curve(f, x, R, target, per_step, baseline),
            case,
            what="the scores f_c(x⁽ᵏ⁾)",
            label=lambda index: f"step k={index[0]}",
            shape_hint=" = (K + 1,) with K = n_pixels // per_step",
            variants=[
                (
                    "you removed the least relevant pixels first; pixel flipping removes the "
                    "most relevant first (Task 06.1).",
                    lambda f=f, x=x, R=R, t=target, p=per_step, b=baseline: _curve(
                        f, x, np.argsort(R.ravel(), kind="stable"), t, p, b
                    ),
                ),
                (
                    "the curve starts with the unmodified image, k = 0: return K + 1 scores, "
                    "f_c(x⁽⁰⁾) first.",
                    lambda f=f, x=x, o=order, t=target, p=per_step, b=baseline: _curve(
                        f, x, o, t, p, b, first=False
                    ),
                ),
                (
                    "removal is cumulative: x⁽ᵏ⁾ lacks the pixels of steps 1 … k, not only "
                    "those of step k.",
                    lambda f=f, x=x, o=order, t=target, p=per_step, b=baseline: _curve(
                        f, x, o, t, p, b, cumulative=False
                    ),
                ),
                (
                    "you tracked the predicted class; track the score of the given target.",
                    lambda f=f, x=x, o=order, t=predicted, p=per_step, b=baseline: _curve(
                        f, x, o, t, p, b
                    ),
                ),
                (
                    "you set removed pixels to 0; set them to `baseline`.",
                    lambda f=f, x=x, o=order, t=target, p=per_step: _curve(f, x, o, t, p, 0.0),
                ),
                (
                    "you removed one pixel per step; remove `per_step` pixels per step.",
                    lambda f=f, x=x, o=order, t=target, b=baseline: _curve(f, x, o, t, 1, b),
                ),
            ],
            hint="scores[k] = f(x⁽ᵏ⁾)[target], where x⁽ᵏ⁾ has its k·per_step most relevant "
            "pixels set to baseline.",
        )
    return (
        f"All {len(cases)} cases agree. The curve starts at f_c(x) and falls as the evidence "
        "is removed; the faster it falls, the better the explanation found what the model uses."
    )


@checker("06.3", "aopc", "aopc(scores)")
def ex06_aopc(aopc: Callable) -> str:
    r"""Check Task 06.3: AOPC of one curve (K+1,) or of a batch of curves (N, K+1).

    Examples
    --------
    >>> ex06_aopc(lambda s: (s[..., :1] - s).mean(axis=-1)).passed
    True
    """
    rng = np.random.default_rng(63)
    batch = np.cumsum(-rng.uniform(0, 1, (3, 5)), axis=1) + 2.0
    cases = numbered(
        [
            Case("a falling curve", (np.array([3.0, 1.5, 0.5, 0.2, 0.0]),), ("scores",)),
            Case("a curve that rises at first", (np.array([1.0, 1.2, 0.8, 1.5]),), ("scores",)),
            Case("a batch of 3 curves, shape (3, 5)", (batch,), ("scores",)),
        ],
        held_out=[Case("a flat curve of 6 steps", (np.full(6, 0.75),), ("scores",))],
    )
    for case in cases:
        (s,) = case.args
        drop = s[..., :1] - s
        compare(
            as_array(call(aopc, case), case, "the AOPC"),
            ref.aopc(s),
            case,
            what="the AOPC",
            label=entry("curve n"),
            shape_hint=" (one number per curve)",
            variants=[
                (
                    "you divided by K; the average runs over the K + 1 steps k = 0 … K (the "
                    "k = 0 term is 0, but it counts).",
                    lambda drop=drop: drop.sum(axis=-1) / (drop.shape[-1] - 1),
                ),
                (
                    "AOPC averages the drop f(x⁽⁰⁾) − f(x⁽ᵏ⁾): it is positive when the score "
                    "falls. You computed f(x⁽ᵏ⁾) − f(x⁽⁰⁾).",
                    lambda drop=drop: -drop.mean(axis=-1),
                ),
                (
                    "you averaged the scores; average the drop from the first score, "
                    "f(x⁽⁰⁾) − f(x⁽ᵏ⁾).",
                    lambda s=s: s.mean(axis=-1),
                ),
                (
                    "you subtracted the first curve's first score from every curve; each curve "
                    "starts from its own score: scores[..., :1] − scores.",
                    lambda s=s: (s.flat[0] - s).mean(axis=-1),
                ),
                (
                    "you averaged over the curves (axis 0); average over the steps, the last "
                    "axis: one AOPC per curve.",
                    lambda drop=drop: drop.mean(axis=0),
                ),
            ],
            hint="AOPC = mean over k = 0 … K of (scores[0] − scores[k]), per curve.",
        )
    return (
        f"All {len(cases)} cases agree. Compare AOPC between explanations of the same model: "
        "removing pixels in a random order gives the floor an explanation must beat."
    )
