r"""The modified backward pass: one ``torch.autograd.Function`` per kind of layer.

During :func:`~lrp_tutor.fast.explain` the families of :mod:`lrp_tutor.fast.registry` give
an operation's output through one of these functions, applied to its input. The forward
returns the operation's own output value (nothing is recomputed for the plain rules) and
saves what the backward needs; the backward receives the relevance :math:`R_j` of the
outputs in place of a gradient and returns the relevance :math:`R_i` of its inputs. Montavon's four
steps, for a rule whose part *p* has terms :math:`\phi_k(x)\,\rho_{pk}(W)`:

.. math::

    z^p = \sum_k \rho_{pk}(W)^\top \phi_k(x) + \rho^p(b), \quad
    s^p = c_p\,R / \mathrm{stab}(z^p), \quad
    c^k = \sum_p \rho_{pk}(W)\, s^p, \quad
    R_{in} = \sum_k \phi_k(x) \odot c^k .

The third step is a transposed matmul or convolution per term, summed per input *k*, so
that each input is multiplied in once. Where the terms take several inputs
(:math:`x^+` and :math:`x^-` of a signed input, z^B's *x*, *l* and *h*) and the weight is
small, the first and third steps each run as one product with a block weight
(:meth:`~lrp_tutor.fast.maps.DenseMap.block`) instead of one per term. Each backward also
books its layer's ledger entry (Σ R_out, Σ R_in, what bias and ε absorbed) from tensors it
already holds.

Examples
--------
>>> import torch
>>> from lrp_tutor.fast.bookings import Recorder
>>> from lrp_tutor.fast.maps import DenseMap
>>> from lrp_tutor.rules import LRP0
>>> x = torch.tensor([[1.0, 3.0]], requires_grad=True)
>>> layer = DenseMap(torch.tensor([[1.0, 1.0]]), None)
>>> z = WeightedRule.apply(x, x.detach() @ layer.base.T, layer, LRP0().parts,
...                        Recorder(False).new("0", "Linear"))
>>> torch.autograd.grad(z, x, torch.tensor([[4.0]]))[0]   # R_i = x_i / z · R
tensor([[1., 3.]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import RuleError
from ..rules import Part, identity, ones_like, positive, safe_divide, sign, zeros_like
from .bookings import Booking, per_sample_sum
from .maps import LinearMap, Scratch, _fit, scratch_like

__all__ = [
    "WeightedRule",
    "PassThrough",
    "SumRule",
    "Product",
    "SoftmaxRule",
    "explain_linear",
    "OURS",
]


def _needs_sign(parts: Sequence[Part]) -> bool:
    """Whether a term selects inputs by sign (the rule book declares it: x⁺, x⁻)."""
    return any(getattr(t.input, "signed", False) for p in parts for t in p.terms)


def _vanishes(phi, nonneg: bool) -> bool:
    """Whether :math:`\\phi(x) = 0` everywhere: :math:`x^-` of an input without negatives."""
    return nonneg and getattr(phi, "zero_if_nonnegative", False)


def _term_input(phi, x: Tensor, nonneg: bool) -> Tensor | None:
    r""":math:`\phi(x)`; None where it vanishes; a single sample of ones for ``ones_like``."""
    if phi is identity or (phi is positive and nonneg):
        return x
    if _vanishes(phi, nonneg):
        return None
    if phi is ones_like:
        return x.new_ones((1, *x.shape[1:]))
    return phi(x)


def _stacking(parts: Sequence[Part], nonneg: bool) -> tuple[list, list[list]] | None:
    r"""The plan for computing all products of a layer at once, or None.

    The inputs :math:`\phi_k` that enter the rule's terms (those that do not vanish), and for
    each part *p* the weight modifier :math:`\rho_{pk}` of its term with input *k* (None if
    it has none). Worth it where there are several inputs: the αβ and z⁺ rules on signed
    inputs (:math:`x^+` and :math:`x^-`), z^B (:math:`x`, *l* and *h*).
    """
    inputs: list = []
    for part in parts:
        for term in part.terms:
            if term.input is ones_like or _vanishes(term.input, nonneg):
                continue
            if term.input not in inputs:
                inputs.append(term.input)
    if len(inputs) < 2 or any(t.input is ones_like for p in parts for t in p.terms):
        return None
    rhos = []
    for part in parts:
        row = [None] * len(inputs)
        for term in part.terms:
            if _vanishes(term.input, nonneg):
                continue
            k = inputs.index(term.input)
            if row[k] is not None:  # two terms with one input: computed apart
                return None
            row[k] = term.weight
        rhos.append(row)
    return inputs, rhos


def _ratio(
    r: Tensor, z: Tensor, part: Part, scratch: Scratch | None = None, slot: int = 0
) -> tuple[Tensor, Tensor | None, Tensor | float]:
    r""":math:`s = c_p R / \mathrm{stab}(z)` (0 where the denominator is 0), the sign of z
    (for ε > 0; None for ε = 0) and the ε that was added (a number, or for a relative ε one
    per sample, shaped (N, 1, …)).

    The stabiliser is the rule book's (:meth:`~lrp_tutor.rules.Part.epsilon_of` and
    :meth:`~lrp_tutor.rules.Part.stabilize`). The sign and the ratio are written into
    ``scratch`` (the ratio into buffer ``slot``, one per part): they are needed only until the
    layer's backward returns.
    """
    if part.epsilon > 0:
        epsilon = part.epsilon_of(z, batched=True)  # ε, or ε·RMS_n(z) per sample n
        sign_z = sign(z, out=scratch_like(scratch, "sign", z))
        den = part.stabilize(z, sign_z, scratch_like(scratch, ("ratio", slot), z), epsilon=epsilon)
        if part.relative and bool((epsilon == 0).any()):  # a sample whose z are all 0
            s = safe_divide(r, den)
        else:
            s = torch.div(r, den, out=den) if den.shape == r.shape else r / den
    else:
        epsilon, sign_z = 0.0, None
        s = safe_divide(r, z)
    if part.coefficient != 1:
        s = s.mul_(part.coefficient)
    return s, sign_z, epsilon


def _stabilizer_absorbed(
    r: Tensor,
    s: Tensor,
    z: Tensor,
    sign: Tensor | None,
    part: Part,
    epsilon: Tensor | float,
    batch: int | None,
):
    r"""Relevance the stabiliser took: :math:`\sum_j s_j\,\varepsilon\,\mathrm{sign}(z_j)`
    (:math:`s_j = c_p R_j/\mathrm{stab}(z_j)`; a relative ε is one number per sample and
    comes out of the sum), plus :math:`c_p \sum_j R_j` over the neurons whose denominator is
    0 (ε = 0 and :math:`z_j = 0`), which send nothing. ``sign`` is a temporary of
    :func:`_ratio`: the products are written into it."""
    if sign is not None:
        product = sign.mul_(s) if sign.shape == s.shape else s * sign
        if not part.relative:
            return per_sample_sum(product, batch) * epsilon
        eps_n = epsilon.reshape(-1)
        absorbed = per_sample_sum(product, batch) * eps_n
        dead = eps_n == 0  # RMS_n(z) = 0: every z_j of sample n is 0 and sends nothing
        if bool(dead.any()):
            absorbed = absorbed + per_sample_sum(r, batch) * dead * part.coefficient
        return absorbed
    dead = z == 0
    if not bool(dead.any()):
        return None
    return per_sample_sum(r * dead, batch) * part.coefficient


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _whole(t: Tensor, like: Tensor) -> bool:
    """Whether ``t``, a tensor this backward computed, can take a result shaped like
    ``like`` in place: the same shape, contiguous (not a broadcast view)."""
    return t.shape == like.shape and t.is_contiguous()


def _add_into(total: Tensor | None, t: Tensor) -> Tensor:
    """``total + t``, added into ``total`` (a tensor this backward computed) where it can take
    it; ``t`` itself when there is no total yet."""
    if total is None:
        return t
    return total.add_(t) if _whole(total, t) else total + t


class WeightedRule(torch.autograd.Function):
    """A layer with weights (Linear, Conv, AvgPool; BatchNorm merged) under a rule's parts."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor | None, layer: LinearMap, parts, booking: Booking):
        # value: the layer's own output, or None when the layer did not compute it (αβ)
        nonneg = _needs_sign(parts) and bool(x.amin() >= 0)
        plan = _stacking(parts, nonneg)
        if value is not None and any(part.is_plain for part in parts):
            plan = None  # the plain part is the layer's own output
        if plan is not None and layer.stackable(plan[1]):
            # all products in one: z^p = Σ_k ρ_pk(W)ᵀ φ_k(x), then + ρ(b_j)
            inputs, rhos = plan
            xs = [_term_input(phi, x, nonneg) for phi in inputs]
            zs = layer.forward_stacked(xs, rhos)
            for p, part in enumerate(parts):
                if part.bias is not zeros_like:
                    zs[p] = layer.add_bias(zs[p], part.bias)
        else:
            plan, zs = None, _products(x, value, layer, parts, nonneg)
        if value is None:  # αβ: z⁺ + z⁻ = z
            value = zs[0] + zs[1]
        layer.release(after_forward=True)
        ctx.layer, ctx.parts, ctx.booking, ctx.nonneg = layer, parts, booking, nonneg
        ctx.plan = plan
        ctx.save_for_backward(x, *zs)
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        x, *zs = ctx.saved_tensors
        layer, nonneg = ctx.layer, ctx.nonneg
        r_in = bias = stab = None
        ss = []
        cs: dict = {}  # c^k_i = Σ_p Σ_j ρ_pk(w_ij) s^p_j, one per input φ_k
        for p, (part, z) in enumerate(zip(ctx.parts, zs, strict=True)):
            s, sign, eps = _ratio(r, z, part, layer.scratch, p)  # s_j = c_p R_j / stab(z_j)
            if ctx.plan is not None:
                ss.append(s)
            else:
                for term in part.terms:
                    if not _vanishes(term.input, nonneg):
                        c = layer.transpose(s, term.weight, x)  # Σ_j ρ(w_ij) s_j
                        cs[term.input] = _add_into(cs.get(term.input), c)
            if part.bias is not zeros_like:
                bias = _add(bias, layer.bias_absorbed(s, part.bias, ctx.booking.batch))
            stab = _add(stab, _stabilizer_absorbed(r, s, z, sign, part, eps, ctx.booking.batch))
        own = ctx.plan is None  # each c^k a tensor of its own, not a slice of one product
        if ctx.plan is not None:  # every c^k in one product
            inputs, rhos = ctx.plan
            cs = dict(zip(inputs, layer.transpose_stacked(ss, rhos, x), strict=True))
        for phi, c in cs.items():  # R_i = Σ_k φ_k(x_i) c^k_i
            if phi is not ones_like:
                inp = _term_input(phi, x, nonneg)
                if r_in is not None and _whole(r_in, inp) and c.shape == inp.shape:
                    r_in = r_in.addcmul_(inp, c)  # += φ_k(x) c^k, in one pass
                    continue
                c = c.mul_(inp) if own and _whole(c, inp) else inp * c
            r_in = _add_into(r_in, c)
        if r_in is None:
            r_in = torch.zeros_like(x)
        r_in = r_in.contiguous()  # flat: one c shared by all inputs, broadcast until here
        layer.release()
        ctx.booking.book(r, r_in, bias, stab)
        return r_in, None, None, None, None


