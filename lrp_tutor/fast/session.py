"""The hooks that turn one forward pass into the modified backward pass of LRP.

A :class:`Session` registers a forward pre-hook and a forward hook on every module of the
model (removed again on exit, also after an error). The forward hook of a supported layer
replaces the layer's output by the output of one of the functions in
:mod:`lrp_tutor.fast.functions`, applied to the layer's input: the value is the same, the
backward is LRP's. BatchNorm layers are merged into the layer before them, torchvision-style
residual blocks get their sum (:mod:`lrp_tutor.fast.canonizers`), unsupported layers raise
as soon as they are called, and :meth:`Session.check` refuses any operation between layers
that relevance cannot pass through (:mod:`lrp_tutor.fast.graph`).

Two pre-hooks change what a layer is given, never the layer: an activation that works in
place gets a copy of its input (the layer below keeps its output :math:`z` for the
backward pass), and a layer under the αβ-rule gets an empty batch, since
:math:`z^+ + z^-` is its output and computing it once more would be wasted.

The model itself is never edited: no parameter, buffer, attribute or flag is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..composites import ACTIVATIONS, POOLING, SUM_RULE, WEIGHTED, Composite
from ..errors import CompositeError, InputError, RuleError, UnsupportedLayerError
from ..rules import Rule
from .bookings import Recorder
from .canonizers import BATCHNORMS, batchnorm_affine, batchnorm_pairs, residual_blocks
from .functions import (
    OURS,
    ConcatPass,
    Marker,
    PassThrough,
    SumRule,
    WeightedRule,
    WinnerTakesAll,
    complementary,
    saved_indices,
)
from .graph import check_graph
from .maps import Scratch, make_map
from .modules import Concat, Sum

__all__ = ["Session", "ACTIVATIONS", "PASSING", "MAXPOOLS", "SUPPORTED"]

PASSING: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
)
"""Layers that move or keep values (eval mode): relevance passes through, reshaped."""

MAXPOOLS: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d)

SUPPORTED = WEIGHTED + POOLING + MAXPOOLS + BATCHNORMS + ACTIVATIONS + PASSING + (Sum, Concat)

_HINTS = {
    "Softmax": "explain the logits: remove the softmax from the model",
    "LogSoftmax": "explain the logits: remove the log-softmax from the model",
    "Softmin": "explain the logits: remove the softmin from the model",
    "LSTM": "recurrent layers have no LRP rule in lrp_tutor",
    "GRU": "recurrent layers have no LRP rule in lrp_tutor",
    "RNN": "recurrent layers have no LRP rule in lrp_tutor",
    "MultiheadAttention": "attention has no LRP rule in lrp_tutor",
    "Upsample": "upsampling has no LRP rule in lrp_tutor",
}

_SUPPORTED_TEXT = (
    "Supported: Linear, Conv1d, Conv2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, MaxPool1d/2d, "
    "BatchNorm1d/2d right after a Linear/Conv, element-wise activations, Flatten, Dropout, "
    "Identity, lrp_tutor.fast.Sum and lrp_tutor.fast.Concat"
)


def _unsupported(module: nn.Module) -> bool:
    """A module of torch.nn (not a container) that the fast path has no rule for.

    Modules of other packages, e.g. a model's own blocks, are checked by what they compute.
    """
    if isinstance(module, SUPPORTED + (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    return type(module).__module__.startswith("torch.nn")


def _short(module: nn.Module) -> str:
    """A leaf layer's repr, a container's class name."""
    return type(module).__name__ if next(module.children(), None) is not None else repr(module)


def _tensors(args: tuple) -> list[Tensor]:
    if len(args) == 1 and isinstance(args[0], list | tuple):
        args = tuple(args[0])
    return [a for a in args if isinstance(a, Tensor)]


@dataclass
class _BlockRun:
    """What one call of a residual block has produced so far."""

    x: Tensor
    main: Tensor | None = None
    marker: Any = None
    shortcut: Tensor | None = None


_SUM_PROBE = Sum()


class Session:
    """Hooks on every module of ``model`` for one explanation; a context manager."""

    def __init__(self, model: nn.Module, composite: Composite, recorder: Recorder, x: Tensor):
        self.model, self.composite, self.recorder, self.x = model, composite, recorder, x
        self.rules: dict[str, Rule] = composite.resolve(model)
        self.names = {module: name for name, module in model.named_modules()}
        self.pairs = batchnorm_pairs(model)
        self.paired = {layer: bn for bn, layer in self.pairs.items()}
        self.blocks = residual_blocks(model, self.pairs)
        self.block_of_bn = {b.last_bn: block for block, b in self.blocks.items()}
        self.block_of_shortcut = {
            b.downsample: block for block, b in self.blocks.items() if b.downsample is not None
        }
        self.merged: dict[nn.Module, tuple[Tensor, Tensor]] = {}
        self.pending: dict[nn.Module, tuple[Tensor, Tensor, bool]] = {}
        self.skipped: dict[nn.Module, Tensor] = {}
        self.raw: dict[Any, nn.Module] = {}  # output node of a layer awaiting its BatchNorm
        self.act_inputs: dict[nn.Module, Tensor] = {}
        self.block_relus = {b.relu for b in self.blocks.values()}
        self.last_act: dict[nn.Module, tuple[Tensor, Tensor, Any]] = {}  # of block_relus
        self.runs: dict[nn.Module, _BlockRun] = {}
        self.node_names: dict[Any, tuple[str, ...]] = {}
        self.sources: dict[str, list[Any]] = {}
        self.stack: list[str] = []
        self.handles: list[Any] = []
        self.own_output: dict[nn.Module, tuple[Any, int]] = {}  # before the user's hooks
        self.scratch = Scratch()  # transient tensors, reused layer by layer

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> Session:
        try:
            for module in self.names:
                if module._forward_hooks and isinstance(module, SUPPORTED):
                    # the user's forward hooks: see the output before them, to compare
                    self.handles.append(module.register_forward_hook(self._own, prepend=True))
                self.handles.append(module.register_forward_pre_hook(self._pre))
                self.handles.append(module.register_forward_hook(self._post))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        states = (self.pending, self.skipped, self.act_inputs, self.last_act, self.runs)
        for state in (*states, self.merged, self.node_names, self.sources, self.raw):
            state.clear()
        self.own_output.clear()

    # ---------------------------------------------------------------- hooks

    def _own(self, module: nn.Module, args: tuple, output: Any) -> None:
        version = output._version if isinstance(output, Tensor) else 0
        self.own_output[module] = (output, version)

    def _pre(self, module: nn.Module, args: tuple) -> tuple | None:
        name = self.names[module]
        self.stack.append(name)
        if name not in self.sources:
            self.sources[name] = [self._source(t) for t in _tensors(args)]
        if _unsupported(module):
            hint = _HINTS.get(type(module).__name__, _SUPPORTED_TEXT)
            raise UnsupportedLayerError(
                f"Layer '{name}' ({_short(module)}) is not supported by lrp_tutor's fast path: "
                f"{hint}."
            )
        if isinstance(module, BATCHNORMS) and module not in self.pairs:
            raise UnsupportedLayerError(
                f"BatchNorm '{name}' ({module}) does not follow a Linear/Conv layer with "
                f"{module.num_features} outputs, so it cannot be merged into it; lrp_tutor has "
                "no rule for a BatchNorm on its own."
            )
        if module in self.blocks:
            self.runs[module] = _BlockRun(args[0])
        parts = getattr(self.rules.get(name), "parts", ())
        if isinstance(module, WEIGHTED) and complementary(parts):
            # αβ computes z⁺ and z⁻, whose sum is the output: the layer need not compute it
            self.skipped[module] = args[0]
            return (args[0][:0], *args[1:])
        if isinstance(module, ACTIVATIONS) and getattr(module, "inplace", False):
            # keep the input (it is saved for the layer below) and hand the module a copy
            self.act_inputs[module] = args[0]
            return (args[0].detach().clone(), *args[1:])
        return None

    def _post(self, module: nn.Module, args: tuple, output: Any) -> Any:
        name = self.names[module]
        self.stack.pop()
        if module in self.own_output:
            own, version = self.own_output.pop(module)
            if own is not output or (isinstance(own, Tensor) and own._version != version):
                raise UnsupportedLayerError(
                    f"Layer '{name}' ({_short(module)}) has a forward hook that changes its "
                    "output; lrp_tutor explains what the layer itself computes. Remove the hook "
                    "while explaining (handle.remove()), or make its computation a module of its "
                    "own. Hooks that only look (return None) are fine."
                )
        new = self._replace(module, name, args, output)
        out = output if new is None else new
        if isinstance(out, Tensor) and out.grad_fn is not None:
            self.node_names[out.grad_fn] = (name, *self.node_names.get(out.grad_fn, ()))
        if module in self.block_of_shortcut and self.block_of_shortcut[module] in self.runs:
            self.runs[self.block_of_shortcut[module]].shortcut = out
        return new

    def _replace(self, module: nn.Module, name: str, args: tuple, output: Any) -> Tensor | None:
        kind = type(module).__name__
        if isinstance(module, WEIGHTED + POOLING):
            x = self.skipped.pop(module, None)
            value = None if x is not None else output
            x = args[0] if x is None else x
            if module in self.paired:  # wait for the BatchNorm that follows
                self.pending[module] = (x, output, value is None)
                if isinstance(output, Tensor) and output.grad_fn is not None:
                    self.raw[output.grad_fn] = module
                return None
            layer = make_map(module, name, x, scratch=self.scratch)
            return self._weighted(x, value, layer, self._rule(name, module), name, kind)
        if isinstance(module, BATCHNORMS):
            return self._batchnorm(module, name, args[0], output)
        if isinstance(module, MAXPOOLS):
            if getattr(module, "return_indices", False):
                raise UnsupportedLayerError(
                    f"MaxPool '{name}' ({module}) returns indices; lrp_tutor explains MaxPool "
                    "layers with return_indices=False only."
                )
            booking = self.recorder.new(name, kind)
            indices = saved_indices(output)
            return WinnerTakesAll.apply(args[0], output.detach(), module, booking, indices)
        if isinstance(module, ACTIVATIONS + PASSING):
            x = self.act_inputs.pop(module, args[0])
            booking = self.recorder.new(name, kind)
            out = PassThrough.apply(x, output.detach(), booking)
            if module in self.block_relus:  # the block checks its last call (its input)
                self.last_act[module] = (x, out, booking)
            return out
        if isinstance(module, Sum):
            return self._sum(module, name, _tensors(args), output)
        if isinstance(module, Concat):
            booking = self.recorder.new(name, kind)
            return ConcatPass.apply(output.detach(), module.dim, booking, *_tensors(args))
        if module in self.blocks:
            return self._finish_block(module, name, output)
        return None

    # ---------------------------------------------------------------- layers

    def _rule(self, name: str, module: nn.Module) -> Rule:
        rule = self.rules.get(name)
        if rule is None:
            raise CompositeError(
                f"The composite {self.composite!r} gives no rule for layer '{name}' ({module}). "
                "Give it a default (Composite(default=Epsilon())) or map the layer by name or type."
            )
        return rule

    def _weighted(self, x, output, layer, rule: Rule, name: str, kind: str) -> Tensor:
        """``output`` is the layer's own output, or None if it did not compute it (αβ)."""
        booking = self.recorder.new(name, kind)
        if output is None:
            return WeightedRule.apply(x, None, layer, rule.parts, booking)
        if not rule.parts:  # Pass
            if output.shape != x.shape:
                raise RuleError(
                    f"Rule {rule!r} passes relevance unchanged, but layer '{name}' ({kind}) maps "
                    f"shape {tuple(x.shape)} to {tuple(output.shape)}. Give it another rule."
                )
            return PassThrough.apply(x, output.detach(), booking)
        return WeightedRule.apply(x, output.detach(), layer, rule.parts, booking)

    def _batchnorm(self, bn: nn.Module, name: str, x: Tensor, output: Tensor) -> Tensor:
        layer = self.pairs[bn]
        layer_name = self.names[layer]
        pending = self.pending.pop(layer, None)
        if pending is None or pending[1] is not x:
            raise UnsupportedLayerError(
                f"BatchNorm '{name}' ({bn}) does not receive the output of '{layer_name}' "
                "directly, so it cannot be merged into it; lrp_tutor has no rule for a "
                "BatchNorm on its own."
            )
        if layer not in self.merged:
            self.merged[layer] = batchnorm_affine(layer, bn, name)
        layer_x, _, skipped = pending
        kind = f"{type(layer).__name__}+{type(bn).__name__}"
        merged = make_map(layer, layer_name, layer_x, self.merged[layer], self.scratch)
        value = None if skipped else output
        rule = self._rule(layer_name, layer)
        out = self._weighted(layer_x, value, merged, rule, layer_name, kind)
        block = self.block_of_bn.get(bn)
        if block is not None and block in self.runs:
            # the block adds its shortcut to this output in place: hand it a stand-in
            run = self.runs[block]
            run.main = out
            stand_in = Marker.apply(out)
            run.marker = stand_in.grad_fn
            return stand_in
        return out

    def _sum_rule(self, name: str, module: nn.Module) -> Rule:
        if name in self.composite.by_name:
            return self.composite.by_name[name]
        probe = module if isinstance(module, Sum) else _SUM_PROBE
        for types, rule in self.composite.by_type.items():
            if isinstance(probe, types):
                return rule
        return SUM_RULE

    def _sum(self, module: nn.Module, name: str, inputs: list[Tensor], output: Tensor) -> Tensor:
        if any(a.shape != output.shape for a in inputs):
            shapes = ", ".join(str(tuple(a.shape)) for a in inputs)
            raise UnsupportedLayerError(
                f"Sum '{name}' adds tensors of shapes {shapes}; lrp_tutor explains sums of "
                "tensors of one shape only (no broadcasting)."
            )
        rule = self._sum_rule(name, module)
        if not rule.parts:
            raise RuleError(f"Sum '{name}' needs a rule with parts, not {rule!r}.")
        booking = self.recorder.new(name, type(module).__name__)
        return SumRule.apply(output.detach(), rule.parts, booking, self.scratch, *inputs)

    def _finish_block(self, block: nn.Module, name: str, output: Any) -> Tensor:
        """Explain a torchvision block as ``relu(Sum()(main, shortcut))``, after checking it."""
        info = self.blocks[block]
        run = self.runs.pop(block, None)
        act = self.last_act.get(info.relu)
        shortcut = None
        if run is not None:
            shortcut = run.x if info.downsample is None else run.shortcut
        ok = (
            run is not None
            and run.main is not None
            and act is not None
            and act[1] is output
            and shortcut is not None
        )
        if ok:
            add = act[0].grad_fn
            parents = [node for node, _ in add.next_functions] if add is not None else []
            ok = (
                type(add).__name__ == "AddBackward0"
                and getattr(add, "_saved_alpha", 1) == 1
                and len(parents) == 2
                and any(node is run.marker for node in parents)
                and any(self._is_source(node, shortcut) for node in parents)
            )
        if not ok:
            last = self.names[info.last_bn].rsplit(".", 1)[-1]
            raise UnsupportedLayerError(
                f"'{name}' ({type(block).__name__}) looks like a torchvision residual block "
                f"(conv1, bn1, conv2, bn2, relu, downsample), but its forward does not end with "
                f"relu({last}(…) + shortcut), so lrp_tutor cannot explain it: put the addition "
                "into an lrp_tutor.fast.Sum module."
            )
        _, _, relu_booking = act
        booking = self.recorder.new(
            name, f"{type(block).__name__} residual sum", order=relu_booking.order - 0.5
        )
        parts = self._sum_rule(name, block).parts
        summed = SumRule.apply(None, parts, booking, self.scratch, run.main, shortcut)
        with torch.no_grad():
            inplace = getattr(info.relu, "inplace", False)
            value = info.relu.forward(summed.detach().clone() if inplace else summed.detach())
        return PassThrough.apply(summed, value, relu_booking)

    # ---------------------------------------------------------------- graph and errors

    def _source(self, t: Tensor) -> Any:
        if t.grad_fn is not None:
            return t.grad_fn
        return "input" if t is self.x else None

    def _is_source(self, node: Any, t: Tensor) -> bool:
        if t.grad_fn is not None:
            return node is t.grad_fn
        return type(node).__name__ == "AccumulateGrad" and node.variable is t

    def check(self, output: Tensor) -> None:
        """Raise for any operation between the layers that relevance cannot pass through."""
        check_graph(output, self.x, OURS, self._describe, self.node_names, self._special)

    def _special(self, node: Any) -> str | None:
        layer = self.raw.get(node)
        if layer is None:
            return None
        name, bn = self.names[layer], self.names[self.paired[layer]]
        return (
            f"'{name}' ({type(layer).__name__}) is registered right before BatchNorm '{bn}', "
            "so lrp_tutor merges the two, but the model also uses its output without that "
            "BatchNorm, which lrp_tutor cannot explain."
        )

    def _below(self, node: Any) -> set[Any]:
        seen: set[Any] = set()
        todo = [child for child, _ in node.next_functions]
        while todo:
            n = todo.pop()
            if n is None or n in seen:
                continue
            seen.add(n)
            if type(n).__name__ == "AccumulateGrad" and n.variable is self.x:
                seen.add("input")
            todo.extend(child for child, _ in n.next_functions)
        return seen

    def _describe(self, node: Any, path: tuple[str, ...]) -> str:
        below = self._below(node)
        inside = None
        for name in reversed(path):
            sources = [s for s in self.sources.get(name, []) if s is not None]
            if any(s is node for s in sources):
                continue
            if any(s in below for s in sources):
                inside = name
                break
        modules = dict(self.model.named_modules())
        if inside in (None, ""):
            where = f"in the forward of the model ({type(self.model).__name__})"
        else:
            where = f"in '{inside}' ({type(modules[inside]).__name__})"
        if type(node).__name__ == "AccumulateGrad":
            params = [n for n, p in self.model.named_parameters() if p is node.variable]
            if params:
                where += f", reaching the parameter '{params[0]}'"
        after = self._after(node)
        if after:
            where += ", after " + ", ".join(f"'{a}'" for a in after[:3])
        return where

    def _after(self, node: Any) -> list[str]:
        found: list[str] = []
        seen: set[Any] = set()
        todo = [child for child, _ in node.next_functions]
        while todo:
            n = todo.pop(0)
            if n is None or n in seen:
                continue
            seen.add(n)
            if n in self.node_names:
                found.append(self.node_names[n][-1])
                continue
            todo.extend(child for child, _ in n.next_functions)
        return found

    def input_error(self, error: Exception, x: Tensor) -> Exception:
        """A clear error for a forward pass that failed inside a layer."""
        modules = dict(self.model.named_modules())
        name = self.stack[-1] if self.stack else None
        where = "the model" if name is None else f"'{name or 'model'}' ({_short(modules[name])})"
        if "modified inplace" in str(error) or "modified by an inplace" in str(error):
            return UnsupportedLayerError(
                f"An in-place operation in {where} modifies the output of a layer, which "
                "lrp_tutor cannot explain: write it out of place (x = x + y, nn.ReLU())."
            )
        return InputError(
            f"The model cannot run on x of shape {tuple(x.shape)}: {where} failed with "
            f"'{error}'. Check that x has the shape the model expects, batch first "
            "(a single sample: x.unsqueeze(0))."
        )
