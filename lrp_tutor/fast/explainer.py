r"""``explain()``: LRP for a batch in one forward and one modified backward pass.

.. math::

    R^{(L)} = f_c(x)\cdot\mathrm{onehot}(c), \qquad
    R^{(l-1)} = \text{rule}^{(l)}\big(R^{(l)}\big), \qquad R(x) = R^{(0)}

The cost is of the order of a gradient's (benchmarks/ print the ratios): the forward pass
runs once, through the model's own code; each operation's backward is replaced by its
family's LRP treatment (a transposed matmul or convolution, plus whatever modified products
the rule needs). See
:mod:`lrp_tutor.fast.engine` for the interception, :mod:`lrp_tutor.fast.registry` for the
families and :mod:`lrp_tutor.fast.functions` for the rules' backward passes.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_tutor.rules import ZPlus
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
>>> e = explain(model, torch.rand(2, 4, dtype=torch.float64), rule=ZPlus())
>>> e.relevance.shape, e.target
(torch.Size([2, 4]), tensor([0, 0]))
>>> e.ledger.holds()  # every layer: Σ R_out = Σ R_in + what bias and ε absorbed
True
>>> bool(torch.allclose(e.total + torch.from_numpy(e.ledger.absorbed), e.seed))
True
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from ..composites import Composite
from ..errors import InputError, LRPError
from ..rules import Rule
from .bookings import Recorder
from .engine import Session
from .explanation import Explanation
from .inputs import (
    INITS,
    check_input,
    check_model,
    check_output,
    check_rule_limits,
    check_target,
    choose_composite,
    model_dtype_device,
    resolve_target,
    seed,
)

__all__ = ["explain"]


def explain(
    model: nn.Module,
    x: Tensor,
    target: Any = None,
    rule: Rule | None = None,
    composite: Composite | None = None,
    init: str = "logit",
    *,
    keep_layers: bool = False,
) -> Explanation:
    r"""Explain the logits of ``model`` at ``x`` by Layer-wise Relevance Propagation.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits of shape (N, classes). It is explained in eval mode
        and comes back exactly as it was (parameters, buffers, hooks, flags, mode).
    x : Tensor
        A batch, shape (N, …), floating point and finite.
    target : None, int, sequence of int or LongTensor, optional
        The class to explain per sample; None explains the predicted class.
    rule : Rule, optional
        One rule for every layer (``composites.uniform(rule)``).
    composite : Composite, optional
        Rules per layer. Give ``rule`` or ``composite``, not both; neither means
        ``uniform(Epsilon())``.
    init : {"logit", "one"}
        The seed: :math:`R = f_c(x)\cdot\mathrm{onehot}(c)` or :math:`\mathrm{onehot}(c)`.
    keep_layers : bool, default False
        Keep the relevance at every layer's input in ``Explanation.layers`` (costs memory).

    Returns
    -------
    Explanation
        ``.relevance`` (shape, dtype and device of x), ``.output``, ``.target``, ``.ledger``.

    Raises
    ------
    InputError
        Bad ``x``, ``target`` or ``init``, or both ``rule`` and ``composite`` given.
    UnsupportedLayerError
        An operation in the model's forward that no family explains (named, with the module
        it ran in), or a forward cut off from x (``.detach()``, inference mode).
    CompositeError
        A weighted layer without a rule.
    """
    check_model(model)
    chosen = choose_composite(rule, composite)
    if init not in INITS:
        raise InputError(f"init must be 'logit' or 'one', got {init!r}.")
    check_input(x)
    wanted = check_target(target)
    dtype, device = model_dtype_device(model, x)
    check_rule_limits(chosen, dtype)
    x_work = x.detach().to(device=device, dtype=dtype)
    if x_work.is_inference():
        x_work = x_work.clone()
    x_work.requires_grad_(True)

    with _lock(model):  # one explanation of a model at a time (its flags are set)
        modes = {m: m.training for m in model.modules()}
        if any(m.training and _mode_matters(m) for m in modes):
            warnings.warn(
                f"{type(model).__name__} is in train mode; explain() explains it in eval mode "
                "(Dropout off, BatchNorm with running statistics) and puts it back in train mode "
                "afterwards.",
                UserWarning,
                stacklevel=2,
            )
        recorder = Recorder(keep_layers, batch=x.shape[0])
        try:
            for module, mode in modes.items():  # eval mode, flag by flag (no train() override runs)
                if mode:
                    module.training = False
            with torch.enable_grad(), Session(model, chosen, recorder, x_work) as session:
                try:
                    output = model(x_work)
                except LRPError:
                    raise
                except (RuntimeError, ValueError, TypeError, IndexError) as error:
                    raise session.input_error(error, x) from error
            with torch.enable_grad():  # pending layers are explained now
                output = check_output(session.finish(output), x)
            classes = resolve_target(wanted, output)
            start = seed(output, classes, init)
            if output.grad_fn is None and output is not x_work:
                relevance = torch.zeros_like(x_work)
            else:
                (relevance,) = torch.autograd.grad(output, x_work, start, allow_unused=True)
                if relevance is None:
                    relevance = torch.zeros_like(x_work)
        finally:
            for module, mode in modes.items():
                if module.training is not mode:
                    module.training = mode
    return Explanation(
        relevance=relevance.detach().to(device=x.device, dtype=x.dtype),
        output=output.detach(),
        target=classes,
        ledger=recorder.ledger(),
        layers=recorder.layers(),
        composite=chosen,
        init=init,
    )


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _lock(model: nn.Module) -> threading.RLock:
    """One lock per model: explanations of one model from several threads run one at a time
    (explain() sets and restores the model's eval flags around its forward)."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def _mode_matters(module: nn.Module) -> bool:
    """Whether train mode could change what ``module`` computes: Dropout with p > 0,
    BatchNorm, or a module of the user's own class (whose forward may read ``training``)."""
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return not type(module).__module__.startswith(("torch.nn.", "lrp_tutor."))
