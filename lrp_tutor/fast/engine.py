r"""The operation engine: every tensor operation of the model's forward, explained by its family.

During :func:`~lrp_tutor.fast.explain` a :class:`Session` is active: a
``torch.overrides.TorchFunctionMode`` that sees every operation the model's code performs —
functional calls, tensor methods, operators, in-place variants, alike — and two global
module hooks that only say which module is running (so that composites assign rules by
module name, type and position). Each operation on a tensor that carries relevance goes to
its **family** in :mod:`lrp_tutor.fast.registry`, whose treatment returns the same value
with LRP's backward attached; an operation without a family raises
:class:`~lrp_tutor.errors.UnsupportedLayerError` naming it and the module it ran in.

Three things the engine does for every family:

- **Deferred linear layers.** The output of a linear layer (``F.linear``, a convolution)
  stays *pending* until it is used: used by a BatchNorm on its channels, the two are
  explained as one layer (:math:`w'_{ij} = \lambda_j w_{ij}`, the canonizer of Zennit);
  used by anything else, the layer is explained as it is.
- **In-place operations** (``x += y``, ``F.relu(x, inplace=True)``, ``x[i] = y``) are computed
  out of place; the tensor the code modified stands for the result in every later operation.
  Nothing the backward pass saved is overwritten.
- **The books.** After the forward, every autograd node between the logits and x must be a
  family's own or one that a routing operation made (:mod:`lrp_tutor.fast.graph`).

The model is never edited: no parameter, buffer, attribute, flag or hook dict is written.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from ..composites import Composite
from ..errors import CompositeError, InputError, UnsupportedLayerError
from ..rules import Rule
from . import registry
from .bookings import Booking, Recorder
from .families.elementwise import remember
from .functions import OURS, PassThrough, explain_linear
from .graph import check_graph
from .maps import LinearMap, Scratch

__all__ = ["Session", "Call"]


def _floating(t: Any) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point()


def _map(f: Callable[[Tensor], Any], value: Any) -> Any:
    """``value`` with ``f`` applied to every tensor in it (in tuples, lists and dicts, as
    operations take them): :func:`torch.utils._pytree.tree_map` for the common cases, without
    its cost per operation."""
    if isinstance(value, Tensor):
        return f(value)
    kind = type(value)
    if kind is tuple or kind is list:
        return kind(_map(f, v) for v in value)
    if kind is dict:
        return {k: _map(f, v) for k, v in value.items()}
    if isinstance(value, tuple | list | dict) and kind is not torch.Size:  # named tuples, …
        return tree_map(lambda t: f(t) if isinstance(t, Tensor) else t, value)
    return value


def _tensors(value: Any):
    """Every tensor in ``value`` (see :func:`_map`)."""
    if isinstance(value, Tensor):
        yield value
    elif type(value) is tuple or type(value) is list:
        for v in value:
            yield from _tensors(v)
    elif type(value) is dict:
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, tuple | list | dict) and type(value) is not torch.Size:
        yield from (t for t in tree_flatten(value)[0] if isinstance(t, Tensor))


def _entry_ref(table: dict, t: Tensor) -> weakref.ref:
    """A weak reference to ``t`` for its entry ``table[id(t)]``: when ``t`` is gone, so is the
    entry (and what it holds)."""
    key = id(t)
    return weakref.ref(t, lambda _ref: table.pop(key, None))


def _short(module: nn.Module) -> str:
    """A leaf layer's repr, a container's class name."""
    return type(module).__name__ if next(module.children(), None) is not None else repr(module)


@dataclass
class Pending:
    """A linear layer's output, not yet explained: ``build(scale, shift)`` makes its map,
    with a BatchNorm's per-channel scale λ and shift merged in where one follows."""

    ref: Any  # weakref to the raw output the model's code holds
    x: Tensor
    build: Callable[[Tensor | None, Tensor | None], LinearMap]
    name: str
    module: nn.Module | None
    kind: str
    channels: int | None  # output channels along dim 1 (None: no BatchNorm can merge)
    probe: type[nn.Module] | None = None  # the layer type whose rule it takes inside a block
    explained: Tensor | None = None  # the explained output (its memory is the raw output's)


