r"""Exercise 04: the messages of one output neuron of a convolution.

An output neuron j = (k, r, c) of a convolution (channel k, row r, column c; no padding)
sees the inputs of its **receptive field**, rows :math:`r s \ldots r s + k_h - 1` and columns
:math:`c s \ldots c s + k_w - 1` of every input channel (stride *s*). For that neuron the
convolution is a dense layer: :math:`z_{ij} = x_i w_{ij}` with the kernel ``w[k]`` as its
weights, :math:`z_j = \sum_i z_{ij} + b_k`, and the ε-rule sends
:math:`R_{i \leftarrow j} = z_{ij} / \mathrm{stab}(z_j) \cdot R_j`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..rules import Epsilon
from . import reference as ref
from ._core import Case, as_array, as_pair, call, checker, compare, entry, numbered

__all__ = ["ex04_receptive_field", "ex04_contributions", "ex04_messages", "ex04_relevance_in"]


def _image(seed: int, c_in: int, h: int, w: int, *, counting: bool = False) -> np.ndarray:
    if counting:  # 0, 1, 2, … so that a student can see which pixel is which
        return np.arange(c_in * h * w, dtype=np.float64).reshape(c_in, h, w)
    return np.random.default_rng(seed).normal(size=(c_in, h, w))


def _kernel(seed: int, c_out: int, c_in: int, kh: int, kw: int) -> tuple:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(c_out, c_in, kh, kw)), rng.normal(scale=0.5, size=c_out)


def _window(r: int, c: int, kh: int, kw: int, stride: int) -> tuple:
    return (slice(None), slice(r * stride, r * stride + kh), slice(c * stride, c * stride + kw))


_KERNEL = (
    "x is (C_in, H, W) and w is (C_out, C_in, kh, kw): the kernel of output channel k is w[k], "
    "shaped (C_in, kh, kw) like the receptive field."
)
_PATCH = entry("channel", "patch row", "patch column")
_PIXEL = entry("channel", "row", "column")


@checker("04.1", "receptive_field", "receptive_field(x, kh, kw, r, c, stride)")
def ex04_receptive_field(receptive_field: Callable) -> str:
    r"""Check Task 04.1: the receptive field of output position (r, c), shape (C_in, kh, kw).

    Examples
    --------
    >>> def receptive_field(x, kh, kw, r, c, stride):
    ...     return x[:, r * stride : r * stride + kh, c * stride : c * stride + kw]
    >>> ex04_receptive_field(receptive_field).passed
    True
    """
    names = ("x", "kh", "kw", "r", "c", "stride")
    cases = numbered(
        [
            Case("stride 1, 3×3 kernel", (_image(0, 2, 5, 5, counting=True), 3, 3, 1, 2, 1), names),
            Case("stride 2, 3×3 kernel", (_image(0, 2, 7, 7, counting=True), 3, 3, 2, 1, 2), names),
            Case(
                "stride 2, a 2×3 kernel (kh ≠ kw)",
                (_image(0, 1, 6, 7, counting=True), 2, 3, 1, 2, 2),
                names,
            ),
            Case(
                "the last output position, 3 channels",
                (_image(0, 3, 6, 6, counting=True), 3, 3, 3, 3, 1),
                names,
            ),
        ],
        held_out=[
            Case(
                "stride 3, a 3×2 kernel, 2 channels",
                (_image(0, 2, 9, 8, counting=True), 3, 2, 2, 1, 3),
                names,
            )
        ],
    )
    for case in cases:
        x, kh, kw, r, c, s = case.args
        compare(
            as_array(call(receptive_field, case), case, "the patch, shape (C_in, kh, kw)"),
            x[_window(r, c, kh, kw, s)],
            case,
            what="the receptive field",
            label=_PATCH,
            shape_hint=" = (C_in, kh, kw)",
            variants=[
                (
                    "you forgot the stride: the window of output row r starts at input row "
                    "r·stride, and that of column c at c·stride.",
                    lambda x=x, kh=kh, kw=kw, r=r, c=c: x[_window(r, c, kh, kw, 1)],
                ),
                (
                    "you swapped rows and columns: r selects input rows (axis 1), c input "
                    "columns (axis 2).",
                    lambda x=x, kh=kh, kw=kw, r=r, c=c, s=s: x[_window(c, r, kh, kw, s)],
                ),
                (
                    "you swapped kh and kw: kh is the kernel's height (rows, axis 1), kw its "
                    "width (columns, axis 2).",
                    lambda x=x, kh=kh, kw=kw, r=r, c=c, s=s: x[_window(r, c, kw, kh, s)],
                ),
                (
                    "a slice a:b holds b − a elements: the window is "
                    "x[:, r*stride : r*stride + kh, c*stride : c*stride + kw].",
                    lambda x=x, kh=kh, kw=kw, r=r, c=c, s=s: x[_window(r, c, kh + 1, kw + 1, s)],
                ),
                (
                    "the receptive field spans every input channel: keep the channel axis, "
                    "x[:, rows, columns].",
                    lambda x=x, kh=kh, kw=kw, r=r, c=c, s=s: x[_window(r, c, kh, kw, s)][0],
                ),
            ],
            hint="Output (r, c) sees rows r·stride … r·stride + kh − 1 and columns "
            "c·stride … c·stride + kw − 1 of every channel.",
        )
    return (
        f"All {len(cases)} cases agree. With stride s, neighbouring output neurons' windows "
        "start s pixels apart; where s < kernel size they overlap, so an input pixel sends "
        "relevance to several output neurons' messages (Task 04.4)."
    )


def _conv_cases(with_messages: bool) -> list[Case]:
    names = ("x", "w", "b", "k", "r", "c", "stride")
    extra: list[tuple] = (
        [(1.3, 0.1), (-0.7, 1e-6), (2.0, 0.01), (0.9, 0.5)] if with_messages else [()] * 4
    )
    if with_messages:
        names += ("R_j", "eps")
    layouts = [
        ("stride 1, C_in = 2, C_out = 3", _image(41, 2, 5, 5), _kernel(41, 3, 2, 3, 3), 1, 1, 2, 1),
        ("stride 2, C_in = C_out = 2", _image(42, 2, 7, 7), _kernel(42, 2, 2, 3, 3), 0, 2, 1, 2),
        (
            "stride 2, a 2×3 kernel, output channel k = 2",
            _image(43, 1, 6, 7),
            _kernel(43, 3, 1, 2, 3),
            2,
            1,
            2,
            2,
        ),
        # held out: only the hidden tests of the assignment run it
        (
            "stride 3, C_in = 3, a 2×2 kernel",
            _image(141, 3, 8, 8),
            _kernel(141, 2, 3, 2, 2),
            1,
            2,
            1,
            3,
        ),
    ]
    cases = [
        Case(name, (x, w, b, k, r, c, s, *more), names)
        for (name, x, (w, b), k, r, c, s), more in zip(layouts, extra, strict=True)
    ]
    return numbered(cases[:3], held_out=cases[3:])


@checker("04.2", "conv_contributions", "conv_contributions(x, w, b, k, r, c, stride)")
def ex04_contributions(conv_contributions: Callable) -> str:
    r"""Check Task 04.2: :math:`z_{ij}` (C_in, kh, kw) and :math:`z_j` of neuron (k, r, c).

    :math:`z_j` is compared with PyTorch's ``conv2d`` at that position.

    Examples
    --------
    >>> def conv_contributions(x, w, b, k, r, c, stride):
    ...     kh, kw = w.shape[2:]
    ...     z_ij = x[:, r * stride : r * stride + kh, c * stride : c * stride + kw] * w[k]
    ...     return z_ij, z_ij.sum() + b[k]
    >>> ex04_contributions(conv_contributions).passed
    True
    """
    cases = _conv_cases(with_messages=False)
    for case in cases:
        x, w, b, k, r, c, s = case.args
        kh, kw = w.shape[2:]
        patch = x[_window(r, c, kh, kw, s)]
        z_ij = patch * w[k]
        z_j = ref.conv_output(x, w, b, s)[k, r, c]
        flipped = patch * w[k, :, ::-1, ::-1]
        z_got, zj_got = as_pair(call(conv_contributions, case, _KERNEL), case, "(z_ij, z_j)")
        compare(
            as_array(z_got, case, "z_ij, shape (C_in, kh, kw)"),
            z_ij,
            case,
            what="z_ij",
            label=_PATCH,
            shape_hint=" = (C_in, kh, kw)",
            variants=[
                (
                    "you flipped the kernel. PyTorch's Conv2d computes a cross-correlation: "
                    "the kernel is used as stored, z_ij = x_i·w[k, ch, u, v] at the same offset "
                    "(u, v) in the window.",
                    lambda flipped=flipped: flipped,
                ),
                (
                    "w has shape (C_out, C_in, kh, kw): the kernel of output channel k is w[k], "
                    "not w[:, k].",
                    lambda patch=patch, w=w, k=k: patch * w[:, k],
                ),
                (
                    "your receptive field ignores the stride (see Task 04.1).",
                    lambda x=x, w=w, k=k, r=r, c=c, kh=kh, kw=kw: (
                        x[_window(r, c, kh, kw, 1)] * w[k]
                    ),
                ),
                (
                    "you summed over the input channels; z_ij keeps one product per input "
                    "(channel, row, column).",
                    lambda z_ij=z_ij: z_ij.sum(axis=0),
                ),
            ],
            hint="z_ij = receptive field × w[k], element by element.",
        )
        compare(
            as_array(zj_got, case, "z_j, a number"),
            z_j,
            case,
            what="z_j (a single number)",
            label=lambda index: "",
            variants=[
                ("you forgot the bias: z_j = Σ_i z_ij + b_k.", lambda z_ij=z_ij: z_ij.sum()),
                (
                    "you added the bias of the wrong channel: neuron (k, r, c) has bias b[k].",
                    lambda z_ij=z_ij, b=b: z_ij.sum() + b[0],
                ),
                (
                    "you flipped the kernel; Conv2d does not (a cross-correlation).",
                    lambda flipped=flipped, b=b, k=k: flipped.sum() + b[k],
                ),
                (
                    "z_j is one number: sum z_ij over every channel, row and column, then add b_k.",
                    lambda z_ij=z_ij, b=b, k=k: z_ij.sum(axis=(1, 2)) + b[k],
                ),
            ],
            hint="z_j = Σ_i z_ij + b_k is the convolution's output at (k, r, c): compare with "
            "torch.nn.functional.conv2d.",
        )
    return (
        f"All {len(cases)} cases agree, and z_j equals PyTorch's conv2d output at (k, r, c): "
        "one output neuron of a convolution is a dense neuron whose inputs are its receptive "
        "field and whose weights are the kernel w[k]."
    )


@checker("04.3", "conv_messages", "conv_messages(x, w, b, k, r, c, stride, R_j, eps)")
def ex04_messages(conv_messages: Callable) -> str:
    r"""Check Task 04.3: the ε-messages of neuron (k, r, c), placed in an array shaped like x.

    Examples
    --------
    >>> def conv_messages(x, w, b, k, r, c, stride, R_j, eps):
    ...     kh, kw = w.shape[2:]
    ...     window = (slice(None), slice(r * stride, r * stride + kh),
    ...               slice(c * stride, c * stride + kw))
    ...     z_ij = x[window] * w[k]
    ...     z_j = z_ij.sum() + b[k]
    ...     out = np.zeros_like(x)
    ...     out[window] = z_ij / (z_j + eps * (1 if z_j >= 0 else -1)) * R_j
    ...     return out
    >>> ex04_messages(conv_messages).passed
    True
    """
    cases = _conv_cases(with_messages=True)
    for case in cases:
        x, w, b, k, r, c, s, R_j, eps = case.args
        kh, kw = w.shape[2:]
        expected = ref.conv_neuron_messages(x, w, b, k, r, c, s, R_j, Epsilon(eps))

        def place(
            messages: np.ndarray,
            x: np.ndarray = x,
            r: int = r,
            c: int = c,
            stride: int = s,
            size: tuple[int, int] = (kh, kw),
        ) -> np.ndarray:
            out = np.zeros_like(x)
            out[_window(r, c, *size, stride)] = messages
            return out

        patch = x[_window(r, c, kh, kw, s)]
        z_ij = patch * w[k]

        def eps_rule(z_ij: np.ndarray, bias: float, R: float = R_j, eps: float = eps) -> np.ndarray:
            z_j = z_ij.sum() + bias
            return z_ij / (z_j + eps * (1.0 if z_j >= 0 else -1.0)) * R

        inside = expected[_window(r, c, kh, kw, s)]
        variants = [
            (
                "you forgot the stride: the receptive field of (r, c) starts at row r·stride "
                "and column c·stride (see Task 04.1).",
                lambda x=x, w=w, b=b, k=k, r=r, c=c, R_j=R_j, eps=eps: ref.conv_neuron_messages(
                    x, w, b, k, r, c, 1, R_j, Epsilon(eps)
                ),
            ),
            (
                "you placed the messages at rows r … r + kh − 1; the receptive field starts at "
                "row r·stride and column c·stride (see Task 04.1).",
                lambda inside=inside, place=place: place(inside, stride=1),
            ),
            (
                "return an array shaped like x, with the messages inside the receptive field "
                "and 0 elsewhere (an input outside the window gets no message from this neuron).",
                lambda inside=inside: inside,
            ),
            (
                "you left the bias out of z_j: the denominator is stab(Σ_i z_ij + b_k).",
                lambda z_ij=z_ij, place=place: place(eps_rule(z_ij, 0.0)),
            ),
            (
                "you left out the stabiliser: divide by stab(z_j) = z_j + ε·sign(z_j).",
                lambda z_ij=z_ij, place=place, b=b, k=k: place(eps_rule(z_ij, b[k], eps=0.0)),
            ),
            (
                "you did not multiply by R_j.",
                lambda z_ij=z_ij, place=place, b=b, k=k: place(eps_rule(z_ij, b[k], R=1.0)),
            ),
            (
                "you flipped the kernel; Conv2d does not (see Task 04.2).",
                lambda patch=patch, w=w, k=k, place=place, b=b: place(
                    eps_rule(patch * w[k, :, ::-1, ::-1], b[k])
                ),
            ),
        ]
        compare(
            as_array(call(conv_messages, case), case, "the messages, an array shaped like x"),
            expected,
            case,
            what="the messages R_{i←j}",
            label=_PIXEL,
            shape_hint=" (the shape of x)",
            variants=variants,
            hint="R_{i←j} = z_ij / stab(z_j) · R_j inside the receptive field, 0 outside.",
        )
    x, w, b, k, r, c, s, R_j, eps = cases[0].args
    total = ref.conv_neuron_messages(x, w, b, k, r, c, s, R_j, Epsilon(eps)).sum()
    return (
        f"All {len(cases)} cases agree. The messages of one neuron add up to "
        f"Σ_i R_{{i←j}} = R_j·(z_j − b_k)/stab(z_j): in case 1, {total:.4f} of R_j = {R_j}; "
        "the bias and ε keep the rest."
    )


def _neuron_loop(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    R_out: np.ndarray,
    stride: int,
    eps: float,
    *,
    assign: bool = False,
    channels: int | None = None,
    skip_last: bool = False,
    bias: bool = True,
) -> np.ndarray:
    """Σ over output neurons of their messages, with switches for typical mistakes."""
    kh, kw = w.shape[2:]
    n_k, n_r, n_c = R_out.shape
    out = np.zeros_like(x)
    for k in range(channels or n_k):
        for r in range(n_r - skip_last):
            for c in range(n_c - skip_last):
                window = _window(r, c, kh, kw, stride)
                z_ij = x[window] * w[k]
                z_j = z_ij.sum() + (b[k] if bias else 0.0)
                m = z_ij / (z_j + eps * (1.0 if z_j >= 0 else -1.0)) * R_out[k, r, c]
                if assign:
                    out[window] = m
                else:
                    out[window] += m
    return out


@checker("04.4", "conv_relevance_in", "conv_relevance_in(x, w, b, R_out, stride, eps)")
def ex04_relevance_in(conv_relevance_in: Callable) -> str:
    r"""Check Task 04.4: :math:`R_i = \sum_j R_{i \leftarrow j}` over every output neuron.

    Examples
    --------
    >>> def conv_relevance_in(x, w, b, R_out, stride, eps):
    ...     kh, kw = w.shape[2:]
    ...     R_in = np.zeros_like(x)
    ...     for k, r, c in np.ndindex(*R_out.shape):
    ...         win = (slice(None), slice(r * stride, r * stride + kh),
    ...                slice(c * stride, c * stride + kw))
    ...         z_ij = x[win] * w[k]
    ...         z_j = z_ij.sum() + b[k]
    ...         R_in[win] += z_ij / (z_j + eps * (1 if z_j >= 0 else -1)) * R_out[k, r, c]
    ...     return R_in
    >>> ex04_relevance_in(conv_relevance_in).passed
    True
    """
    names = ("x", "w", "b", "R_out", "stride", "eps")

    def layer(
        seed: int, c_in: int, h: int, wd: int, c_out: int, kh: int, kw: int, stride: int, eps: float
    ) -> tuple:
        x = _image(seed, c_in, h, wd)
        w, b = _kernel(seed, c_out, c_in, kh, kw)
        shape = (c_out, (h - kh) // stride + 1, (wd - kw) // stride + 1)
        R_out = np.random.default_rng(seed + 100).uniform(0.1, 1.0, shape)
        return x, w, b, R_out, stride, eps

    cases = numbered(
        [
            Case(
                "stride 1, overlapping receptive fields", layer(44, 2, 5, 5, 3, 3, 3, 1, 0.1), names
            ),
            Case(
                "stride 2, 3×3 kernel (windows overlap by one pixel)",
                layer(45, 2, 7, 7, 2, 3, 3, 2, 1e-6),
                names,
            ),
            Case("stride 2, 2×2 kernel (no overlap)", layer(46, 1, 6, 6, 2, 2, 2, 2, 0.01), names),
            Case("a 5×7 input and a 3×2 kernel", layer(47, 1, 5, 7, 2, 3, 2, 1, 0.05), names),
        ],
        held_out=[
            Case("stride 3, C_in = 3, a 2×3 kernel", layer(142, 3, 8, 9, 2, 2, 3, 3, 0.2), names)
        ],
    )
    for case in cases:
        x, w, b, R_out, s, eps = case.args
        args = (x, w, b, R_out, s, eps)
        compare(
            as_array(call(conv_relevance_in, case), case, "R_in, an array shaped like x"),
            ref.conv_relevance_in(x, w, b, R_out, s, Epsilon(eps)),
            case,
            what="R_in",
            label=_PIXEL,
            shape_hint=" (the shape of x)",
            variants=[
                (
                    "receptive fields overlap: an input gets messages from several output "
                    "neurons. Add them up (R_in[window] += messages), do not overwrite.",
                    lambda args=args: _neuron_loop(*args, assign=True),
                ),
                (
                    "you only used output channel k = 0; sum over every output neuron "
                    "(k, r, c), all channels included.",
                    lambda args=args: _neuron_loop(*args, channels=1),
                ),
                (
                    "you missed the last output row and column: there are "
                    "(H − kh) // stride + 1 output rows (that is R_out.shape[1]).",
                    lambda args=args: _neuron_loop(*args, skip_last=True),
                ),
                (
                    "you left the bias out of z_j (see Task 04.3).",
                    lambda args=args: _neuron_loop(*args, bias=False),
                ),
            ],
            hint="R_in = Σ over every output neuron (k, r, c) of its messages (Task 04.3); "
            "loop over np.ndindex(*R_out.shape).",
        )
    x, w, b, R_out, s, eps = cases[0].args
    R_in = ref.conv_relevance_in(x, w, b, R_out, s, Epsilon(eps))
    return (
        f"All {len(cases)} cases agree. Summing the messages of every output neuron gives the "
        "same R_in as the fast path's four steps (z = conv(x), s = R/stab(z), c = "
        f"conv_transpose(s), R_in = x·c). In case 1: Σ R_out = {R_out.sum():.4f}, "
        f"Σ R_in = {R_in.sum():.4f}."
    )
