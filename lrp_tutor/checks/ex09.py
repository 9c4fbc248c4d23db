r"""Exercise 09: AttnLRP's rules for attention — the uniform product rule and the softmax rule.

A product of two activations :math:`z = a\,b` (attention's :math:`QK^\top` and :math:`AV`)
gives each factor half of each contribution :math:`a_{ik} b_{kj}` (Achtibat et al. 2024,
*AttnLRP*, Prop. 3.3), with :math:`s = R / \mathrm{stab}(z)`:

.. math::

    R_a = \tfrac12\, a \odot (s\, b^\top), \qquad R_b = \tfrac12\, b \odot (a^\top s) .

Softmax :math:`s_j = e^{x_j} / \sum_k e^{x_k}` takes the rule (Prop. 3.1)

.. math::

    R_i = x_i \Big(R_i - s_i \sum_j R_j\Big) ,

which leaves :math:`\sum_j R_j (1 - x_j + \bar x)` out (absorbed, booked as a bias); a
masked score :math:`x_i = -\infty` receives nothing. Task 09.3 puts both together for one
attention head, :math:`O = \mathrm{softmax}(QK^\top)\,V`, as :func:`lrp_tutor.explain` with
``attention="attn_lrp"`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._core import Case, Failure, as_array, as_pair, call, checker, compare, entry, numbered

__all__ = ["ex09_uniform_product", "ex09_softmax_rule", "ex09_attention_relevance"]


def _sign(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1.0, -1.0)


def _safe(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    zero = denominator == 0
    return np.where(zero, 0.0, numerator / np.where(zero, 1.0, denominator))


# --------------------------------------------------------------------------------------
# The references (float64 numpy).


def uniform_product(
    a: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    epsilon: float,
    *,
    share: float = 0.5,
    stab: Callable[[np.ndarray], np.ndarray] | None = None,
    transpose: bool = True,
    divide: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The uniform rule for :math:`z = a\,b`: ``(R_a, R_b)`` (keywords switch in mistakes).

    >>> a, b = np.array([[2.0]]), np.array([[3.0]])
    >>> uniform_product(a, b, np.array([[6.0]]), 0.0)
    (array([[3.]]), array([[3.]]))
    """
    z = a @ b
    d = z + epsilon * _sign(z) if stab is None else stab(z)
    s = _safe(r, d) if divide else r
    if transpose:
        return share * a * (s @ b.T), share * b * (a.T @ s)
    return share * a * (s @ b), share * b * (a @ s)


def _softmax(x: np.ndarray) -> np.ndarray:
    top = np.max(np.where(np.isfinite(x), x, -np.inf), axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(x - top)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_rule(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    r"""AttnLRP's softmax rule along the last axis, :math:`R_i = x_i (R_i - s_i \sum_j R_j)`;
    masked scores (:math:`-\infty`) receive nothing.

    >>> softmax_rule(np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    array([0., 0.])
    """
    s = _softmax(x)
    with np.errstate(invalid="ignore"):
        out = x * (r - s * r.sum(axis=-1, keepdims=True))
    return np.where(np.isfinite(x), out, 0.0)


def _epsilon_rule(x: np.ndarray, W: np.ndarray, r: np.ndarray, epsilon: float) -> np.ndarray:
    z = x @ W
    return x * (_safe(r, z + epsilon * _sign(z)) @ W.T)


def attention_relevance(
    X: np.ndarray,
    Wq: np.ndarray,
    Wk: np.ndarray,
    Wv: np.ndarray,
    R_out: np.ndarray,
    epsilon: float,
    *,
    mistake: str = "",
) -> np.ndarray:
    r"""The relevance of the tokens ``X`` (T, d) of one head :math:`O = \mathrm{softmax}(QK^\top)V`
    whose output ``O`` received ``R_out`` (T, d_v); ε-rule for the three projections."""
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = Q @ K.T
    A = _softmax(S)
    share = 1.0 if mistake == "full" else 0.5
    if mistake == "cp":  # A held constant: O = A V is a linear map of V
        O = A @ V
        R_V = V * (A.T @ _safe(R_out, O + epsilon * _sign(O)))
        return _epsilon_rule(X, Wv, R_V, epsilon)
    R_A, R_V = uniform_product(A, V, R_out, epsilon, share=share)
    R_S = R_A if mistake == "no softmax" else softmax_rule(S, R_A)
    R_Q, R_Kt = uniform_product(Q, K.T, R_S, epsilon, share=share)
    R_K = R_Kt if mistake == "K not transposed" else R_Kt.T
    paths = {
        "q": _epsilon_rule(X, Wq, R_Q, epsilon),
        "k": _epsilon_rule(X, Wk, R_K, epsilon),
        "v": _epsilon_rule(X, Wv, R_V, epsilon),
    }
    if mistake == "values only":
        return paths["v"]
    return paths["q"] + paths["k"] + paths["v"]


# --------------------------------------------------------------------------------------
# Task 09.1: the uniform rule.

_PRODUCT_NAMES = ("a", "b", "r", "epsilon")
_PRODUCT_SHAPES = (
    "Check the transposes: a has shape (n, k), b (k, m), r (n, m) like z = a @ b. "
    "Then s = r / stab(z) is (n, m), s @ b.T is (n, k) like a, and a.T @ s is (k, m) like b."
)
_FULL = (
    "you gave each operand the full relevance (factor 1 instead of ½): then Σ R_a + Σ R_b "
    "= 2 Σ R, the product is counted twice — that is gradient × input. The uniform rule "
    "splits each contribution a_ik·b_kj in half: R_a = ½ a ⊙ (s bᵀ), R_b = ½ b ⊙ (aᵀ s)."
)


def _product_case(seed: int, n: int, k: int, m: int, epsilon: float) -> tuple:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, k)), rng.normal(size=(k, m))
    return a, b, rng.uniform(-1.0, 1.5, (n, m)), epsilon


