"""Checks of what :func:`~lrp_tutor.fast.explain` is given, with errors a student can act on.

Examples
--------
>>> import torch
>>> check_input(torch.tensor([[1, 2]]))
Traceback (most recent call last):
...
lrp_tutor.errors.InputError: x has dtype torch.int64; LRP needs floating-point input: \
pass x.float() (or x.double()).
>>> resolve_target(None, torch.tensor([[0.1, 0.9], [2.0, -1.0]]))
tensor([1, 0])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..composites import Composite, uniform
from ..errors import CompositeError, InputError, RuleError
from ..rules import Epsilon, Rule

__all__ = [
    "INITS",
    "check_model",
    "check_rule_limits",
    "choose_composite",
    "check_input",
    "check_target",
    "resolve_target",
    "model_dtype_device",
    "check_output",
    "seed",
]

INITS = ("logit", "one")


def choose_composite(rule: Rule | None, composite: Composite | None) -> Composite:
    """``rule`` → ``uniform(rule)``; neither → ``uniform(Epsilon())``; both → error."""
    if rule is not None and composite is not None:
        raise InputError(
            "Give either rule= (one rule for every layer) or composite= (rules per layer), "
            f"not both; got rule={rule!r} and composite={composite!r}."
        )
    if composite is not None:
        if not isinstance(composite, Composite):
            raise CompositeError(
                f"composite must be an lrp_tutor.composites.Composite, got {composite!r}. "
                "For a single rule pass rule= instead."
            )
        return composite
    return uniform(Epsilon() if rule is None else rule)


def check_model(model: Any) -> None:
    """``model`` must be a plain ``nn.Module`` that explain() can follow, outside inference mode.

    Refuses what explain() cannot look into, saying what to explain instead: a
    ``torch.compile`` d module, a TorchScript module, a ``DataParallel`` /
    ``DistributedDataParallel`` wrapper, a call under ``torch.inference_mode()``, and
    parameters created in inference mode.
    """
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}."
        )
    if torch.is_inference_mode_enabled():
        raise InputError(
            "explain() was called under torch.inference_mode(), which turns autograd off for "
            "good; LRP runs a modified backward pass. Call explain() outside the `with "
            "torch.inference_mode():` block (under torch.no_grad() is fine)."
        )
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module):
        raise InputError(
            f"The model is a torch.compile'd module ({type(model).__name__}); compiled code "
            "runs outside Python, where LRP cannot follow its operations. Explain the original "
            "module, which shares its weights: lt.explain(model._orig_mod, x)."
        )
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    if isinstance(model, wrappers):
        raise InputError(
            f"The model is wrapped in {type(model).__name__}; explain the module inside it, "
            "which holds the same weights: lt.explain(model.module, x)."
        )
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            where = "The model is" if not name else f"Layer '{name}' of the model is"
            raise InputError(
                f"{where} a TorchScript module ({type(module).__name__}, from torch.jit.script "
                "or torch.jit.trace); its forward runs outside Python, where LRP cannot follow "
                "its operations. Explain the original nn.Module (build it again and load the "
                "weights: module.load_state_dict(scripted.state_dict()))."
            )
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_inference():
            raise InputError(
                f"The model's tensor '{name}' was created under torch.inference_mode() and "
                "cannot take part in a backward pass. Create or load the model outside "
                "inference mode (torch.no_grad() is fine)."
            )


def _composite_rules(composite: Composite) -> list[tuple[str, Rule]]:
    """(where, rule) for every rule a composite names: ``first``, ``default``, by type and
    by name."""
    found: list[tuple[str, Rule]] = []
    for where in ("first", "default"):
        rule = getattr(composite, where, None)
        if rule is not None:
            found.append((where, rule))
    for key, rule in getattr(composite, "by_type", {}).items():
        names = key if isinstance(key, tuple) else (key,)
        label = ", ".join(getattr(t, "__name__", repr(t)) for t in names)
        found.append((f"by_type[{label}]", rule))
    for key, rule in getattr(composite, "by_name", {}).items():
        found.append((f"by_name[{key!r}]", rule))
    return found


def check_rule_limits(composite: Composite, dtype: torch.dtype) -> None:
    r"""Every rule parameter (ε, γ, α, β, the z^B bounds) must be small enough for ``dtype``.

    The limit is :math:`\sqrt{\max}` of the dtype (≈ 1.8e19 in float32, 1.3e154 in
    float64): a parameter beyond it overflows once it multiplies a weight or an activation
    (γ·w⁺ → inf, and inf/inf is NaN) or cannot even be stored (ε = 1e39 in float32).

    >>> check_rule_limits(uniform(Epsilon(1e39)), torch.float32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_tutor.errors.RuleError: Epsilon(epsilon=1e+39) (the composite's default): epsilon = ...
    """
    if not dtype.is_floating_point:
        return
    limit = math.sqrt(torch.finfo(dtype).max)
    for where, rule in _composite_rules(composite):
        params = getattr(rule, "params", {})
        for name, value in params.items():
            try:
                size = float(np.max(np.abs(np.asarray(_numbers(value), dtype=np.float64))))
            except (TypeError, ValueError):
                continue
            if size > limit:
                slot = "the composite's " + where if where in ("first", "default") else where
                raise RuleError(
                    f"{rule!r} ({slot}): {name} = {size:g} is beyond {limit:.2g}, the largest "
                    f"value that stays finite in {dtype} once it multiplies a weight or an "
                    f"activation. Use a smaller {name}, or explain in float64: "
                    "lt.explain(copy.deepcopy(model).double(), x.double())."
                )


def _numbers(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def check_input(x: Any) -> None:
    """``x`` must be a floating-point tensor with a batch dimension and finite values."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"x must be a torch.Tensor, got {type(x).__name__}; convert it with "
            "torch.as_tensor(x, dtype=torch.float32)."
        )
    if not x.is_floating_point():
        raise InputError(
            f"x has dtype {x.dtype}; LRP needs floating-point input: pass x.float() "
            "(or x.double())."
        )
    if x.ndim < 2:
        raise InputError(
            f"x has shape {tuple(x.shape)}, without a batch dimension; explain() takes a "
            "batch, shape (N, …): for a single sample pass x.unsqueeze(0)."
        )
    if x.shape[0] == 0:
        raise InputError(f"x has shape {tuple(x.shape)}: an empty batch. Pass at least one sample.")
    if x.is_meta:
        raise InputError(
            "x is on the meta device: it has a shape but no values. Pass a tensor with values "
            "(on the CPU or a GPU)."
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        count = int((~finite).sum())
        raise InputError(
            f"x contains {count} NaN or infinite value(s), the first at index {tuple(bad)}; "
            "relevance is only defined for finite inputs."
        )


def check_target(target: Any) -> Tensor | int | None:
    """Normalise ``target`` (None, an int, a sequence or an integer tensor) before the forward."""
    if target is None:
        return None
    if isinstance(target, bool | np.bool_):
        raise InputError(f"target must be a class index (an int), got {target!r}.")
    if isinstance(target, int | np.integer):
        return int(target)
    if isinstance(target, Tensor):
        if target.is_meta:
            raise InputError(
                "target is on the meta device: it has a shape but no values. Pass class "
                "indices with values, e.g. target=torch.tensor([3, 1]) (on any device)."
            )
        t = target.detach()
    elif isinstance(target, np.ndarray | Sequence):
        try:
            t = torch.as_tensor(np.asarray(target))
        except (TypeError, ValueError) as error:
            raise InputError(f"target must be class indices, got {target!r}.") from error
    else:
        raise InputError(
            f"target must be None, an int, a sequence of ints or a LongTensor, got "
            f"{type(target).__name__} {target!r}."
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(
            f"target must hold integer class indices, got dtype {t.dtype} ({target!r}); "
            "pass e.g. target=3 or target=torch.tensor([3, 1])."
        )
    if t.ndim == 0:
        return int(t)
    if t.ndim != 1:
        raise InputError(
            f"target must be one class index per sample, shape (N,), got shape {tuple(t.shape)}."
        )
    return t.long()


def resolve_target(target: Tensor | int | None, output: Tensor) -> Tensor:
    """One class per sample: the predicted class for None; checked against the logits."""
    n, classes = output.shape
    if target is None:
        return output.detach().argmax(1)
    if isinstance(target, int):
        if not 0 <= target < classes:  # also for ints beyond int64, e.g. 2**70
            raise InputError(
                f"target [{target}] out of range: the model has {classes} classes "
                f"(0 … {classes - 1})."
            )
        t = torch.full((n,), target, dtype=torch.long, device=output.device)
    else:
        t = target.to(output.device)
        if t.shape[0] != n:
            raise InputError(
                f"target has {t.shape[0]} entries but the batch has {n} samples; give one "
                "class per sample (or one int for all)."
            )
    bad = (t < 0) | (t >= classes)
    if bool(bad.any()):
        raise InputError(
            f"target {t[bad].unique().tolist()} out of range: the model has {classes} classes "
            f"(0 … {classes - 1})."
        )
    return t


HALF = (torch.float16, torch.bfloat16)
"""Dtypes the fast path refuses: LRP divides by small denominators, and with about three
significant digits the relevance is off by several percent (αβ even overflows float16)."""


def model_dtype_device(model: nn.Module, x: Tensor) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating parameter or buffer (else x's).

    Refuses a model on the meta device (no values) and half precision (float16, bfloat16).
    """
    where = "x has dtype"
    dtype, device = x.dtype, x.device
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_floating_point():
            if t.is_meta:
                raise InputError(
                    f"The model's parameter '{name}' is on the meta device: it has a shape but "
                    "no values. Load the weights first, e.g. model.to_empty(device='cpu') "
                    "followed by model.load_state_dict(...)."
                )
            where, dtype, device = "The model computes in", t.dtype, t.device
            break
    if dtype in HALF:
        raise InputError(
            f"{where} {dtype}; lrp_tutor's fast path needs float32 or float64 (LRP divides by "
            "small denominators, and half precision keeps about 3 digits). Explain a float32 "
            "copy: lt.explain(copy.deepcopy(model).float(), x)."
        )
    return dtype, device


def check_output(output: Any, x: Tensor) -> Tensor:
    """The model must return logits of shape (N, classes)."""
    if not isinstance(output, Tensor):
        raise InputError(
            f"explain() needs a model that returns a tensor of logits, got {type(output).__name__}."
        )
    if output.ndim != 2 or output.shape[0] != x.shape[0]:
        raise InputError(
            f"explain() needs logits of shape (N, classes) for x of shape {tuple(x.shape)}, but "
            f"the model returned shape {tuple(output.shape)}."
        )
    return output


def seed(output: Tensor, target: Tensor, init: str) -> Tensor:
    """:math:`R = f_c(x)\\cdot\\mathrm{onehot}(c)` (init="logit") or onehot(c) (init="one")."""
    r = torch.zeros_like(output)
    index = target[:, None]
    values = output.detach().gather(1, index) if init == "logit" else torch.ones_like(r[:, :1])
    return r.scatter_(1, index, values)