@dataclass
class Call:
    """One intercepted operation: the function, its arguments, and where it ran."""

    session: Session
    func: Any
    args: tuple
    kwargs: dict
    name: str  # the module whose forward runs it ("" the model itself)
    module: nn.Module
    label: str = field(default="")

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        """Argument ``index`` (positional) or ``key`` (keyword)."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(key, default)

    def carries(self, t: Any) -> bool:
        return self.session.carries(t)

    def plain(self) -> Any:
        """The operation's own value (no graph)."""
        with torch.no_grad():
            return self.func(*self.args, **self.kwargs)

    def traced(self) -> Any:
        """The operation run by autograd itself (for routing: its gradient is exact)."""
        result = self.func(*self.args, **self.kwargs)
        self.session.learn(result, self.args, self.kwargs)
        return result

    @property
    def own(self) -> bool:
        """Whether the operation is the computation of a leaf module (nn.Conv2d's conv)."""
        return next(self.module.children(), None) is None and self.name != ""

    def kind(self, op: str) -> str:
        """The ledger's word for this call: the leaf module's type, else the operation."""
        return type(self.module).__name__ if self.own else op

    def booking(self, op: str) -> Booking:
        """A new line in the ledger for this call (see :meth:`kind`)."""
        return self.session.recorder.new(self.name, self.kind(op))

    def where(self) -> str:
        if self.name == "":
            return f"the forward of the model ({type(self.module).__name__})"
        return f"'{self.name}' ({_short(self.module)})"

    # ------------------------------------------------------------------ rules

    def rule(self, role: str, probe: type[nn.Module] | None = None) -> Rule:
        """The rule of this operation.

        ``role`` "weighted" (a layer with a weight: its module's rule from the composite),
        "fixed" (a linear map without learned weights or with fixed ones: pooling, a mean,
        BatchNorm on its own, a layer scale, a gate, a normalisation: the composite's rule for
        the module's type or ``probe``, else :data:`~lrp_tutor.composites.POOLING_RULE`), or
        "sum" (a join of branches: else :data:`~lrp_tutor.composites.SUM_RULE`).
        """
        s = self.session
        if self.own and self.name in s.rules:
            return s.rules[self.name]
        composite = s.composite
        if self.name in composite.by_name:
            return composite.by_name[self.name]
        rule = composite.operation_rule(self.module, role, probe)
        if rule is not None:
            return rule
        what = f"layer {self.where()}" if self.own else f"the {self.label} in {self.where()}"
        raise CompositeError(
            f"The composite {composite!r} gives no rule for {what}. Give it a default "
            "(Composite(default=Epsilon())) or map the layer by name or type."
        )