def _zero_product() -> tuple:
    """z = a @ b with z_00 = 0 exactly: with ε = 0 it passes nothing on."""
    a = np.array([[1.0, -1.0], [2.0, 0.5]])
    b = np.array([[1.0, 2.0, -1.0], [1.0, 0.5, 3.0]])
    return a, b, np.array([[1.0, -0.5, 2.0], [0.25, 1.0, -1.0]]), 0.0


def _product_variants(a, b, r, epsilon, which: int) -> list:
    def pick(**kwargs):
        return lambda: uniform_product(a, b, r, epsilon, **kwargs)[which]

    return [
        (_FULL, pick(share=1.0)),
        (
            "you ignored ε: the denominator is stab(z) = z + ε·sign(z), not z.",
            pick(stab=lambda z: z),
        ),
        (
            "you added ε without its sign: stab(z) = z + ε·sign(z), sign(0) = +1.",
            pick(stab=lambda z: z + epsilon),
        ),
        (
            "you multiplied ε by z: stab(z) = z + ε·sign(z), not z + ε·z.",
            pick(stab=lambda z: z + epsilon * z),
        ),
        (
            "wrong transposes: with z = a @ b, R_a = ½ a ⊙ (s @ b.T) and R_b = ½ b ⊙ (a.T @ s).",
            pick(transpose=False),
        ),
        (
            "you used r where s = r / stab(z) belongs: divide by the stabilised product first.",
            pick(divide=False),
        ),
    ]


