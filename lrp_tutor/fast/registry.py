r"""The one registry of operation families: the only place that knows them all.

Each :class:`Family` names the torch functions it explains (looked up by name in ``torch``,
``torch.Tensor`` and ``torch.nn.functional``; in-place variants and ``inplace=True`` are
found from there), its treatment in the fast path (a function of one intercepted
:class:`~lrp_tutor.fast.engine.Call`), the stepper's float64 counterpart that agreement
tests compare it with, and its line in the supported-operations text. Adding a family means
a module in :mod:`lrp_tutor.fast.families` and an entry in :data:`FAMILIES`.

>>> import torch
>>> family_of(torch.nn.functional.conv2d).name
'convolution'
>>> family_of(torch.Tensor.add_).name   # in-place variants belong to their family
'sum'
>>> print(supported_text().splitlines()[0][:60])
- linear: F.linear, torch.addmm (GPT-2's Conv1D), a matmul w
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .families import (
    attention,
    elementwise,
    linear,
    local_response_norm,
    products,
    routing,
    sums,
)

__all__ = ["Family", "FAMILIES", "family_of", "resolve", "supported_text", "unsupported"]


@dataclass(frozen=True)
class Family:
    """One operation family.

    Attributes
    ----------
    name : str
        A short name (the ledger says it for operations outside leaf modules).
    functions : tuple of str
        Names of the torch functions, tensor methods and functionals it explains.
    treat : callable
        ``treat(call) -> value``: the operation's value with LRP's backward attached.
    stepper : str or None
        The class in :mod:`lrp_tutor.stepper` that computes the same rule in float64, one
        neuron at a time (tests/test_agreement.py compares the two to 1e-10), or None where
        tests/test_families.py's dense float64 oracle checks the family instead.
    text : str
        Its line in the supported-operations list.
    takes_pending : bool
        Whether it receives pending linear outputs as they are (BatchNorm merges them).
    returns_none : bool
        Whether the operation returns None (``__setitem__``).
    """

    name: str
    functions: tuple[str, ...]
    treat: Callable[[Any], Any]
    stepper: str | None
    text: str
    takes_pending: bool = False
    returns_none: bool = False


FAMILIES: tuple[Family, ...] = (
    Family(
        "linear",
        linear.WEIGHTED_LINEAR,
        linear.linear,
        "Dense",
        "F.linear, torch.addmm (GPT-2's Conv1D), a matmul with a weight — the layer's rule "
        "(BatchNorm after it merged in)",
    ),
    Family(
        "convolution",
        linear.CONVOLUTIONS,
        linear.convolution,
        "Patch",
        "F.conv1d/2d/3d (grouped, depthwise, dilated), F.conv_transpose1d/2d/3d — the layer's "
        "rule (BatchNorm after it merged in)",
    ),
    Family(
        "matmul",
        products.MATMULS,
        products.matmul,
        "Dense",
        "a @ W, torch.matmul/mm/bmm — with a constant: the layer's rule; of two activations: "
        "AttnLRP's uniform rule",
    ),
    Family(
        "batch_norm",
        ("batch_norm",),
        linear.batch_norm,
        None,
        "F.batch_norm (eval) — merged into the linear layer below it, else a per-channel "
        "affine map",
        takes_pending=True,
    ),
    Family(
        "avg_pool",
        linear.AVG_POOLS,
        linear.avg_pool,
        "AveragePool",
        "F.avg_pool1d/2d, F.adaptive_avg_pool1d/2d — exact pooling maps",
    ),
    Family(
        "mean",
        linear.FIXED,
        linear.fixed_function,
        None,
        "x.mean(dims), x.sum(dims), 3-D average pooling — fixed linear maps",
    ),
    Family(
        "normalization",
        linear.NORMS,
        linear.normalization,
        None,
        "F.layer_norm, F.group_norm, F.rms_norm — the standard deviation held constant",
    ),
    Family(
        "local_response_norm",
        local_response_norm.FUNCTIONS,
        local_response_norm.local_response_norm,
        None,
        "F.local_response_norm — the divisor held constant",
    ),
    Family(
        "product",
        products.PRODUCTS,
        products.multiply,
        None,
        "x * c, x / c (a layer scale, a constant); x * g(s) (a gate: g held constant); "
        "a * b of two activations (the uniform rule)",
    ),
    Family(
        "sum",
        sums.SUMS,
        sums.add,
        None,
        "a + b, a - b, +=, torch.add (a residual join); x + c (a constant, booked as a bias)",
    ),
    Family(
        "activation",
        tuple(elementwise.ACTIVATIONS),
        elementwise.pass_through,
        "Elementwise",
        "element-wise activations (ReLU, ReLU6, LeakyReLU, SiLU, GELU, Hardswish, Sigmoid, "
        "Tanh, …) — relevance passes through",
    ),
    Family(
        "softmax",
        attention.SOFTMAX,
        attention.softmax,
        None,
        "softmax — held constant (CP-LRP: a product with it is a linear map of the other "
        "factor) or AttnLRP's rule R_i = x_i (R_i - s_i Σ_j R_j), as the composite's "
        "attention says",
    ),
    Family(
        "attention",
        attention.SDPA + attention.MHA,
        attention.treat,
        None,
        "F.scaled_dot_product_attention, nn.MultiheadAttention (masks, causal) — the "
        "operations they stand for: softmax(Q Kᵀ·scale + M) V",
    ),
    Family(
        "interpolate",
        ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"),
        routing.interpolate,
        None,
        "F.interpolate — nearest: routing; (bi)linear: a fixed linear map",
    ),
    Family(
        "max_pool",
        tuple(routing.MAX_POOLS),
        routing.max_pool,
        "MaxPool",
        "F.max_pool1d/2d/3d — the winner takes all (only its index is kept)",
    ),
    Family(
        "routing",
        tuple(routing.ROUTES),
        routing.route,
        "Reshape",
        "reshape, view, flatten, permute, transpose, cat, stack, split, chunk, slicing, pad, "
        "channel shuffle, dropout (eval), max pooling (the winner takes all) — exact routing",
    ),
    Family(
        "pad",
        ("pad",),
        routing.pad,
        None,
        "F.pad — reflect/replicate: routing; constant: relevance sent to the padding is "
        "absorbed (booked like a bias)",
    ),
    Family(
        "factory",
        routing.FACTORIES,
        routing.constant,
        None,
        "x.new_zeros, torch.zeros_like, … — new tensors of x's shape, constants",
    ),
    Family("setitem", ("__setitem__",), routing.setitem, None, "x[i] = y", returns_none=True),
    Family("copy", ("copy_",), routing.copy, None, "x.copy_(y)", returns_none=False),
)

ELEMENTWISE_MODULES = frozenset(
    (
        "NewGELUActivation GELUActivation FastGELUActivation QuickGELUActivation "
        "ClippedGELUActivation AccurateGELUActivation GELUTanh PytorchGELUTanh SiLUActivation "
        "MishActivation LaplaceActivation ReLUSquaredActivation QuickGELU GELUTanh Swish "
        "HardSwish HardSigmoid"
    ).split()
)
"""Activation modules written as code (Hugging Face's ``transformers.activations``, timm's
``layers.activations``) that act on one element at a time: relevance passes through them
unchanged, as through ``F.gelu`` (their products inside are not explained one by one)."""

NODES = frozenset(
    f._backward_cls for f in (routing.ConstantPad, routing.WinnerTakesAll, routing.ConstantSink)
)
"""Autograd nodes of the families' own functions (beside those of lrp_tutor.fast.functions)."""

