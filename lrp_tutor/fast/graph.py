"""The graph check: nothing between the input and the logits may be silently wrong.

After the forward pass, every operation on relevance went through a family of
:mod:`lrp_tutor.fast.registry`: its autograd node is the family's own, or one that a routing
operation made (whose gradient is exact routing). Anything else reached the graph without
the engine seeing it — a backward hook, a TorchScript submodule, an autograd function of the
model's own — and a gradient through it would be silently wrong. This module walks the
autograd graph from the output down to the input and raises
:class:`~lrp_tutor.errors.UnsupportedLayerError` for such a node.

Examples
--------
>>> import torch
>>> x = torch.ones(2, 3, requires_grad=True)
>>> check_graph(x.flatten(), x, allowed=lambda node: node.name() == "ViewBackward0")
>>> check_graph(x * 2, x, allowed=lambda node: False)
Traceback (most recent call last):
...
lrp_tutor.errors.UnsupportedLayerError: MulBackward0 in the model's forward: an operation \
(Mul) that lrp_tutor did not see, so it has no LRP rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..errors import UnsupportedLayerError

__all__ = ["check_graph"]

_WHAT = {
    "AccumulateGrad": "relevance would flow into a parameter of the model, not into the input",
    "BackwardHookFunctionBackward": "a backward hook on a module (register_full_backward_hook "
    "or register_full_backward_pre_hook); LRP replaces the backward pass, so the hook would see "
    "relevance, not gradients: remove it while explaining (handle.remove())",
}


def _what(name: str) -> str:
    if name in _WHAT:
        return _WHAT[name]
    op = name.rsplit("Backward", 1)[0]
    return f"an operation ({op}) that lrp_tutor did not see, so it has no LRP rule"


def check_graph(
    output: Tensor,
    x: Tensor,
    allowed: Callable[[Any], bool],
    describe: Callable[[Any], str] | None = None,
) -> None:
    """Raise :class:`~lrp_tutor.errors.UnsupportedLayerError` for any node not ``allowed``.

    Parameters
    ----------
    output : Tensor
        The model's output.
    x : Tensor
        The input (a leaf that requires grad).
    allowed : callable
        ``allowed(node)``: whether relevance may pass the autograd node.
    describe : callable, optional
        ``describe(node)`` says where a bad node sits.
    """
    seen: set[Any] = set()
    stack: list[Any] = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        kind = type(node).__name__
        if kind == "AccumulateGrad" and node.variable is x:
            continue
        if not allowed(node):
            where = describe(node) if describe else "in the model's forward"
            raise UnsupportedLayerError(f"{kind} {where}: {_what(kind)}.")
        stack.extend(child for child, _ in node.next_functions)
