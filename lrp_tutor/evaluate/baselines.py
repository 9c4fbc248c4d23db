r"""Explanations to compare LRP against: the gradient and gradient × input, by autograd.

Both are *explainers*, ``explainer(model, x, target) -> relevance``, so they can be passed
wherever an evaluation takes a method.

.. math::

    R^{\text{grad}}_i = \frac{\partial f_c(x)}{\partial x_i},
    \qquad
    R^{\text{grad}\times\text{input}}_i = x_i \, \frac{\partial f_c(x)}{\partial x_i}

On a bias-free ReLU network LRP-0 equals gradient × input (Montavon et al. 2019, sec. 10.2.1).
Only the input gets a gradient: the parameters' ``.grad`` stay as they were, and the model
is evaluated in eval mode and then put back in its own mode.

Examples
--------
>>> import torch
>>> model = torch.nn.Linear(3, 2, bias=False).double()
>>> with torch.no_grad():
...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 0.0]]))
>>> x = torch.tensor([[2.0, 1.0, 4.0]], dtype=torch.float64)
>>> gradient(model, x, target=0)
tensor([[ 1.0000, -2.0000,  0.5000]], dtype=torch.float64)
>>> gradient_x_input(model, x, target=0)
tensor([[ 2., -2.,  2.]], dtype=torch.float64)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._common import as_input, check_output, eval_mode, resolve_target, scores

__all__ = ["gradient", "gradient_x_input", "random_relevance"]


def gradient(model: nn.Module, x: Any, target: Any = None) -> torch.Tensor:
    r""":math:`\partial f_c(x) / \partial x_i` for every sample, shape of ``x``.

    Parameters
    ----------
    model : nn.Module
        Returns logits of shape (N, classes).
    x : tensor, shape (N, …)
        The inputs.
    target : int, sequence of int or tensor, optional
        The class *c* of each sample; default the predicted class.
    """
    x = as_input(model, x)
    target = resolve_target(model, x, target)
    with torch.enable_grad(), eval_mode(model):
        x = x.clone().requires_grad_(True)
        output = check_output(model(x), x.shape[0])
        (grad,) = torch.autograd.grad(scores(output, target).sum(), x)
    return grad.detach()


def gradient_x_input(model: nn.Module, x: Any, target: Any = None) -> torch.Tensor:
    r""":math:`x_i \cdot \partial f_c(x) / \partial x_i` for every sample, shape of ``x``."""
    x = as_input(model, x)
    return x * gradient(model, x, target)


def random_relevance(seed: int = 0) -> Any:
    """An explainer that returns uniform noise (seeded): the floor any method must beat.

    >>> import torch
    >>> explainer = random_relevance(seed=1)
    >>> r = explainer(None, torch.zeros(2, 3), None)
    >>> r.shape, bool((r >= 0).all() and (r < 1).all())
    (torch.Size([2, 3]), True)
    """

    def random(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float64)
        return noise.to(device=x.device, dtype=x.dtype)

    random.__name__ = "random"
    return random
