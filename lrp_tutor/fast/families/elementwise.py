r"""Element-wise activations: relevance passes through unchanged (the identity rule).

An activation :math:`x_j = g(z_j)` acts on one neuron at a time; LRP assigns the relevance
of :math:`x_j` to :math:`z_j` unchanged, :math:`R_{z_j} = R_{x_j}` (Montavon et al. 2019,
sec. 10.3): ReLU, ReLU6, LeakyReLU, SiLU, GELU, Hardswish, Sigmoid, Tanh, … and a
negation. The outputs of gating functions (sigmoid, hardsigmoid) are remembered: a product
with one of them is a gate (:mod:`lrp_tutor.fast.families.products`).

>>> import torch
>>> from lrp_tutor.fast.bookings import Recorder
>>> from lrp_tutor.fast.functions import PassThrough
>>> x = torch.tensor([[-1.0, 2.0]], requires_grad=True)
>>> out = PassThrough.apply(x, torch.relu(x).detach(), Recorder(False).new("relu", "ReLU"))
>>> torch.autograd.grad(out, x, torch.tensor([[0.5, 1.5]]))[0]   # R passes unchanged
tensor([[0.5000, 1.5000]])
"""

from __future__ import annotations

import weakref

from torch import Tensor

from ..functions import PassThrough

GATING = frozenset({"sigmoid", "hardsigmoid"})


def remember(table: dict, t: Tensor) -> None:
    """Mark ``t`` in ``table`` (the session's gates or activated outputs), weakly: the entry
    does not keep ``t`` alive."""
    table[id(t)] = weakref.ref(t)


def remembered(table: dict, t: object) -> bool:
    """Whether ``t`` itself is marked in ``table`` (not another tensor with its old id)."""
    ref = table.get(id(t))
    return ref is not None and ref() is t


def pass_through(call) -> Tensor:
    """:math:`R_{in} = R_{out}`: the value of the activation, the relevance of its input."""
    x = next(a for a in call.args if call.carries(a))
    value = call.plain()
    if value.shape != x.shape:  # e.g. prelu with a broadcast weight keeps x's shape anyway
        x = x.expand(value.shape)
        call.session.learn(x, call.args)
    out = PassThrough.apply(x, value, call.booking(call.label))
    name = getattr(call.func, "__name__", "").strip("_")
    if name in GATING:
        remember(call.session.gates, out)
    elif name not in ("neg", "negative"):
        remember(call.session.activated, out)
    return out


ACTIVATIONS = (
    "relu relu6 leaky_relu prelu rrelu elu selu celu gelu silu mish softplus tanh sigmoid "
    "hardtanh hardsigmoid hardswish logsigmoid softsign tanhshrink softshrink hardshrink "
    "threshold clamp clip clamp_min clamp_max neg negative abs exp log sqrt rsqrt square "
    "erf pow __pow__ __rpow__ float_power __neg__"
).split()