def _products(x: Tensor, value: Tensor | None, layer: LinearMap, parts, nonneg: bool):
    """:math:`z^p_j = \\sum_t \\sum_i \\phi_t(x_i) \\rho_t(w_{ij}) + \\rho(b_j)` for each part,
    one product per term (the layer's own output for a plain part)."""
    zs = []
    for part in parts:
        if part.is_plain and value is not None:
            zs.append(value)  # the layer's own output: z_j = Σ_i x_i w_ij + b_j
            continue
        z = None
        for term in part.terms:
            inp = _term_input(term.input, x, nonneg)
            if inp is not None:
                z = _add(z, layer.forward(inp, term.weight))  # Σ_i φ(x_i) ρ(w_ij)
        if z is None:
            z = layer.forward(torch.zeros_like(x), identity)
        if part.bias is not zeros_like:
            z = layer.add_bias(z, part.bias)  # + ρ(b_j)
        zs.append(z)
    return zs


class PassThrough(torch.autograd.Function):
    """Element-wise activations, Dropout (eval), Identity, Flatten: :math:`R_i = R_i`."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, booking: Booking):
        ctx.shape, ctx.booking = x.shape, booking
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        r_in = r.reshape(ctx.shape)
        ctx.booking.book_unchanged(r, r_in)
        return r_in, None, None


class SumRule(torch.autograd.Function):
    r"""A residual join :math:`z_j = \sum_k a^{(k)}_j`: a layer with weights 1 and no bias.

    Each part's :math:`z^p_j = \sum_k \sum_t \phi_t(a^{(k)}_j)\,\rho_t(1)`, and input *k*
    receives :math:`\sum_p \sum_t \phi_t(a^{(k)})\,\rho_t(1)\, s^p`.
    """

    @staticmethod
    def forward(
        ctx, value: Tensor | None, parts, booking: Booking, scratch: Scratch | None, *inputs: Tensor
    ):
        if value is None:
            value = inputs[0] + inputs[1]
            for a in inputs[2:]:
                value = value + a
        weights = [[float(np.asarray(t.weight(np.array(1.0)))) for t in p.terms] for p in parts]
        zs = []
        for part, ws in zip(parts, weights, strict=True):
            if part.is_plain:
                zs.append(value)
                continue
            z = None
            for term, w in zip(part.terms, ws, strict=True):
                if w != 0:
                    for a in inputs:
                        z = _add(z, term.input(a) * w)
            zs.append(torch.zeros_like(value) if z is None else z)
        ctx.parts, ctx.weights, ctx.booking, ctx.scratch = parts, weights, booking, scratch
        ctx.n_inputs = len(inputs)
        ctx.save_for_backward(*inputs, *zs)
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        saved = ctx.saved_tensors
        inputs, zs = saved[: ctx.n_inputs], saved[ctx.n_inputs :]
        r_ins: list[Tensor | None] = [None] * len(inputs)
        stab = None
        for p, (part, ws, z) in enumerate(zip(ctx.parts, ctx.weights, zs, strict=True)):
            s, sign, eps = _ratio(r, z, part, ctx.scratch, p)
            for term, w in zip(part.terms, ws, strict=True):
                if w == 0:
                    continue
                sw = s if w == 1 else s * w  # ρ(1) s_j
                for k, a in enumerate(inputs):
                    r_ins[k] = _add(r_ins[k], term.input(a) * sw)
            stab = _add(stab, _stabilizer_absorbed(r, s, z, sign, part, eps, ctx.booking.batch))
        pairs = zip(inputs, r_ins, strict=True)
        grads = tuple(torch.zeros_like(a) if g is None else g for a, g in pairs)
        ctx.booking.book(r, grads, None, stab)
        return (None, None, None, None, *grads)


class Product(torch.autograd.Function):
    """The uniform rule for :math:`a \\odot b` (``matmul=False``) or :math:`a\\,b`.

    ``part``: the rule's :class:`~lrp_tutor.rules.Part`, whose stabiliser gives
    :math:`s = R / \\mathrm{stab}(z)` (its ε may be relative: then
    :math:`\\varepsilon\\cdot\\mathrm{RMS}_n(z)` of the product). An element-wise product
    computes *z* again in the backward (one pass); a matmul keeps it."""

    @staticmethod
    def forward(
        ctx,
        a: Tensor,
        b: Tensor,
        part: Part,
        matmul: bool,
        booking: Booking,
        scratch: Scratch | None = None,
    ):
        z = torch.matmul(a, b) if matmul else a * b
        ctx.save_for_backward(a, b, *([z] if matmul else []))
        ctx.part, ctx.matmul, ctx.booking, ctx.scratch = part, matmul, booking, scratch
        return z

    @staticmethod
    def backward(ctx, r: Tensor):
        a, b, *kept = ctx.saved_tensors
        z = kept[0] if kept else a * b
        s, sign_z, eps = _ratio(r, z, ctx.part, ctx.scratch)  # s = R / stab(z)
        absorbed = _stabilizer_absorbed(r, s, z, sign_z, ctx.part, eps, ctx.booking.batch)
        s = s.mul_(0.5)  # each factor takes half
        if ctx.matmul:
            r_a = (s @ b.transpose(-1, -2)).mul_(a)  # R_a,ik = ½ a_ik Σ_j b_kj s_ij
            r_b = (a.transpose(-1, -2) @ s).mul_(b)
        else:
            r_a = z * s
            r_b = r_a.clone()
        r_a, r_b = _fit(r_a, a.shape), _fit(r_b, b.shape)
        ctx.booking.book(r, (r_a, r_b), None, absorbed)
        return r_a, r_b, None, None, None, None


class SoftmaxRule(torch.autograd.Function):
    r"""AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.1): for
    :math:`s_j = e^{x_j} / \sum_k e^{x_k}`, each output's relevance is redistributed by the
    first-order Taylor expansion of :math:`s_j` at its input, weighted by :math:`R_j / s_j`:

    .. math::

        R_i = x_i \sum_j \frac{\partial s_j}{\partial x_i}\frac{R_j}{s_j}
            = x_i \Big(R_i - s_i \sum_j R_j\Big) .

    What the expansion leaves out,
    :math:`\sum_j R_j - \sum_i R_i = \sum_j R_j (1 - x_j + \bar x)` with
    :math:`\bar x = \sum_i s_i x_i`, is the bias of the
    linearisation: it is absorbed, and booked in the ledger's bias column. A masked input
    (:math:`x_i = -\infty`, so :math:`s_i = 0`) receives nothing.
    """

    @staticmethod
    def forward(
        ctx, x: Tensor, value: Tensor, dim: int, booking: Booking, scratch: Scratch | None = None
    ):
        ctx.save_for_backward(x, value)
        ctx.dim, ctx.booking, ctx.scratch = dim, booking, scratch
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        x, s = ctx.saved_tensors
        r, s = r.to(x.dtype), s.to(x.dtype)  # in the input's precision (softmax in float32)
        total = r.sum(ctx.dim, keepdim=True)  # Σ_j R_j
        shared = torch.mul(s, total, out=scratch_like(ctx.scratch, "sign", s))  # s_i Σ_j R_j
        r_in = torch.sub(r, shared).mul_(x)
        r_in = r_in.masked_fill_(torch.isneginf(x), 0)  # masked: 0, not 0·(−∞)
        n = ctx.booking.batch
        absorbed = per_sample_sum(r, n) - per_sample_sum(r_in, n)
        ctx.booking.book(r, r_in, absorbed.to(r_in.dtype), None)
        return r_in, None, None, None, None


class DiagonalRule(torch.autograd.Function):
    r"""An element-wise map without bias, :math:`z_i = w_i x_i` (a constant factor, a gate
    held constant), under ε-type rules: :math:`R_i = z_i\, c_p R_i / \mathrm{stab}(z_i)`
    summed over the parts. It keeps only its output *z*, which the next operation keeps
    anyway, not its input as well."""

    @staticmethod
    def forward(
        ctx, x: Tensor, value: Tensor, parts, booking: Booking, scratch: Scratch | None = None
    ):
        ctx.save_for_backward(value)
        ctx.parts, ctx.booking, ctx.scratch = parts, booking, scratch
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        (z,) = ctx.saved_tensors
        r_in = stab = None
        for p, part in enumerate(ctx.parts):
            s, sign, eps = _ratio(r, z, part, ctx.scratch, p)  # s_i = c_p R_i / stab(z_i)
            r_in = _add_into(r_in, z * s)
            stab = _add(stab, _stabilizer_absorbed(r, s, z, sign, part, eps, ctx.booking.batch))
        ctx.booking.book(r, r_in, None, stab)
        return r_in, None, None, None, None


def explain_linear(x: Tensor, value: Tensor, layer: LinearMap, rule, booking: Booking, where: str):
    """``value`` with the rule's backward through ``layer`` attached (Pass: unchanged)."""
    if not rule.parts:  # Pass
        if value.shape != x.shape:
            raise RuleError(
                f"Rule {rule!r} passes relevance unchanged, but {where} maps shape "
                f"{tuple(x.shape)} to {tuple(value.shape)}. Give it another rule."
            )
        return PassThrough.apply(x, value.detach(), booking)
    plain = all(part.is_plain for part in rule.parts)
    if layer.diagonal and plain and layer.bias(identity) is None and value.shape == x.shape:
        return DiagonalRule.apply(x, value.detach(), rule.parts, booking, layer.scratch)
    return WeightedRule.apply(x, value.detach(), layer, rule.parts, booking)


OURS = frozenset(
    f._backward_cls
    for f in (WeightedRule, DiagonalRule, PassThrough, SumRule, Product, SoftmaxRule)
)
"""The backward node types of the functions above that relevance may pass through."""