class Session(TorchFunctionMode):
    """The operation engine for one explanation; a context manager around the forward."""

    def __init__(self, model: nn.Module, composite: Composite, recorder: Recorder, x: Tensor):
        super().__init__()
        self.model, self.composite, self.recorder, self.x = model, composite, recorder, x
        self.rules: dict[str, Rule] = composite.resolve(model)
        self.names = {module: name for name, module in model.named_modules()}
        self.stack: list[nn.Module] = []
        self.thread = threading.get_ident()
        self.pending: dict[int, Pending] = {}
        self.replaced: dict[int, tuple[Any, Tensor]] = {}
        self.gates: dict[int, Any] = {}  # outputs of gating functions (sigmoid…), weakly
        self.activated: dict[int, Any] = {}  # outputs of other activations, weakly
        self.held: dict[int, tuple[Any, str]] = {}  # softmax outputs: refused as the output
        self.known: set[Any] = set()  # autograd nodes that routing operations made
        self.scratch = Scratch()  # transient tensors, reused layer by layer
        self.handles: list[Any] = []
        self.opaque: nn.Module | None = None  # an element-wise module running (see _pre)

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> Session:
        self._refuse_backward_hooks()
        hooks = torch.nn.modules.module
        self.handles = [
            hooks.register_module_forward_pre_hook(self._pre),
            hooks.register_module_forward_hook(self._post),  # not after an error: see input_error
        ]
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            for handle in self.handles:
                handle.remove()
            self.handles.clear()

    def _refuse_backward_hooks(self) -> None:
        """LRP replaces the backward pass: a backward hook would see relevance, not gradients."""
        hooks = torch.nn.modules.module
        found = [
            f"'{name}' ({_short(m)})"
            for m, name in self.names.items()
            if m._backward_hooks or m._backward_pre_hooks
        ]
        if hooks._global_backward_hooks or hooks._global_backward_pre_hooks:
            found.append("every module (a global backward hook)")
        if found:
            raise UnsupportedLayerError(
                f"{found[0]} has a backward hook (register_full_backward_hook or "
                "register_full_backward_pre_hook); LRP replaces the backward pass, so the hook "
                "would see relevance, not gradients: remove it while explaining "
                "(handle.remove())."
            )

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if module in self.names and threading.get_ident() == self.thread:
            self.stack.append(module)
            if self.opaque is None and type(module).__name__ in registry.ELEMENTWISE_MODULES:
                self.opaque = module  # its operations run plainly: see _post

    def _post(self, module: nn.Module, args: tuple, output: Any) -> Any:
        if self.stack and self.stack[-1] is module and threading.get_ident() == self.thread:
            self.stack.pop()
            if self.opaque is module:
                self.opaque = None
                with torch.overrides._pop_mode_temporarily():
                    return self._element_wise(module, args, output)
        return None

    def _element_wise(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """An element-wise activation module written as code (Hugging Face's
        ``NewGELUActivation``): relevance passes through it unchanged, like F.gelu's."""
        x = self._current(args[0], keep_pending=False) if args else None
        if not (self.carries(x) and isinstance(output, Tensor) and output.shape == x.shape):
            return None
        call = Call(self, None, (), {}, self.names.get(module, ""), module, label="activation")
        out = PassThrough.apply(x, output.detach(), call.booking("activation"))
        remember(self.activated, out)
        return out

    # ---------------------------------------------------------------- tensors

    def carries(self, t: Any) -> bool:
        """Whether ``t`` carries relevance: x, a result of the engine, a pending output."""
        if not isinstance(t, Tensor):
            return False
        if t is self.x or (t.requires_grad and t.grad_fn is not None):
            return True
        p = self.pending.get(id(t))
        return p is not None and p.ref() is t

    def _current(self, t: Any, keep_pending: bool) -> Any:
        """The tensor that stands for ``t`` now: its replacement after an in-place
        operation, a pending output explained (unless ``keep_pending``)."""
        if not isinstance(t, Tensor):
            return t
        seen = self.replaced.get(id(t))
        while seen is not None and seen[0]() is t:
            t = seen[1]
            seen = self.replaced.get(id(t))
        p = self.pending.get(id(t))
        if p is not None and p.ref() is t and not keep_pending:
            return self.explain_pending(p)
        return t

    def _stand_in(self, target: Tensor, result: Tensor) -> None:
        """From now on ``result`` stands for ``target`` (an in-place operation, done out of
        place), for as long as ``target`` lives: the entry goes with it, so that ``result``
        is not kept alive by the engine (a ReLU's output that only a max pool reads)."""
        self.replaced[id(target)] = (_entry_ref(self.replaced, target), result)

    def defer(
        self,
        call: Call,
        x: Tensor,
        value: Tensor,
        build,
        channels: int | None,
        probe: type[nn.Module] | None = None,
    ) -> Tensor:
        """Keep a linear layer's output pending (see the module docstring). Called inside a
        block rather than by a leaf layer (``nn.MultiheadAttention``'s projections), it takes
        the composite's rule for the layer type ``probe``."""
        self.pending[id(value)] = Pending(
            _entry_ref(self.pending, value),
            x,
            build,
            call.name,
            call.module,
            call.kind(call.label),
            channels,
            probe,
        )
        return value

    def pending_of(self, t: Any) -> Pending | None:
        p = self.pending.get(id(t)) if isinstance(t, Tensor) else None
        return p if p is not None and p.ref() is t else None

    def explain_pending(self, p: Pending, merged: tuple | None = None) -> Tensor:
        """The pending layer explained as it is, or with a BatchNorm merged:
        ``merged = (scale λ, shift, value, BatchNorm kind)``."""
        if merged is None and p.explained is not None:
            return p.explained
        call = Call(self, None, (), {}, p.name, p.module or self.model, label="layer")
        rule = call.rule("weighted", p.probe)
        scale, shift, value, bn = merged if merged is not None else (None, None, p.ref(), "")
        kind = p.kind + (f"+{bn}" if bn else "")
        booking = self.recorder.new(p.name, kind)
        out = explain_linear(p.x, value, p.build(scale, shift), rule, booking, call.where())
        if merged is None:  # every later use gets this one node (DenseNet's concatenations)
            p.explained = out
        return out

    def expand(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` with every operation it does intercepted: a fused operation
        (attention) explained as the operations it stands for."""
        torch.overrides._push_mode(self)
        try:
            return function(*args)
        finally:
            torch.overrides._pop_mode()

    def learn(self, result: Any, *inputs: Any) -> None:
        """Remember the autograd nodes a routing operation made (for the graph check)."""
        stop = {t.grad_fn for t in _tensors(inputs)}
        todo = [t.grad_fn for t in _tensors(result)]
        while todo:
            node = todo.pop()
            if node is None or node in stop or node in self.known:
                continue
            if type(node).__name__ == "AccumulateGrad":
                continue
            self.known.add(node)
            todo.extend(child for child, _ in node.next_functions)

    # ---------------------------------------------------------------- interception

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if threading.get_ident() != self.thread:
            return func(*args, **kwargs)
        if self.opaque is not None:  # inside an element-wise module: see _element_wise
            with torch.no_grad():
                return func(*args, **kwargs)
        family, func, target, args, kwargs = registry.resolve(func, args, kwargs)
        keep = family is None or family.takes_pending  # unknown: run on the values
        args, kwargs = _map(lambda t: self._current(t, keep), (args, kwargs))
        if not any(self.carries(t) for t in _tensors((args, kwargs))):
            with torch.no_grad():
                result = func(*args, **kwargs)
            if isinstance(target, Tensor) and isinstance(result, Tensor) and target is not result:
                self._stand_in(target, result)  # in place on a constant, computed out of
            return result  # place: the model's buffers stay as they are
        module = self.stack[-1] if self.stack else self.model
        call = Call(self, func, args, kwargs, self.names.get(module, ""), module)
        if family is None:
            result = call.plain()
            if not any(_floating(t) for t in _tensors(result)):
                return result  # a shape, a comparison, an index: no relevance to carry
        if not torch.is_grad_enabled():
            raise UnsupportedLayerError(
                f"{registry.describe(func)} in {call.where()} runs without autograd "
                "(torch.no_grad() or torch.inference_mode() inside the forward), which cuts "
                "relevance off from the input. Remove the no_grad block while explaining, or "
                "explain the part of the model below it on its own."
            )
        if family is None:
            raise UnsupportedLayerError(registry.unsupported(func, call.where()))
        call.label = family.name
        result = family.treat(call)
        if target is not None:
            self._stand_in(target, result)
            return None if family.returns_none else result
        return result

    # ---------------------------------------------------------------- after the forward

    def finish(self, output: Any) -> Any:
        """The model's output with every pending layer explained, then the graph check;
        called after the forward, outside the mode. The session's state is let go."""
        try:
            output = self._current(output, keep_pending=False)
            if isinstance(output, Tensor):
                held = self.held.get(id(output))
                if held is not None and held[0]() is output:
                    raise UnsupportedLayerError(
                        f"The model ends with {held[1]}: explain the logits: "
                        "remove the softmax from the model."
                    )
                check_graph(output, self.x, self._allowed, self._describe)
            return output
        finally:
            states = (self.pending, self.replaced, self.gates, self.activated, self.held)
            for state in (*states, self.known):
                state.clear()

    def _allowed(self, node: Any) -> bool:
        return type(node) in OURS or type(node) in registry.NODES or node in self.known

    def _describe(self, node: Any) -> str:
        return "in the model's forward"

    def input_error(self, error: Exception, x: Tensor) -> Exception:
        """A clear error for a forward pass that failed inside a layer."""
        module = self.stack[-1] if self.stack else None
        if module is None:
            where = "the model"
        else:
            name = self.names.get(module, "")
            where = f"'{name or 'model'}' ({_short(module)})"
        return InputError(
            f"The model cannot run on x of shape {tuple(x.shape)}: {where} failed with "
            f"'{error}'. Check that x has the shape the model expects, batch first "
            "(a single sample: x.unsqueeze(0))."
        )
