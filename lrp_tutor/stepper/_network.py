"""From what the user hands over to a flat list of named layers.

A :class:`~lrp_tutor.stepper.Walkthrough` accepts a torch ``nn.Sequential`` (nested
``Sequential`` s are flattened, names as in ``model.named_modules()``, e.g. ``"features.0"``)
or a list of ``(W, b, activation)`` as in Montavon's tutorial, with ``W`` shaped
(n_in, n_out) so that :math:`z = x W + b`. The list becomes an equivalent ``nn.Sequential`` of
``Linear`` and activation modules in float64, named ``"0"``, ``"1"``, …, so that composites
and layer names work the same for both forms.

Examples
--------
>>> import numpy as np
>>> seq = as_sequential([(np.ones((3, 2)), np.zeros(2), "relu"), (np.ones((2, 1)), None, None)])
>>> [(name, type(m).__name__) for name, m in leaf_layers(seq)]
[('0', 'Linear'), ('1', 'ReLU'), ('2', 'Linear')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError

__all__ = ["Activation", "as_sequential", "leaf_layers"]


class Activation(nn.Module):
    """An element-wise activation given as a plain function (numpy or torch).

    The stepper calls ``fn`` on a float64 numpy array first and, if that fails, on a torch
    tensor; the result must have the shape of its input.
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.fn(x))

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


_NAMED_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
    "linear": nn.Identity,
}


def as_sequential(model_or_layers: Any) -> nn.Sequential:
    """The model as an ``nn.Sequential`` (the user's own module, or one built from a list)."""
    if isinstance(model_or_layers, nn.Sequential):
        return model_or_layers
    if isinstance(model_or_layers, nn.Module):
        raise InputError(
            f"The stepper walks an nn.Sequential, got {type(model_or_layers).__name__}. "
            "Write the model's forward as one, e.g. nn.Sequential(model.features, nn.Flatten(), "
            "model.classifier), or pass a list of (W, b, activation)."
        )
    if isinstance(model_or_layers, Sequence) and not isinstance(model_or_layers, str):
        return _from_list(model_or_layers)
    raise InputError(
        "Walkthrough takes an nn.Sequential or a list of (W, b, activation) with W shaped "
        f"(n_in, n_out); got {type(model_or_layers).__name__}."
    )


def _from_list(layers: Sequence[Any]) -> nn.Sequential:
    if len(layers) == 0:
        raise InputError("The list of layers is empty; give at least one (W, b, activation).")
    modules: list[nn.Module] = []
    for k, layer in enumerate(layers):
        if not isinstance(layer, Sequence) or len(layer) not in (2, 3):
            raise InputError(
                f"Layer {k} of the list must be a tuple (W, b, activation) or (W, b), "
                f"got {layer!r}."
            )
        w, b, activation = (*layer, None) if len(layer) == 2 else layer
        modules.append(_linear(k, w, b))
        if activation is not None:
            modules.append(_activation(k, activation))
    return nn.Sequential(*modules)


def _to_numpy(k: int, what: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"Layer {k} of the list: {what} must be an array, got {value!r}."
        ) from error
    if not np.all(np.isfinite(array)):
        raise InputError(f"Layer {k} of the list: {what} contains NaN or infinity.")
    return array


def _linear(k: int, w: Any, b: Any) -> nn.Linear:
    w = _to_numpy(k, "W", w)
    if w.ndim != 2:
        raise InputError(
            f"Layer {k} of the list: W must be 2-D (n_in, n_out), got shape {w.shape}."
        )
    n_in, n_out = w.shape
    linear = nn.Linear(n_in, n_out, bias=b is not None, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T.copy()))
        if b is not None:
            b = _to_numpy(k, "b", b)
            if b.shape != (n_out,):
                raise InputError(
                    f"Layer {k} of the list: b must have shape ({n_out},) to match W {w.shape}, "
                    f"got {b.shape}."
                )
            linear.bias.copy_(torch.from_numpy(b))
    return linear


def _activation(k: int, activation: Any) -> nn.Module:
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str):
        make = _NAMED_ACTIVATIONS.get(activation.lower())
        if make is None:
            raise InputError(
                f"Layer {k} of the list: unknown activation {activation!r}; use one of "
                f"{', '.join(map(repr, _NAMED_ACTIVATIONS))}, None, a function or an nn.Module."
            )
        return make()
    if callable(activation):
        return Activation(activation)
    raise InputError(
        f"Layer {k} of the list: the activation must be a name like 'relu', None, a function or "
        f"an nn.Module, got {activation!r}."
    )


def leaf_layers(model: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` in forward order, nested ``Sequential`` s flattened, with their
    names as in ``model.named_modules()``."""
    layers: list[tuple[str, nn.Module]] = []
    for name, child in model._modules.items():  # also a module used twice (named_children skips)
        if child is None:
            continue
        full = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            layers.extend(leaf_layers(child, prefix=f"{full}."))
        else:
            layers.append((full, child))
    return layers
