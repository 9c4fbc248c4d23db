r"""Exercise 07: two steps of Spectral Relevance Analysis (SpRAy, Lapuschkin et al. 2019).

Before heatmaps are compared, each is scaled to :math:`h_n = R_n / \max_d |R_{n,d}|`, so
that clusters form by *where* the relevance lies, not by how large the logit was. The
number of clusters is read off the eigenvalues :math:`\lambda_1 \le \lambda_2 \le \dots` of
the graph Laplacian: the k ≥ 2 with the largest **eigengap** :math:`\lambda_{k+1} - \lambda_k`.
The package's ``lrp_tutor.analysis.spray`` does both (and the rest) on a relevance store.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import reference as ref
from ._core import Case, Failure, as_array, call, checker, compare, diagnose, entry, numbered

__all__ = ["ex07_normalize", "ex07_eigengap"]


@checker("07.1", "normalize_heatmaps", "normalize_heatmaps(relevance)")
def ex07_normalize(normalize_heatmaps: Callable) -> str:
    r"""Check Task 07.1: :math:`h_n = R_n / \max_d |R_{n,d}|`, an all-zero heatmap stays 0.

    Examples
    --------
    >>> def normalize_heatmaps(R):
    ...     largest = np.abs(R).max(axis=(1, 2), keepdims=True)
    ...     return np.divide(R, largest, out=np.zeros_like(R), where=largest > 0)
    >>> ex07_normalize(normalize_heatmaps).passed
    True
    """
    rng = np.random.default_rng(71)
    negative = rng.normal(size=(2, 3, 3))
    negative[0, 1, 1] = -5.0  # the largest |R| is negative
    with_zero = rng.normal(size=(3, 2, 4))
    with_zero[1] = 0.0
    held = np.zeros((2, 2, 5))
    held[0] = -np.abs(np.random.default_rng(171).normal(size=(2, 5)))  # only negative values
    held[1, 1, 3] = 0.3  # a single relevant pixel
    cases = numbered(
        [
            Case("three random 4×4 heatmaps", (rng.normal(size=(3, 4, 4)),), ("relevance",)),
            Case("the largest |R| is a negative value", (negative,), ("relevance",)),
            Case("heatmap n=1 is all zero", (with_zero,), ("relevance",)),
        ],
        held_out=[
            Case(
                "two 2×5 heatmaps: n=0 only negative, n=1 a single relevant pixel",
                (held,),
                ("relevance",),
            )
        ],
    )
    for case in cases:
        (R,) = case.args
        compare(
            as_array(call(normalize_heatmaps, case), case, "the scaled heatmaps"),
            ref.normalized_heatmaps(R),
            case,
            what="h, shape (N, H, W)",
            label=entry("n", "row", "column"),
            shape_hint=" (one scaled heatmap per input heatmap)",
            nonfinite=(
                "An all-zero heatmap has max |R| = 0, and 0/0 is NaN: keep it at zero "
                "(np.divide(R, m, out=np.zeros_like(R), where=m > 0))."
            ),
            variants=[
                (
                    "you divided by the largest R, not the largest |R|: a heatmap whose "
                    "strongest value is negative must be scaled by that value's size.",
                    lambda R=R: R / R.max(axis=(1, 2), keepdims=True),
                ),
                (
                    "you divided every heatmap by one maximum over all of them; scale each "
                    "heatmap by its own (axis=(1, 2), keepdims=True).",
                    lambda R=R: R / np.abs(R).max(),
                ),
                (
                    "you divided by the sum of each heatmap; SpRAy scales by the largest "
                    "absolute value, so that the sign pattern stays and the peak is ±1.",
                    lambda R=R: R / R.sum(axis=(1, 2), keepdims=True),
                ),
                (
                    "you returned |R| scaled; keep the sign: negative relevance is evidence "
                    "against the class, and the clusters should see it.",
                    lambda R=R: np.abs(R) / np.abs(R).max(axis=(1, 2), keepdims=True),
                ),
            ],
            hint="Divide each heatmap R[n] by np.abs(R[n]).max().",
        )
    return (
        f"All {len(cases)} cases agree: each heatmap peaks at ±1 with its sign pattern kept, "
        "and an empty heatmap stays empty."
    )


@checker("07.2", "eigengap", "eigengap(eigenvalues)")
def ex07_eigengap(eigengap: Callable) -> str:
    r"""Check Task 07.2: the k ≥ 2 with the largest :math:`\lambda_{k+1} - \lambda_k`.

    Examples
    --------
    >>> ex07_eigengap(lambda lam: int(np.argmax(np.diff(lam)[1:])) + 2).passed
    True
    """
    cases = numbered(
        [
            Case("three groups", (np.array([0.0, 0.01, 0.02, 0.6, 0.65, 0.7]),), ("eigenvalues",)),
            Case("two groups", (np.array([0.0, 0.0, 0.5, 0.55, 0.9]),), ("eigenvalues",)),
            Case(
                "the largest gap of all is after λ_1 (k = 1 does not count)",
                (np.array([0.0, 0.45, 0.5, 0.52, 0.53, 0.8]),),
                ("eigenvalues",),
            ),
        ],
        held_out=[
            Case(
                "four groups in eight eigenvalues",
                (np.array([0.0, 0.02, 0.03, 0.05, 0.7, 0.72, 0.75, 0.9]),),
                ("eigenvalues",),
            )
        ],
    )
    for case in cases:
        (lam,) = case.args
        expected = ref.eigengap(lam)
        got = as_array(call(eigengap, case), case, "one number, the suggested k")
        if got.shape == () and float(got) == expected:
            continue
        gaps = np.diff(lam)
        variants = [
            (
                "you returned the 0-based position of the gap; k counts eigenvalues from 1, "
                "and the gap λ_{k+1} − λ_k belongs to k.",
                lambda gaps=gaps: int(np.argmax(gaps[1:])) + 1,
            ),
            (
                "you let k = 1 compete: the gap after λ_1 says the graph is not one piece, "
                "not how many clusters to make. Search k ≥ 2 only.",
                lambda gaps=gaps: int(np.argmax(gaps)) + 1,
            ),
            (
                "you returned the size of the largest gap; return k, the number of clusters.",
                lambda gaps=gaps: float(np.max(gaps[1:])),
            ),
            (
                "you returned k + 1, the eigenvalue after the gap; k is the one before it.",
                lambda gaps=gaps: int(np.argmax(gaps[1:])) + 3,
            ),
        ]
        diagnosis = diagnose(got, variants)
        shown = got.tolist() if got.size < 5 else f"an array of shape {got.shape}"
        raise Failure(
            f"{case.header()}\nExpected k = {expected}, got {shown}."
            + (f"\nLikely mistake: {diagnosis}" if diagnosis else "")
            + ("" if diagnosis else "\nCompute the gaps np.diff(eigenvalues) and search k ≥ 2.")
        )
    return f"All {len(cases)} cases agree: k is where λ_(k+1) − λ_k is largest, for k ≥ 2."
