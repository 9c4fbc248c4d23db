r"""Products: a gate, and the product of two activations.

A **gate** :math:`z_j = x_j \cdot g_j(s)` — a squeeze-excitation block's
``x * sigmoid(fc(pool(x)))``, a division by a norm computed from the input — holds the gate
constant and sends all relevance to the signal: the product is an element-wise linear map of
*x* with the weight :math:`g_j` (Arras et al. 2017, "Explaining recurrent neural network
predictions in sentiment analysis", the signal-takes-all rule for LSTM gates). The gate is
the factor that was broadcast (fewer entries), else the output of a gating function
(sigmoid, hardsigmoid); a division :math:`a / b` gates *a* with :math:`1/b`. Under
CP-LRP (``attention="cp_lrp"``, the default), the output of any other non-linear activation
multiplied with a plain activation is a gate too: a gated MLP's ``act(gate(x)) * up(x)``.

The **product of two activations** of one shape, :math:`z_{ij} = a_i b_j` (and a matmul of
two activations, :math:`z_{ij} = \sum_k a_{ik} b_{kj}`) splits each contribution's relevance
in half between its two factors: the uniform rule of AttnLRP (Achtibat et al. 2024, ICML,
"AttnLRP: Attention-aware layer-wise relevance propagation for transformers", Prop. 3.3),
with the ε-stabiliser :math:`s = R / \mathrm{stab}(z)`:

.. math::

    R_a = \tfrac12\, a \odot (s\, b^\top), \qquad R_b = \tfrac12\, b \odot (a^\top s) .

>>> import torch
>>> a = torch.tensor([[2.0]], requires_grad=True)
>>> b = torch.tensor([[3.0]], requires_grad=True)
>>> from lrp_tutor.fast.bookings import Recorder
>>> from lrp_tutor.rules import LRP0
>>> z = Product.apply(a, b, LRP0().parts[0], False, Recorder(False).new("mul", "mul"))
>>> [g.item() for g in torch.autograd.grad(z, (a, b), torch.tensor([[6.0]]))]
[3.0, 3.0]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import UnsupportedLayerError
from ...rules import LRP0, Part
from ..functions import Product, explain_linear
from ..maps import ScaleMap
from ..modules import Product as Product_
from .elementwise import remembered
from .linear import scale


def _gate_of(call, a: Tensor, b: Tensor) -> int | None:
    """Which factor is the gate: 0, 1, or None (two activations alike)."""
    if a.numel() != b.numel():
        return 0 if a.numel() < b.numel() else 1
    session = call.session
    for k, t in enumerate((a, b)):
        if remembered(session.gates, t):
            return k
    if session.composite.attention == "cp_lrp":  # a gated MLP's activated branch: held
        activated = [remembered(session.activated, t) for t in (a, b)]
        if activated.count(True) == 1:
            return activated.index(True)
    return None


def _part(call) -> Part:
    """The stabiliser of the uniform rule: the first part of the composite's rule for
    :class:`lrp_tutor.fast.Product` (ε, possibly relative), LRP-0 for a rule without parts."""
    rule = call.rule("fixed", Product_)
    return rule.parts[0] if rule.parts else LRP0().parts[0]


def multiply(call) -> Tensor:
    """``a * b`` and ``a / b``: a constant factor (:func:`~.linear.scale`), a gate, or the
    uniform rule."""
    a, b = call.args[0], call.args[1]
    if not (call.carries(a) and call.carries(b)):
        return scale(call)
    name = getattr(call.func, "__name__", "").strip("_")
    value = call.plain()
    if name in ("div", "divide", "true_divide", "truediv"):
        gate, signal, weight = b, a, 1 / b.detach()
    else:
        k = _gate_of(call, a, b)
        if k is None:
            booking, scratch = call.booking("product"), call.session.scratch
            return Product.apply(a, b, _part(call), False, booking, scratch)
        gate, signal = (a, b) if k == 0 else (b, a)
        weight = gate.detach()
    layer = ScaleMap(weight, None, call.session.scratch)
    rule = call.rule("fixed")
    return explain_linear(signal, value, layer, rule, call.booking("gate"), call.where())


def matmul(call) -> Tensor:
    """``a @ b``: with a constant weight a linear layer, with two activations the uniform
    rule."""
    a, b = call.args[0], call.args[1]
    if call.carries(a) and call.carries(b):
        return matmul_of_activations(call)
    from .linear import fixed_function

    if call.carries(a) and b.ndim == 2:  # x W: a dense layer with weight Wᵀ
        from ..maps import DenseMap

        value = call.plain()
        layer = DenseMap(b.detach().T, None, None, a.numel(), call.session.scratch)
        rule = call.rule("weighted", torch.nn.Linear)
        return explain_linear(a, value, layer, rule, call.booking("matmul"), call.where())
    return fixed_function(call, signed=True)


def matmul_of_activations(call) -> Tensor:
    """Two activations multiplied as matrices (attention's QKᵀ, A·V): the uniform rule."""
    a, b = call.args[0], call.args[1]
    name = getattr(call.func, "__name__", "")
    if name == "linear":  # F.linear(a, b) = a bᵀ
        b = b.transpose(-1, -2)
        if call.arg(2, "bias") is not None:
            raise UnsupportedLayerError(
                f"F.linear in {call.where()} multiplies two activations and adds a bias; "
                "write it as a matmul and an addition."
            )
    booking, scratch = call.booking("matmul"), call.session.scratch
    return Product.apply(a, b, _part(call), True, booking, scratch)


PRODUCTS = ("mul", "multiply", "__mul__", "__rmul__", "div", "divide", "true_divide", "__truediv__")
MATMULS = ("matmul", "mm", "bmm", "__matmul__")
