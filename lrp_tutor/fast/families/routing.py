r"""Routing: operations that move values without computing with them.

Reshapes, permutes, concatenations, slices, channel shuffles, padding, copies, dropout in
eval mode, nearest-neighbour upsampling and max pooling send every output entry from exactly
one input entry (or copy one input to several outputs). Their gradient routes relevance
exactly where LRP does: :math:`R_i = \sum_{j \text{ taken from } i} R_j`; max pooling sends
each output's relevance to the input that won (winner takes all). So autograd itself runs
them; the engine remembers the nodes they made for the graph check.

>>> import torch
>>> x = torch.tensor([[1.0, 5.0, 2.0]], requires_grad=True)
>>> torch.autograd.grad(x.amax(1), x, torch.tensor([3.0]))[0]   # the winner gets R
tensor([[0., 3., 0.]])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bookings import per_sample_sum
from ..functions import PassThrough
from .elementwise import remember, remembered


def route(call) -> Any:
    """Run the operation under autograd: its gradient is the exact routing. A leaf module's
    own operation (nn.MaxPool2d, nn.Flatten, nn.Dropout) gets its line in the ledger, with
    the relevance at its input. A gate stays a gate when it is reshaped or expanded."""
    gate = _gate_among(call)
    if getattr(call.func, "__name__", "") in JOINS:
        call.args = tuple(_sinks(call, a) for a in call.args)
    if call.own:
        k = next((i for i, a in enumerate(call.args) if call.carries(a)), None)
        if k is not None and call.args[k].is_floating_point():
            x = call.args[k]
            booked = PassThrough.apply(x, x.detach(), call.booking(call.label))
            call.args = (*call.args[:k], booked, *call.args[k + 1 :])
    result = call.traced()
    if gate and isinstance(result, Tensor):
        remember(call.session.gates, result)
    return result


def _sinks(call, arg: Any) -> Any:
    """``arg`` with every constant tensor in it (a class token concatenated to the patch
    tokens) replaced by a :class:`ConstantSink`, so that the relevance sent to it is
    booked as absorbed."""
    if isinstance(arg, list | tuple):
        return type(arg)(_sinks(call, a) for a in arg)
    if (
        isinstance(arg, Tensor)
        and arg.is_floating_point()
        and arg.numel() > 0  # an empty cache joined to the keys
        and not call.carries(arg)
    ):
        return ConstantSink.apply(call.session.x, arg, call.booking("constant"))
    return arg


class ConstantSink(torch.autograd.Function):
    """A constant joined to activations (``torch.cat([class_token, x])``): the relevance it
    receives stays there, booked like a bias's. ``x`` (the explained input) is only its
    anchor in the graph; it receives nothing through it."""

    @staticmethod
    def forward(ctx, x: Tensor, constant: Tensor, booking):
        ctx.booking = booking
        return constant.detach().clone()

    @staticmethod
    def backward(ctx, r: Tensor):
        absorbed = per_sample_sum(r, ctx.booking.batch)
        ctx.booking.book(r, torch.zeros_like(r), absorbed)
        return None, None, None


def _gate_among(call) -> bool:
    """Whether the tensor routed (the first argument: ``y.view(…)``, ``y.expand_as(x)``) is
    a gate's output."""
    source = call.args[0] if call.args else None
    if not call.carries(source):
        return False
    return remembered(call.session.gates, source)


def pad(call) -> Tensor:
    """``F.pad``: reflect, replicate and circular padding copy inputs (exact routing); a
    constant pad's entries are constants, and the relevance a layer sends them (the flat
    rule does) is absorbed there and booked like a bias's."""
    mode = call.arg(2, "mode", "constant")
    if mode != "constant":
        return route(call)
    x, pads = call.args[0], call.arg(1, "pad")
    return ConstantPad.apply(x, call.plain(), tuple(pads), call.booking("pad"))