@checker("09.1", "uniform_product", "uniform_product(a, b, r, epsilon)")
def ex09_uniform_product(uniform_product_fn: Callable) -> str:
    r"""Check Task 09.1: the uniform rule for :math:`z = a\,b`, returning ``(R_a, R_b)``.

    Examples
    --------
    >>> def uniform_product(a, b, r, epsilon):
    ...     z = a @ b
    ...     d = z + epsilon * np.where(z >= 0, 1.0, -1.0)
    ...     s = np.divide(r, d, out=np.zeros_like(d), where=d != 0)
    ...     return 0.5 * a * (s @ b.T), 0.5 * b * (a.T @ s)
    >>> ex09_uniform_product(uniform_product).passed
    True
    >>> full = lambda a, b, r, e: tuple(2 * v for v in uniform_product(a, b, r, e))
    >>> "factor 1 instead of ½" in ex09_uniform_product(full).message
    True
    """
    cases = numbered(
        [
            Case(
                "square 3×3 factors (catches missing transposes), ε = 0.01",
                _product_case(92, 3, 3, 3, 0.01),
                _PRODUCT_NAMES,
            ),
            Case("a 2×3 times a 3×2, ε = 0.1", _product_case(91, 2, 3, 2, 0.1), _PRODUCT_NAMES),
            Case(
                "ε = 0 and z_00 = 0 exactly: it passes nothing on (0/0 := 0)",
                _zero_product(),
                _PRODUCT_NAMES,
            ),
            Case("ε = 0.5, a 4×2 times a 2×4", _product_case(93, 4, 2, 4, 0.5), _PRODUCT_NAMES),
        ],
        held_out=[
            Case("square 4×4 factors, ε = 0.2", _product_case(901, 4, 4, 4, 0.2), _PRODUCT_NAMES),
            Case("a 5×3 times a 3×2, ε = 0", _product_case(902, 5, 3, 2, 0.0), _PRODUCT_NAMES),
        ],
    )
    for case in cases:
        a, b, r, epsilon = case.args
        r_a, r_b = uniform_product(a, b, r, epsilon)
        got_a, got_b = as_pair(call(uniform_product_fn, case, _PRODUCT_SHAPES), case, "(R_a, R_b)")
        got_a = as_array(got_a, case, "R_a, shaped like a")
        got_b = as_array(got_b, case, "R_b, shaped like b")
        swapped = (
            got_a.shape == b.shape
            and got_b.shape == a.shape
            and (a.shape != b.shape or not np.allclose(got_a, r_a))
            and np.allclose(got_a, r_b)
            and np.allclose(got_b, r_a)
        )
        if swapped or (got_a.shape == b.shape != a.shape and got_b.shape == a.shape):
            raise Failure(f"{case.header()}\nYou returned (R_b, R_a); return (R_a, R_b).")
        nonfinite = (
            "With ε = 0 a product entry z_ij = 0 passes nothing on (0/0 := 0): "
            "np.divide(r, d, out=np.zeros_like(d), where=d != 0)."
        )
        hint = "R_a = ½ a ⊙ (s @ b.T), R_b = ½ b ⊙ (a.T @ s), s = r / (z + ε·sign(z))."
        compare(
            got_a,
            r_a,
            case,
            what="R_a",
            label=entry("i", "k"),
            shape_hint=" (the shape of a)",
            variants=_product_variants(a, b, r, epsilon, 0),
            nonfinite=nonfinite,
            hint=hint,
        )
        compare(
            got_b,
            r_b,
            case,
            what="R_b",
            label=entry("k", "j"),
            shape_hint=" (the shape of b)",
            variants=_product_variants(a, b, r, epsilon, 1),
            nonfinite=nonfinite,
            hint=hint,
        )
    a, b, r, epsilon = cases[2].args
    r_a, r_b = uniform_product(a, b, r, epsilon)
    return (
        f"All {len(cases)} cases agree with AttnLRP's uniform rule. In case 3 (ε = 0) "
        f"Σ R_a = {r_a.sum():.4f} and Σ R_b = {r_b.sum():.4f} add up to {r_a.sum() + r_b.sum():.4f}"
        f", Σ R = {r.sum():.4f} less what the entry with z = 0 could not pass on: each factor "
        "got exactly half."
    )


# --------------------------------------------------------------------------------------
# Task 09.2: the softmax rule.

_SOFTMAX_NAMES = ("x", "r")
_SOFTMAX_SHAPES = "x and r have the same shape; softmax runs along the last axis (axis=-1)."
_ABSORBED = (
    "The rule is R_i = x_i (R_i − s_i Σ_j R_j); what it leaves out, Σ_j R_j (1 − x_j + x̄), "
    "is absorbed like a bias (the ledger books it)."
)


def _softmax_case(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> tuple:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=shape), rng.uniform(-0.5, 1.5, shape)


def _causal_case() -> tuple:
    x, r = _softmax_case(95, (3, 3))
    x = np.where(np.triu(np.ones((3, 3)), 1) == 1, -np.inf, x)
    return x, np.where(np.isfinite(x), r, 0.0)


