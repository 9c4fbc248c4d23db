"""What the widgets accept: one sample, a model or a walkthrough, a rule or a composite.

Nothing here computes LRP: the stepper (:class:`~lrp_tutor.stepper.Walkthrough`) and the fast
path (:func:`lrp_tutor.fast.explain`) do; these helpers only check and pass arguments on.

>>> import torch
>>> as_sample(torch.zeros(1, 3)).shape
torch.Size([1, 3])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..composites import Composite
from ..errors import InputError
from ..fast import Explanation, explain
from ..rules import Rule
from ..stepper import Walkthrough

__all__ = [
    "as_sample",
    "as_walkthrough",
    "explain_one",
    "rule_label",
    "torch_threads",
    "index_label",
    "resolve_threads",
    "SMALL_MODEL",
]

SMALL_MODEL = 1_000_000
"""Models with at most this many parameters are explained on one torch thread by default."""


def as_sample(x: Any) -> torch.Tensor:
    """One sample as a tensor with a leading batch dimension of 1 (numpy is converted).

    The widgets explain one sample: ``x`` must have shape (1, …).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(
            f"x must be a torch tensor (or numpy array) of shape (1, …), got {type(x).__name__}."
        )
    if x.ndim < 2 or x.shape[0] != 1:
        raise InputError(
            f"x must be one sample with a leading batch dimension of 1, got shape "
            f"{tuple(x.shape)}. Pass x[k:k+1] for sample k of a batch, or x[None] (x.unsqueeze(0)) "
            "for a single sample without a batch dimension."
        )
    return x


def as_walkthrough(
    walk_or_model: Walkthrough | nn.Module | list[Any],
    x: Any = None,
    *,
    target: int | None = None,
    rule: Rule | Composite | None = None,
) -> Walkthrough:
    """A walkthrough whose relevance has been propagated.

    ``walk_or_model`` is a :class:`~lrp_tutor.stepper.Walkthrough` (forwarded and propagated
    already, or given ``x`` here), an ``nn.Sequential`` or a list of ``(W, b, activation)``.
    """
    if isinstance(walk_or_model, Walkthrough):
        walk = walk_or_model
        if x is not None:
            walk.forward(x)
        else:
            try:
                _ = walk.output  # raises when forward() has not run
            except InputError:
                raise InputError(
                    "The walkthrough has no input yet: pass x, or call walk.forward(x) first."
                ) from None
        if x is not None or not walk.steps or target is not None or rule is not None:
            walk.backward(target=target, rule=rule)
        return walk
    if x is None:
        raise InputError(
            "x is missing: the widget walks one sample through the model; pass "
            "stepper(model, x) with x of shape (1, …) or a sample without batch dimension."
        )
    return Walkthrough(walk_or_model).forward(x).backward(target=target, rule=rule)


def explain_one(
    model: nn.Module, x: torch.Tensor, spec: Rule | Composite, target: int | None = None
) -> Explanation:
    """:func:`lrp_tutor.fast.explain` with a rule (``rule=``) or a composite (``composite=``)."""
    if isinstance(spec, Composite):
        return explain(model, x, target=target, composite=spec)
    return explain(model, x, target=target, rule=spec)


def rule_label(spec: Rule | Composite) -> str:
    """A short name: ``ε=0.25``, ``α2β1``, or a composite's repr.

    >>> from lrp_tutor.rules import Epsilon
    >>> rule_label(Epsilon(0.25))
    'ε=0.25'
    """
    return spec.name if isinstance(spec, Rule) else repr(spec)


def resolve_threads(threads: int | None | str, model: nn.Module) -> int | None:
    """The torch threads to explain with: ``threads`` itself, or for ``"auto"`` 1 for a small
    model (at most :data:`SMALL_MODEL` parameters) and None (torch's own setting) else.

    >>> resolve_threads("auto", nn.Linear(3, 2)), resolve_threads("auto", nn.Linear(1000, 1001))
    (1, None)
    """
    if threads == "auto":
        count = sum(p.numel() for p in model.parameters())
        return 1 if count <= SMALL_MODEL else None
    if threads is None or (
        isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    ):
        return threads
    raise InputError(
        f'threads must be a positive integer, None (torch\'s setting) or "auto", got {threads!r}.'
    )


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (None: leave torch's setting), then restore.

    One sample through a small model is too little work to share between threads; on a busy
    machine the threads' waiting for each other costs more than the work itself.
    """
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def index_label(flat: int, shape: tuple[int, ...]) -> str:
    """Element ``flat`` of an array of ``shape`` as a reader names it: ``3`` or ``(0,1,2)``;
    ``pad`` for a padded position (−1).

    >>> index_label(5, (2, 3)), index_label(4, (10,)), index_label(-1, (2, 3))
    ('(1,2)', '4', 'pad')
    """
    if flat < 0:
        return "pad"
    if len(shape) <= 1:
        return str(int(flat))
    return "(" + ",".join(str(int(k)) for k in np.unravel_index(int(flat), shape)) + ")"
