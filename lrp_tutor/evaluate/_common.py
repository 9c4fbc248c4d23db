"""What every evaluation needs: targets, the model's device, relevance maps from methods.

An evaluation takes a *method* in one of four forms and turns it into a relevance map of
the shape of the input:

- a relevance map itself (a tensor or array of the shape of ``x``);
- a :class:`~lrp_tutor.rules.Rule` (``lrp_tutor.fast.explain(model, x, target, rule=…)``);
- a :class:`~lrp_tutor.composites.Composite` (``explain(…, composite=…)``);
- an *explainer*, any callable ``explainer(model, x, target) -> relevance`` (a tensor, or an
  object with a ``.relevance`` tensor such as an ``Explanation``), e.g.
  :func:`lrp_tutor.evaluate.gradient`.

The target is always passed on as a 1-D ``torch.long`` tensor with one class per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError

Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]
"""``explainer(model, x, target) -> relevance`` (a tensor of the shape of x)."""


def model_device(model: nn.Module, x: torch.Tensor) -> torch.device:
    """The device of the model's first parameter or buffer; x's device if it has none."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return x.device


def as_input(model: nn.Module, x: Any, name: str = "x") -> torch.Tensor:
    """``x`` as a detached tensor on the model's device, with a batch axis (N, …)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor of shape (N, …), got {type(x).__name__}.")
    if x.ndim < 2:
        raise InputError(
            f"{name} must have a batch axis, shape (N, …), got shape {tuple(x.shape)}; "
            f"use {name}[None] for a single sample."
        )
    if not torch.is_floating_point(x):
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}.")
    return x.detach().to(model_device(model, x))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode inside the block and restore each one's flag after."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def scores(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:math:`f_c(x)`: the output of each sample at its target class, shape (N,)."""
    return output.gather(1, target[:, None].to(output.device))[:, 0]


def check_output(output: Any, n: int) -> torch.Tensor:
    """The model's output must be logits of shape (N, classes)."""
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != n:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"The model must return logits of shape (N, classes) = ({n}, …), got {shape}. "
            "Wrap it so that it returns one row of scores per sample."
        )
    return output


def resolve_target(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    """One class per sample as a long tensor (N,); ``None`` gives the predicted classes."""
    n = x.shape[0]
    with torch.no_grad(), eval_mode(model):
        output = check_output(model(x), n)
    classes = output.shape[1]
    if target is None:
        return output.argmax(dim=1)
    t = torch.as_tensor(target, device=x.device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise InputError(f"target must be an int or ints (class indices), got {target!r}.")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.shape != (n,):
        raise InputError(
            f"target must be one int or one int per sample ({n}), got {t.numel()} values."
        )
    if ((t < 0) | (t >= classes)).any():
        raise InputError(
            f"target {t.tolist()} is out of range: the model has {classes} classes "
            f"(0…{classes - 1})."
        )
    return t.clone()


def method_name(method: Any) -> str:
    """A short name for a method in tables and legends."""
    name = getattr(method, "name", None)
    if isinstance(name, str):
        return name
    return getattr(method, "__name__", None) or repr(method)


def relevance_of(
    method: Any, model: nn.Module, x: torch.Tensor, target: torch.Tensor, name: str = "relevance"
) -> torch.Tensor:
    """The relevance map of ``method`` (map, Rule, Composite or explainer) for ``x``.

    The map comes back detached, on x's device, in x's dtype, with the shape of ``x``.
    """
    from ..composites import Composite
    from ..rules import Rule

    if isinstance(method, Rule | Composite):
        from .. import fast  # lazily: the fast path is optional for the evaluation

        keyword = "rule" if isinstance(method, Rule) else "composite"
        relevance = fast.explain(model, x, target=target, **{keyword: method})
    elif isinstance(method, torch.Tensor | np.ndarray):
        relevance = method
    elif callable(method):
        relevance = method(model, x, target)
    else:
        raise InputError(
            f"{name} must be a relevance map (shape {tuple(x.shape)}), a Rule, a Composite or "
            f"an explainer(model, x, target), got {type(method).__name__}."
        )
    relevance = getattr(relevance, "relevance", relevance)
    if isinstance(relevance, np.ndarray):
        relevance = torch.from_numpy(relevance)
    if not isinstance(relevance, torch.Tensor):
        raise InputError(
            f"{name}: the explainer returned {type(relevance).__name__}; it must return a "
            f"tensor of the shape of x, {tuple(x.shape)}."
        )
    if tuple(relevance.shape) != tuple(x.shape):
        raise InputError(
            f"{name} has shape {tuple(relevance.shape)} but x has shape {tuple(x.shape)}; "
            "the relevance map must have the shape of the input."
        )
    relevance = relevance.detach().to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(relevance).all():
        raise InputError(f"{name} contains NaN or infinite values.")
    return relevance


def heatmap(relevance: torch.Tensor) -> torch.Tensor:
    """The map a student sees: relevance summed over channels, shape (N, *spatial).

    Inputs of shape (N, C, …) lose their channel axis; inputs of shape (N, D) (features
    without channels) stay as they are.
    """
    return relevance.sum(dim=1) if relevance.ndim >= 3 else relevance


def progress_bar(total: int, enabled: bool | None, description: str, auto_above: int) -> Any:
    """A tqdm.auto bar (notebook or terminal), or None when switched off or tqdm is missing.

    ``enabled=None`` shows the bar only when there are more than ``auto_above`` items.
    """
    if enabled is False or (enabled is None and total <= auto_above):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=description, leave=False)