class ConstantPad(torch.autograd.Function):
    """Relevance at the real entries goes back to them; at the padded ones, it is absorbed."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, pads: tuple, booking):
        ctx.booking, ctx.pads = booking, pads
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        r_in = F.pad(r, [-p for p in ctx.pads])  # the padding's own gradient: a crop
        n = ctx.booking.batch
        absorbed = per_sample_sum(r, n) - per_sample_sum(r_in, n)
        ctx.booking.book(r, r_in, absorbed)
        return r_in, None, None, None


def max_pool(call) -> Any:
    """Max pooling: the winner takes all, :math:`R_i = \\sum_{j: i = \\arg\\max} R_j`.

    The same routing as autograd's, but only the arg-max indices are kept for the backward
    pass (autograd's max pooling keeps its whole input too)."""
    x = call.args[0]
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[x.ndim - 3]
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    options = {k: call.arg(i + 1, k) for i, k in enumerate(names)}
    wanted = bool(options.pop("return_indices")) or "indices" in getattr(call.func, "__name__", "")
    options = {k: v for k, v in options.items() if v is not None}
    with torch.no_grad():
        value, indices = pool(x, return_indices=True, **options)
    booking = call.booking(call.label) if call.own else None
    out = WinnerTakesAll.apply(x, value, indices, booking)
    return (out, indices) if wanted else out


class WinnerTakesAll(torch.autograd.Function):
    """All relevance of an output goes to the input that won its max."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, indices: Tensor, booking):
        ctx.save_for_backward(indices)
        ctx.shape, ctx.booking = x.shape, booking
        return value

    @staticmethod
    def backward(ctx, r: Tensor):
        (indices,) = ctx.saved_tensors
        n, c = ctx.shape[:2]
        r_in = r.new_zeros((n, c, ctx.shape[2:].numel()))
        r_in.scatter_add_(2, indices.reshape(n, c, -1), r.reshape(n, c, -1))
        r_in = r_in.view(ctx.shape)
        if ctx.booking is not None:
            ctx.booking.book(r, r_in)
        return r_in, None, None, None


def interpolate(call) -> Any:
    """``F.interpolate``: nearest neighbours route; (bi/tri)linear modes are fixed linear maps."""
    mode = call.arg(3, "mode", "nearest")
    if mode in ("nearest", "nearest-exact"):
        return call.traced()
    from .linear import fixed_function

    return fixed_function(call)


def setitem(call) -> Tensor:
    """``t[index] = value``: a copy of ``t`` with ``value`` routed into ``index``."""
    t, index, value = call.args[:3]
    out = t.clone()
    out[index] = value
    call.session.learn(out, call.args)
    return out


def copy(call) -> Tensor:
    """``t.copy_(src)``: ``src`` routed into the shape and dtype of ``t``."""
    t, src = call.args[:2]
    out = src.to(dtype=t.dtype, device=t.device).expand_as(t).clone()
    call.session.learn(out, call.args)
    return out


MAX_POOLS = (
    "max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices "
    "max_pool3d_with_indices"
).split()


def constant(call) -> Tensor:
    """A new tensor made from x's shape, dtype or device only (``x.new_zeros(…)``,
    ``torch.zeros_like(x)``): a constant, no relevance."""
    return call.plain()


JOINS = frozenset("cat concat concatenate stack hstack vstack dstack where masked_scatter".split())
"""Routing operations that can join a constant to activations."""

FACTORIES = (
    "new_zeros new_ones new_full new_empty new_tensor zeros_like ones_like full_like "
    "empty_like rand_like randn_like randint_like"
).split()

ROUTES = (
    "view view_as reshape reshape_as flatten unflatten ravel permute transpose t swapaxes "
    "swapdims movedim moveaxis squeeze unsqueeze contiguous clone expand expand_as repeat "
    "tile cat concat concatenate stack hstack vstack dstack split split_with_sizes chunk "
    "unbind tensor_split narrow select index_select gather take_along_dim __getitem__ roll "
    "flip fliplr flipud rot90 pixel_shuffle pixel_unshuffle channel_shuffle "
    "native_channel_shuffle repeat_interleave to type float double half cpu cuda dropout "
    "dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout masked_fill where "
    "diagonal tril triu "
    "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d "
    "amax amin max min maximum minimum max_unpool2d unfold T mT H mH"
).split()