def _softmax_variants(x: np.ndarray, r: np.ndarray) -> list:
    s = _softmax(x)
    finite = np.isfinite(x)

    def masked(v):
        return lambda: np.where(finite, v(), 0.0)

    variants = [
        (
            "you returned r unchanged: you forgot softmax's absorbed part. " + _ABSORBED,
            lambda: r,
        ),
        (
            "you returned x ⊙ r without the − s_i Σ_j R_j term. " + _ABSORBED,
            masked(lambda: x * r),
        ),
        (
            "you forgot to multiply by x: R_i = x_i (R_i − s_i Σ_j R_j).",
            masked(lambda: r - s * r.sum(-1, keepdims=True)),
        ),
        (
            "you used s_i R_i where s_i Σ_j R_j belongs: the sum runs over all outputs j.",
            masked(lambda: x * (r - s * r)),
        ),
        (
            "you rescaled R_x so that it adds up to Σ R. The rule does not conserve: what it "
            "leaves out is absorbed (booked as a bias), never spread over the inputs.",
            lambda: (
                softmax_rule(x, r)
                * _safe(r.sum(-1, keepdims=True), softmax_rule(x, r).sum(-1, keepdims=True))
            ),
        ),
    ]
    if x.ndim == 2:
        variants.append(
            (
                "you took softmax or Σ_j over the wrong axis: each row is one softmax (axis=-1).",
                masked(
                    lambda: (
                        x * (r - _softmax(x.T).T * np.where(finite, r, 0.0).sum(0, keepdims=True))
                    )
                ),
            )
        )
        variants.append(
            (
                "you summed R over the whole array: Σ_j runs over one row (axis=-1, keepdims).",
                masked(lambda: x * (r - s * r.sum())),
            )
        )
    return variants


@checker("09.2", "softmax_rule", "softmax_rule(x, r)")
def ex09_softmax_rule(softmax_rule_fn: Callable) -> str:
    r"""Check Task 09.2: :math:`R_i = x_i (R_i - s_i \sum_j R_j)` along the last axis.

    Examples
    --------
    >>> def softmax_rule(x, r):
    ...     e = np.exp(x - x.max(axis=-1, keepdims=True))
    ...     s = e / e.sum(axis=-1, keepdims=True)
    ...     out = x * (r - s * r.sum(axis=-1, keepdims=True))
    ...     return np.where(np.isfinite(x), out, 0.0)
    >>> ex09_softmax_rule(softmax_rule).passed
    True
    >>> "forgot softmax's absorbed part" in ex09_softmax_rule(lambda x, r: r).message
    True
    """
    cases = numbered(
        [
            Case("one row of 4 scores", _softmax_case(94, (4,)), _SOFTMAX_NAMES),
            Case(
                "3 rows of attention scores, one softmax per row",
                _softmax_case(96, (3, 4)),
                _SOFTMAX_NAMES,
            ),
            Case(
                "a causal mask: −inf above the diagonal receives nothing",
                _causal_case(),
                _SOFTMAX_NAMES,
            ),
            Case(
                "large scores (exp overflows unless you subtract the maximum)",
                _softmax_case(97, (2, 3), scale=400.0),
                _SOFTMAX_NAMES,
            ),
        ],
        held_out=[
            Case("4 rows of 5 scores", _softmax_case(902, (4, 5), scale=2.0), _SOFTMAX_NAMES),
        ],
    )
    for case in cases:
        x, r = case.args
        got = as_array(call(softmax_rule_fn, case, _SOFTMAX_SHAPES), case, "R_x, shaped like x")
        compare(
            got,
            softmax_rule(x, r),
            case,
            what="R_x",
            label=entry("row", "i") if x.ndim == 2 else entry("i"),
            shape_hint=" (the shape of x)",
            variants=_softmax_variants(x, r),
            nonfinite="Two usual causes: exp overflows for large scores — subtract the "
            "row's maximum first (softmax does not change); and a masked score x_i = −inf "
            "gives −inf · 0 = NaN — it receives nothing: np.where(np.isfinite(x), R_x, 0.0).",
            hint="s = softmax(x, axis=-1); R_x = x * (r − s * r.sum(axis=-1, keepdims=True)).",
        )
    x, r = cases[0].args
    r_x = softmax_rule(x, r)
    return (
        f"All {len(cases)} cases agree with AttnLRP's softmax rule. In case 1 the outputs "
        f"received Σ R = {r.sum():.4f} and the scores get Σ R_x = {r_x.sum():.4f}: the "
        f"expansion's constant term absorbed {r.sum() - r_x.sum():.4f}."
    )


# --------------------------------------------------------------------------------------
# Task 09.3: one attention head.

