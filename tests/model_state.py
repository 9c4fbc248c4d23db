"""What "the user's model comes back exactly as it was" means, for every test that checks it.

``snapshot(model)`` records everything explain() and the stepper must leave alone: every
parameter and buffer bit for bit (NaN included) with its dtype, device and version counter,
each parameter's identity, requires_grad and grad, each module's identity, type, train/eval
flag, hooks and plain attributes, torch's global module hooks and the grad mode.
``assert_unchanged(before, snapshot(model))`` compares two of them.
"""

from __future__ import annotations

import torch
from torch import nn

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)
PLAIN = (bool, int, float, str, tuple, type(None))


def snapshot(model: nn.Module) -> tuple:
    """Everything explain() and the stepper must leave alone."""
    state = model.state_dict(keep_vars=True)
    values = {k: (v.detach().clone(), v.dtype, v.device, v._version) for k, v in state.items()}
    params = [(n, id(p), p.requires_grad, p.grad) for n, p in model.named_parameters()]
    modules = []
    for name, m in model.named_modules():
        hooks = {attr: list(getattr(m, attr).items()) for attr in HOOK_DICTS}
        plain = {k: v for k, v in vars(m).items() if isinstance(v, PLAIN)}
        modules.append((name, id(m), type(m), m.training, hooks, plain, sorted(vars(m))))
    module_globals = torch.nn.modules.module
    global_hooks = {attr: list(getattr(module_globals, attr).items()) for attr in GLOBAL_HOOKS}
    return values, params, modules, global_hooks, torch.is_grad_enabled()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype.is_floating_point else t


def assert_unchanged(before: tuple, after: tuple) -> None:
    """Fail, naming what changed, unless the two snapshots are the same."""
    values_a, params_a, modules_a, globals_a, grad_a = before
    values_b, params_b, modules_b, globals_b, grad_b = after
    assert values_a.keys() == values_b.keys()
    for key, (value, dtype, device, version) in values_a.items():
        other, other_dtype, other_device, other_version = values_b[key]
        assert (dtype, device) == (other_dtype, other_device), key
        assert version == other_version, f"{key} was written to"
        assert torch.equal(_bits(value), _bits(other)), key  # bitwise, NaN included
    assert params_a == params_b
    assert modules_a == modules_b
    assert globals_a == globals_b
    assert grad_a == grad_b