_NAMESPACES = (torch, torch.Tensor, F, torch.special, torch._C._nn)
_AUGMENTED = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div"}


def _build() -> tuple[dict[Any, Family], dict[Any, Any], dict[Any, int]]:
    families: dict[Any, Family] = {}
    inplace: dict[Any, Any] = {}  # in-place function → its out-of-place twin
    flags: dict[Any, int] = {}  # function → position of its `inplace` parameter
    for family in FAMILIES:
        for name in family.functions:
            for space in _NAMESPACES:
                f = getattr(space, name, None)
                if f is None or isinstance(f, property) or not callable(f):
                    if space is torch.Tensor and name in ("T", "mT", "H", "mH"):
                        families[("get", name)] = family
                    continue
                families.setdefault(f, family)
                twin = getattr(space, name + "_", None)
                if twin is not None and not name.startswith("__") and not name.endswith("_"):
                    inplace.setdefault(twin, f)
                if space is F:
                    try:
                        params = list(inspect.signature(f).parameters)
                    except (TypeError, ValueError):
                        params = []
                    if "inplace" in params:
                        flags[f] = params.index("inplace")
    for name, base in _AUGMENTED.items():
        inplace[getattr(torch.Tensor, name)] = getattr(torch.Tensor, base)
    return families, inplace, flags