_HEAD_NAMES = ("X", "Wq", "Wk", "Wv", "R_out", "epsilon")
_HEAD_SHAPES = (
    "X is (T, d): T tokens. Q = X @ Wq, K = X @ Wk, V = X @ Wv; S = Q @ K.T is (T, T); "
    "A = softmax(S, axis=-1); O = A @ V has the shape of R_out. The relevance of K.T (the "
    "second factor of S) has the shape of K.T: transpose it back before the K projection."
)


def _head_case(seed: int, T: int, d: int, d_v: int, epsilon: float) -> tuple:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, d))
    Wq, Wk = rng.normal(scale=0.7, size=(d, d)), rng.normal(scale=0.7, size=(d, d))
    Wv = rng.normal(size=(d, d_v))
    return X, Wq, Wk, Wv, rng.uniform(-0.5, 1.5, (T, d_v)), epsilon


@checker("09.3", "attention_relevance", "attention_relevance(X, Wq, Wk, Wv, R_out, epsilon)")
def ex09_attention_relevance(attention_relevance_fn: Callable) -> str:
    r"""Check Task 09.3: one head :math:`O = \mathrm{softmax}(QK^\top)\,V` explained with
    AttnLRP (the ε-rule for the projections), returning the relevance of ``X``.

    Examples
    --------
    >>> ex09_attention_relevance(attention_relevance).passed
    True
    >>> cp = lambda *args: attention_relevance(*args, mistake="cp")
    >>> "CP-LRP" in ex09_attention_relevance(cp).message
    True
    """
    cases = numbered(
        [
            Case("3 tokens of width 3 (square), ε = 0", _head_case(990, 3, 3, 3, 0.0), _HEAD_NAMES),
            Case("3 tokens of width 2, ε = 0.01", _head_case(98, 3, 2, 2, 0.01), _HEAD_NAMES),
            Case(
                "4 tokens of width 3, values of width 2, ε = 0.1",
                _head_case(99, 4, 3, 2, 0.1),
                _HEAD_NAMES,
            ),
        ],
        held_out=[
            Case("5 tokens of width 4, ε = 0.05", _head_case(903, 5, 4, 3, 0.05), _HEAD_NAMES)
        ],
    )
    for case in cases:
        args = case.args
        got = as_array(call(attention_relevance_fn, case, _HEAD_SHAPES), case, "R_X, shape (T, d)")

        def wrong(mistake: str, args: tuple = args) -> Callable[[], np.ndarray]:
            return lambda: attention_relevance(*args, mistake=mistake)

        compare(
            got,
            attention_relevance(*args),
            case,
            what="R_X",
            label=entry("token t", "feature i"),
            shape_hint=" = (T, d)",
            variants=[
                (
                    "you held the attention weights A constant and sent all relevance "
                    "through the values: that is CP-LRP. AttnLRP splits A @ V with the "
                    "uniform rule (Task 09.1) and sends R_A through the softmax rule "
                    "(Task 09.2) into Q and K.",
                    wrong("cp"),
                ),
                (
                    "you returned only the value path. Q, K and V are all computed from X: "
                    "add the relevance of the three paths.",
                    wrong("values only"),
                ),
                ("in a product: " + _FULL, wrong("full")),
                ("you skipped the softmax rule: R_S = softmax_rule(S, R_A).", wrong("no softmax")),
                (
                    "wrong transposes: Kᵀ is the second factor of S = Q @ K.T, so its "
                    "relevance R_Kᵀ must be transposed back before the K projection.",
                    wrong("K not transposed"),
                ),
            ],
            nonfinite="Look for a 0/0 in a product with ε = 0 (0/0 := 0).",
            hint="R_A, R_V = uniform_product(A, V, R_out, ε); R_S = softmax_rule(S, R_A); "
            "R_Q, R_Kt = uniform_product(Q, K.T, R_S, ε); then the ε-rule through each "
            "projection (R_K = R_Kt.T), and add the three.",
        )
    X, *_, R_out, _ = cases[0].args
    R_X = attention_relevance(*cases[0].args)
    return (
        f"All {len(cases)} cases agree with AttnLRP, which lt.explain computes with "
        f'attention="attn_lrp". In case 1 the head\'s output received Σ R = {R_out.sum():.4f}; '
        f"the tokens get Σ R_X = {R_X.sum():.4f}; the softmax rule (and ε, where > 0) "
        "absorbed the rest."
    )
