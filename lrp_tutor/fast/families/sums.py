r"""Sums: a join of branches, and a constant added (booked like a bias).

A sum of tensors that carry relevance, :math:`z_j = \sum_k a^{(k)}_j` (a residual join,
``out += identity``), is a layer with all weights 1 and no bias: each summand receives
:math:`R_{a^{(k)}_j} = a^{(k)}_j / \mathrm{stab}(z_j) \cdot R_j` under the default
:data:`~lrp_tutor.composites.SUM_RULE` (ε = 1e-6), or what the composite maps the module (or
:class:`~lrp_tutor.fast.Sum`) to. Summands of different shapes are broadcast first
(relevance of a broadcast entry is summed back). A difference :math:`a - b` adds
:math:`-b`, whose relevance passes to *b* unchanged.

A constant added, :math:`z_j = x_j + c_j` (a position embedding, a bias written as code), is
an element-wise affine map whose bias absorbs :math:`c_j/\mathrm{stab}(z_j)\cdot R_j`, booked
in the ledger. Its infinite entries (an attention mask's :math:`-\infty`) are filled in
afterwards: nothing is sent there.

>>> import torch
>>> from lrp_tutor.fast.bookings import Recorder
>>> from lrp_tutor.fast.functions import SumRule
>>> from lrp_tutor.rules import LRP0
>>> a = torch.tensor([[1.0]], requires_grad=True)
>>> b = torch.tensor([[3.0]], requires_grad=True)
>>> z = SumRule.apply(None, LRP0().parts, Recorder(False).new("add", "add"), None, a, b)
>>> [g.item() for g in torch.autograd.grad(z, (a, b), torch.tensor([[8.0]]))]
[2.0, 6.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import RuleError
from ..functions import PassThrough, SumRule, explain_linear
from ..maps import ScaleMap
from ..modules import Sum


def _scaled(call, t: Tensor, factor: float) -> Tensor:
    """``factor · t`` with relevance passed to ``t`` unchanged (a sign flip, α of add)."""
    if factor == 1:
        return t
    return PassThrough.apply(t, t.detach() * factor, call.booking("scale"))


def add(call) -> Tensor:
    """``a + α·b`` (add, sub, rsub and their in-place forms)."""
    name = getattr(call.func, "__name__", "").strip("_")
    a, b = call.args[0], call.args[1]
    alpha = call.arg(2, "alpha", 1)
    sa, sb = 1, alpha
    if name in ("sub", "subtract"):
        sb = -alpha
    elif name == "rsub":
        sa, sb = -alpha, 1
    value = call.plain()
    carried = [call.carries(a), call.carries(b)]
    if all(carried):
        return _join(call, value, [_scaled(call, a, sa), _scaled(call, b, sb)])
    x, c, sx, sc = (a, b, sa, sb) if carried[0] else (b, a, sb, sa)
    like = dict(dtype=value.dtype, device=value.device)  # Python numbers in the value's precision
    constant = c * sc if isinstance(c, Tensor) else torch.as_tensor(c * sc, **like)
    weight = None if sx == 1 else torch.as_tensor(float(sx), **like)

    constant = constant.detach()
    infinite = ~torch.isfinite(constant)
    masked = bool(infinite.any())  # an attention mask's -inf: filled in, nothing sent there
    bias = constant.masked_fill(infinite, 0.0) if masked else constant
    layer = ScaleMap(weight, bias, call.session.scratch)
    out = explain_linear(x, value, layer, call.rule("fixed"), call.booking("add"), call.where())
    if not masked:
        return out
    result = torch.where(infinite, value, out)
    call.session.learn(result, out)
    return result


def _join(call, value: Tensor, inputs: list[Tensor]) -> Tensor:
    rule = call.rule("sum", Sum)
    if not rule.parts:
        raise RuleError(f"The sum in {call.where()} needs a rule with parts, not {rule!r}.")
    inputs = [t if t.shape == value.shape else t.expand(value.shape) for t in inputs]
    call.session.learn(inputs, call.args)  # a broadcast routes (fan-out sums back)
    booking = call.booking("add")
    return SumRule.apply(value, rule.parts, booking, call.session.scratch, *inputs)


SUMS = "add sub subtract rsub __add__ __radd__ __sub__ __rsub__".split()