_FAMILIES, _INPLACE, _FLAGS = _build()


def _key(func: Any) -> Any:
    if getattr(func, "__name__", "") == "__get__":  # a property: x.T, x.data
        return ("get", getattr(getattr(func, "__self__", None), "__name__", "?"))
    return func


def family_of(func: Any) -> Family | None:
    """The family of a torch function (in-place variants: their out-of-place twin's)."""
    key = _key(func)
    try:
        return _FAMILIES.get(key) or _FAMILIES.get(_INPLACE.get(key))
    except TypeError:  # an unhashable callable
        return None


def resolve(func: Any, args: tuple, kwargs: dict) -> tuple[Family | None, Any, Any, tuple, dict]:
    """``(family, function, target, args, kwargs)`` for one call.

    An in-place call is turned into its out-of-place twin; ``target`` is then the tensor it
    would have modified (None otherwise).
    """
    key = _key(func)
    try:
        family = _FAMILIES.get(key)
    except TypeError:
        return None, func, None, args, kwargs
    if family is not None and family.returns_none:  # __setitem__
        return family, func, args[0], args, kwargs
    twin = _INPLACE.get(key)
    if twin is not None:
        return _FAMILIES.get(twin), twin, args[0] if args else None, args, kwargs
    if family is not None and family.name == "copy":
        return family, func, args[0], args, kwargs
    position = _FLAGS.get(key)
    if position is not None:
        if kwargs.get("inplace"):
            return family, func, args[0], args, {**kwargs, "inplace": False}
        if position < len(args) and args[position]:
            args = (*args[:position], False, *args[position + 1 :])
            return family, func, args[0], args, kwargs
    return family, func, None, args, kwargs


def describe(func: Any) -> str:
    """A readable name of a torch function: ``torch.nn.functional.relu``, ``Tensor.add_``."""
    key = _key(func)
    if isinstance(key, tuple):
        return f"Tensor.{key[1]}"
    name = getattr(func, "__name__", repr(func))
    if type(func).__name__ in ("method_descriptor", "wrapper_descriptor", "function") and (
        getattr(torch.Tensor, name, None) is func
    ):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None) or "torch"
    if module.startswith("torch._C"):
        module = "torch.nn.functional" if module == "torch._C._nn" else "torch"
    return f"{module}.{name}"


_HINTS = {
    "softmax": "explain the logits: remove the softmax from the model",
    "log_softmax": "explain the logits: remove the log-softmax from the model",
    "softmin": "explain the logits: remove the softmin from the model",
    "lstm": "recurrent layers have no LRP rule in lrp_tutor",
    "gru": "recurrent layers have no LRP rule in lrp_tutor",
    "rnn_tanh": "recurrent layers have no LRP rule in lrp_tutor",
    "rnn_relu": "recurrent layers have no LRP rule in lrp_tutor",
    "detach": "relevance cannot pass a detached tensor: remove .detach() (or .data) from the "
    "forward while explaining",
    "data": "relevance cannot pass a detached tensor: remove .detach() (or .data) from the "
    "forward while explaining",
}


def unsupported(func: Any, where: str) -> str:
    """The message for an operation without a family."""
    key = _key(func)
    name = key[1] if isinstance(key, tuple) else getattr(func, "__name__", "")
    hint = _HINTS.get(name.lstrip("_").rstrip("_"))
    if hint is None:
        hint = (
            "it has no LRP rule in lrp_tutor. Supported operations (README, 'Layers'):\n"
            + supported_text()
        )
    return f"{describe(func)} in {where}: {hint}."


def supported_text() -> str:
    """The supported operations, one line per family."""
    return "\n".join(f"- {f.name}: {f.text}" for f in FAMILIES)
