"""The graph check: nothing between the input and the logits may be silently wrong.

After the forward pass, every supported layer's output hangs on one of the fast path's own
autograd nodes. What is left between them are operations written in a model's ``forward``.
Relevance passes correctly only through those that move values without computing with them
(reshape, flatten, permute, cat, slicing…): a gradient through ``x + y`` would give both
summands all the relevance, through ``F.relu`` it would drop relevance. This module walks
the autograd graph from the output down to the input and raises
:class:`~lrp_tutor.errors.UnsupportedLayerError` for anything else, naming the operation and
the module it happens in.

Examples
--------
>>> import torch
>>> x = torch.ones(2, 3, requires_grad=True)
>>> check_graph(x.flatten(), x, ours=frozenset())   # a reshape is fine
>>> check_graph(x + 1, x, ours=frozenset())
Traceback (most recent call last):
...
lrp_tutor.errors.UnsupportedLayerError: AddBackward0 in the model's forward: an addition \
outside a module — wrap it in lrp_tutor.fast.Sum (a residual join), or use a \
torchvision-style residual block, which lrp_tutor recognises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..errors import UnsupportedLayerError

__all__ = ["SAFE_OPS", "check_graph"]

SAFE_OPS = frozenset(
    {
        "ViewBackward0",
        "UnsafeViewBackward0",
        "ReshapeAliasBackward0",
        "PermuteBackward0",
        "TransposeBackward0",
        "TBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "SqueezeBackward3",
        "SqueezeBackward4",
        "UnsqueezeBackward0",
        "CatBackward0",
        "StackBackward0",
        "SplitBackward0",
        "SplitWithSizesBackward0",
        "UnbindBackward0",
        "SelectBackward0",
        "SliceBackward0",
        "IndexBackward0",
        "CloneBackward0",
        "ToCopyBackward0",
        "AliasBackward0",
    }
)
"""Operations that only move values around (relevance moves with them)."""

_WHAT = {
    "AddBackward0": "an addition outside a module — wrap it in lrp_tutor.fast.Sum (a residual "
    "join), or use a torchvision-style residual block, which lrp_tutor recognises",
    "AddBackward1": "an addition of a constant outside a module (a bias without a layer)",
    "SubBackward0": "a subtraction outside a module",
    "SubBackward1": "a subtraction of a constant outside a module",
    "MulBackward0": "a multiplication outside a module",
    "MulBackward1": "a multiplication by a constant outside a module",
    "DivBackward0": "a division outside a module",
    "DivBackward1": "a division by a constant outside a module",
    "ReluBackward0": "a ReLU called as a function (F.relu, torch.relu, x.relu()) — use the module "
    "nn.ReLU() so that relevance passes unchanged",
    "SigmoidBackward0": "a sigmoid called as a function — use the module nn.Sigmoid()",
    "TanhBackward0": "a tanh called as a function — use the module nn.Tanh()",
    "SoftmaxBackward0": "a softmax — explain the logits: remove the softmax from the model",
    "LogSoftmaxBackward0": "a log-softmax — explain the logits: remove it from the model",
    "AccumulateGrad": "relevance would flow into a parameter of the model, not into the input",
    "BackwardHookFunctionBackward": "a backward hook on a module (register_full_backward_hook "
    "or register_full_backward_pre_hook); LRP replaces the backward pass, so the hook would see "
    "relevance, not gradients: remove it while explaining (handle.remove())",
}


def _what(name: str) -> str:
    if name in _WHAT:
        return _WHAT[name]
    if name.endswith("Backward0") or name.endswith("Backward1"):
        op = name.rsplit("Backward", 1)[0]
        return f"an operation ({op}) lrp_tutor has no LRP rule for"
    return "an operation lrp_tutor has no LRP rule for"


def check_graph(
    output: Tensor,
    x: Tensor,
    ours: frozenset,
    describe: Callable[[Any, tuple[str, ...]], str] | None = None,
    names: dict[Any, tuple[str, ...]] | None = None,
    special: Callable[[Any], str | None] | None = None,
) -> None:
    """Raise :class:`~lrp_tutor.errors.UnsupportedLayerError` for any unsafe node.

    Parameters
    ----------
    output : Tensor
        The model's output.
    x : Tensor
        The input (a leaf that requires grad).
    ours : frozenset
        Backward node types of the fast path's own functions.
    describe : callable, optional
        ``describe(node, path)`` says where a bad node sits (module names); ``path`` is the
        tuple of module names whose outputs lie above the node.
    names : dict, optional
        ``{node: (module names)}`` of module outputs, used to build ``path``.
    special : callable, optional
        ``special(node)`` gives the whole message for nodes it knows (or None).
    """
    names = names or {}
    seen: set[Any] = set()
    stack: list[tuple[Any, tuple[str, ...]]] = [(output.grad_fn, ())]
    while stack:
        node, path = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        path = path + names.get(node, ())
        kind = type(node).__name__
        if kind == "AccumulateGrad" and node.variable is x:
            continue
        if type(node) not in ours and kind not in SAFE_OPS:
            message = special(node) if special else None
            if message:
                raise UnsupportedLayerError(message)
            where = describe(node, path) if describe else "in the model's forward"
            raise UnsupportedLayerError(f"{kind} {where}: {_what(kind)}.")
        stack.extend((child, path) for child, _ in node.next_functions)
