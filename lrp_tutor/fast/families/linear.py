r"""Linear maps: layers with a weight, and fixed linear maps.

**With a learned weight** — ``F.linear``, ``F.conv1d/2d/3d`` (grouped, depthwise, dilated,
strided), ``F.conv_transpose1d/2d/3d``, a matmul with a parameter — the rule is the one the
composite gives the module (by name, ``first``, by type, ``default``):

.. math::

    z^p = \rho_p(W)^\top \phi(x) + \rho_p(b), \quad s^p = c_p R / \mathrm{stab}(z^p), \quad
    c = \textstyle\sum_p \rho_p(W)\, s^p, \quad R_{in} = \phi(x) \odot c .

Its output is *pending* (:mod:`lrp_tutor.fast.engine`): a BatchNorm that uses it on its
channels is merged in, :math:`w'_{ij} = \lambda_j w_{ij}`,
:math:`b'_j = \lambda_j(b_j - \mu_j) + \beta_j`,
:math:`\lambda_j = \gamma_j/\sqrt{\sigma_j^2+\epsilon}`.

**Fixed maps** — BatchNorm anywhere else (a per-channel affine map
:math:`z_j = \lambda_j x_j + b'_j`), a layer scale or a constant factor
(:math:`z_j = w_j x_j`), average pooling of every kind, a mean or sum over dimensions,
(bi)linear interpolation, LayerNorm/GroupNorm/RMSNorm (:class:`~lrp_tutor.fast.maps.CenteredMap`:
the standard deviation held constant) — take the composite's rule for the module's type, else
:data:`~lrp_tutor.composites.POOLING_RULE` (ε = 1e-6).

>>> import torch
>>> import lrp_tutor as lt
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).eval()
>>> e = lt.explain(torch.nn.Sequential(net, torch.nn.Flatten(), torch.nn.Linear(8, 2)),
...                torch.rand(1, 1, 4, 4))
>>> [entry.layer for entry in e.ledger][:2]
['0.0 (Conv2d+BatchNorm2d)', '1 (Flatten)']
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from ...errors import UnsupportedLayerError
from ..canonizers import scale_and_shift
from ..functions import explain_linear
from ..maps import CenteredMap, ConvMap, DenseMap, FunctionMap, PoolMap, ScaleMap, numeric_padding


def _tuple(v, dims: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple | list) else (v,) * dims


# ------------------------------------------------------------------ with a learned weight


def linear(call) -> Tensor:
    """``F.linear(x, W, b)``: :math:`z = x W^\\top + b`, and ``torch.addmm(b, x, W)``:
    :math:`z = x W + b` (GPT-2's ``Conv1D``); pending."""
    if getattr(call.func, "__name__", "") == "addmm":
        bias, x, weight = call.arg(0, "input"), call.arg(1, "mat1"), call.arg(2, "mat2")
        if call.kwargs.get("beta", 1) != 1 or call.kwargs.get("alpha", 1) != 1:
            raise UnsupportedLayerError(
                f"torch.addmm in {call.where()} scales its terms (beta, alpha); write it as "
                "F.linear or a matmul and an addition."
            )
        if call.carries(weight) or not call.carries(x):
            raise UnsupportedLayerError(
                f"torch.addmm in {call.where()} multiplies an activation from the right; "
                "lrp_tutor explains addmm(b, x, W) with the activation x and a weight W."
            )
        weight = weight.detach().T
    else:
        x, weight, bias = call.arg(0, "input"), call.arg(1, "weight"), call.arg(2, "bias")
    if call.carries(weight) or call.carries(bias):
        from .products import matmul_of_activations

        return matmul_of_activations(call)
    scratch = call.session.scratch

    def make(w, b, scale):
        return DenseMap(w, b, scale, x.numel(), scratch)

    return _defer(call, x, weight, bias, make, lambda value: value.ndim == 2, nn.Linear)


def _defer(
    call, x: Tensor, weight: Tensor, bias: Tensor | None, make, mergeable, probe: type
) -> Tensor:
    """The layer's value, pending: ``make(W, b, scale)`` builds its map when it is used, with
    a BatchNorm's scale λ and shift merged in (``mergeable(value)``: whether one can be, on
    the output channels along dim 1)."""
    w = weight.detach()
    b = None if bias is None else bias.detach()
    value = call.plain()

    def build(scale, shift):
        return make(w, b if scale is None else _merged_bias(b, scale, shift), scale)

    channels = w.shape[0] if mergeable(value) else None
    return call.session.defer(call, x, value, build, channels, probe)


def _merged_bias(b: Tensor | None, scale: Tensor, shift: Tensor) -> Tensor:
    """:math:`b'_j = \\lambda_j b_j + \\text{shift}_j` (shift = β − λμ)."""
    return shift if b is None else torch.addcmul(shift, b, scale)


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_TRANSPOSED_ARGS = "input weight bias stride padding output_padding groups dilation".split()


def convolution(call) -> Tensor:
    """``F.conv1d/2d/3d`` and ``F.conv_transpose1d/2d/3d``: pending."""
    transposed = "transpose" in getattr(call.func, "__name__", "")
    names = _TRANSPOSED_ARGS if transposed else _CONV_ARGS
    a = {n: call.arg(i, n) for i, n in enumerate(names)}
    x, weight, bias = a["input"], a["weight"], a["bias"]
    if call.carries(weight) or call.carries(bias):
        raise UnsupportedLayerError(
            f"A convolution in {call.where()} computes its kernel from the input; lrp_tutor "
            "explains convolutions with a fixed kernel."
        )
    dims = weight.ndim - 2
    kernel = tuple(weight.shape[2:])
    dilation = _tuple(1 if a["dilation"] is None else a["dilation"], dims)
    padding = numeric_padding(
        0 if a["padding"] is None else a["padding"], kernel, dilation, call.where()
    )
    options = dict(
        stride=_tuple(1 if a["stride"] is None else a["stride"], dims),
        padding=padding,
        dilation=dilation,
        groups=1 if a["groups"] is None else a["groups"],
        transposed=transposed,
        output_padding=_tuple(a.get("output_padding") or 0, dims),
    )
    scratch = call.session.scratch

    def make(w, b, scale):
        return ConvMap(w, b, scale=scale, activations=x.numel(), scratch=scratch, **options)

    probe = getattr(nn, f"Conv{'Transpose' if transposed else ''}{dims}d")
    return _defer(call, x, weight, bias, make, lambda value: not transposed, probe)


# ------------------------------------------------------------------ BatchNorm


def batch_norm(call) -> Tensor:
    """``F.batch_norm`` in eval mode: merged into the pending layer below it, or on its own a
    per-channel affine map :math:`z_j = \\lambda_j x_j + b'_j`."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum")
    a = {n: call.arg(i, n) for i, n in enumerate(names)}
    eps = call.arg(7, "eps", 1e-5)
    x = a["input"]
    if a["training"] or a["running_mean"] is None:
        raise UnsupportedLayerError(
            f"The BatchNorm in {call.where()} normalises with the statistics of the batch "
            "(track_running_stats=False, or a functional call with training=True), so it is "
            "not a fixed map of each sample; lrp_tutor explains BatchNorm with running "
            "statistics."
        )
    scale, shift = scale_and_shift(a["running_mean"], a["running_var"], a["weight"], a["bias"], eps)
    session = call.session
    pending = session.pending_of(x)
    kind = type(call.module).__name__ if call.own else "batch_norm"
    if pending is not None and pending.channels == scale.shape[0]:
        session_value = call.plain()
        merged = (scale.to(x), shift.to(x), session_value, kind)
        return session.explain_pending(pending, merged)
    if pending is not None:
        x = session.explain_pending(pending)
        call.args = (x, *call.args[1:])
    value = call.plain()
    view = (1, -1) + (1,) * (x.ndim - 2)
    layer = ScaleMap(scale.to(x).view(view), shift.to(x).view(view), session.scratch)
    return explain_linear(
        x, value, layer, call.rule("fixed"), call.booking("batch_norm"), call.where()
    )


# ------------------------------------------------------------------ fixed maps


def scale(call) -> Tensor:
    """``x * c`` and ``x / c`` with a constant ``c`` (a layer scale, a constant factor)."""
    a, b = call.args[0], call.args[1]
    name = getattr(call.func, "__name__", "").strip("_")
    value = call.plain()
    x, c = (a, b) if call.carries(a) else (b, a)
    if isinstance(c, Tensor):
        c = c.detach().to(value)
    else:  # a Python number, in the value's precision (not the default dtype's)
        c = torch.as_tensor(c, dtype=value.dtype, device=value.device)
    if name in ("div", "divide", "true_divide", "truediv"):
        c = 1 / c
    layer = ScaleMap(c, None, call.session.scratch)
    return explain_linear(x, value, layer, call.rule("fixed"), call.booking(name), call.where())


_POOL_ARGS = {
    "avg_pool1d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "avg_pool2d": (
        "kernel_size",
        "stride",
        "padding",
        "ceil_mode",
        "count_include_pad",
        "divisor_override",
    ),
}
_POOL_DEFAULTS = dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True)


def avg_pool(call) -> Tensor:
    """``F.avg_pool1d/2d`` and ``F.adaptive_avg_pool1d/2d``: exact pooling maps."""
    name = getattr(call.func, "__name__", "")
    x = call.args[0]
    value = call.plain()
    adaptive = name.startswith("adaptive")
    dims = 1 if name.endswith("1d") else 2
    if adaptive:
        pool = SimpleNamespace(output_size=call.arg(1, "output_size"))
    else:
        args = {
            k: call.arg(i + 1, k, _POOL_DEFAULTS.get(k)) for i, k in enumerate(_POOL_ARGS[name])
        }
        if args["stride"] is None or args["stride"] == []:
            args["stride"] = args["kernel_size"]
        pool = SimpleNamespace(**args)
    layer = PoolMap(pool, x.shape, x, call.session.scratch, adaptive=adaptive, dims=dims)
    probe = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d)
    probe = probe[(0 if adaptive else 2) + dims - 1]
    rule = call.rule("fixed", probe)
    return explain_linear(x, value, layer, rule, call.booking(name), call.where())


def fixed_function(call, signed: bool = False) -> Tensor:
    """Any other fixed linear map: a mean or sum over dimensions, 3-D average pooling,
    (bi)linear interpolation (non-negative weights), a constant matrix times x (``signed``).
    Its transpose comes from autograd."""
    k = next(i for i, a in enumerate(call.args) if call.carries(a))
    x = call.args[k]
    func, args, kwargs = call.func, call.args, call.kwargs

    def f(t: Tensor) -> Tensor:
        return func(*args[:k], t, *args[k + 1 :], **kwargs)

    value = call.plain()
    name = getattr(func, "__name__", "map")
    layer = FunctionMap(f, f"{name} in {call.where()}", signed=signed, scratch=call.session.scratch)
    probe = nn.AdaptiveAvgPool2d if name == "mean" else None
    rule = call.rule("weighted" if signed else "fixed", probe)
    return explain_linear(x, value, layer, rule, call.booking(name), call.where())


def normalization(call) -> Tensor:
    """``F.layer_norm``, ``F.group_norm``, ``F.rms_norm``: σ held constant."""
    name = getattr(call.func, "__name__", "")
    x = call.args[0]
    value = call.plain()
    if name == "group_norm":
        groups, weight, bias = call.arg(1, "num_groups"), call.arg(2, "weight"), call.arg(3, "bias")
        eps = call.arg(4, "eps", 1e-5)
        view = (1, -1) + (1,) * (x.ndim - 2)
        weight = None if weight is None else weight.detach().view(view)
        bias = None if bias is None else bias.detach().view(view)
        layer = CenteredMap(x, dims=None, groups=groups, weight=weight, bias=bias, eps=eps)
        probe = nn.GroupNorm
    else:
        shape = call.arg(1, "normalized_shape")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dims = tuple(range(-len(shape), 0))
        weight = call.arg(2, "weight")
        weight = None if weight is None else weight.detach()
        if name == "rms_norm":
            eps = call.arg(3, "eps", None)
            eps = torch.finfo(x.dtype).eps if eps is None else eps
            with torch.no_grad():
                rms = (x.detach().pow(2).mean(dims, keepdim=True) + eps).sqrt()
            factor = 1 / rms if weight is None else weight / rms
            layer = ScaleMap(factor, None)
            probe = getattr(nn, "RMSNorm", nn.LayerNorm)
        else:
            bias = call.arg(3, "bias")
            bias = None if bias is None else bias.detach()
            eps = call.arg(4, "eps", 1e-5)
            layer = CenteredMap(x, dims=dims, groups=None, weight=weight, bias=bias, eps=eps)
            probe = nn.LayerNorm
    layer.scratch = call.session.scratch
    rule = call.rule("fixed", probe)
    return explain_linear(x, value, layer, rule, call.booking(name), call.where())


WEIGHTED_LINEAR = ("linear", "addmm")
CONVOLUTIONS = tuple(f"conv{t}{d}d" for t in ("", "_transpose") for d in (1, 2, 3))
AVG_POOLS = ("avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d")
FIXED = ("mean", "sum", "avg_pool3d", "adaptive_avg_pool3d", "nansum", "nanmean")
SCALES = ("mul", "multiply", "div", "divide", "true_divide", "__mul__", "__rmul__", "__truediv__")
NORMS = ("layer_norm", "group_norm", "rms_norm")
