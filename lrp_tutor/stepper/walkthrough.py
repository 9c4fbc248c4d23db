r"""Walk one sample through a network, forward and then relevance backward, layer by layer.

>>> import numpy as np
>>> from lrp_tutor.rules import LRP0
>>> W1, b1 = np.array([[1.0, -1.0], [2.0, 1.0]]), np.array([0.0, 0.5])
>>> W2, b2 = np.array([[1.0], [1.0]]), np.array([0.0])
>>> walk = Walkthrough([(W1, b1, "relu"), (W2, b2, None)]).forward([1.0, 1.0])
>>> walk.output  # hidden z = (3, 0.5), ReLU keeps both, output 3 + 0.5
array([3.5])
>>> walk.backward(rule=LRP0()).relevance  # R_i = Σ_j x_i·w_ij / z_j · R_j; b_1 keeps 0.5
array([0., 3.])
>>> walk.ledger.check()
'Conservation holds: in every layer Σ R_out = Σ R_in + absorbed, up to 0 (tolerance 1e-10).'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..composites import Composite, uniform
from ..errors import CompositeError, InputError
from ..ledger import Ledger
from ..rules import Epsilon, Rule
from . import _format as f
from ._layers import Dense, Layer, MaxPool, Patch, make_layer
from ._network import as_sequential, leaf_layers
from ._propagate import propagate
from .step import LayerStep

__all__ = ["Walkthrough"]

RuleSpec = Rule | Composite | Mapping[str, Rule] | None


class Walkthrough:
    r"""LRP on one sample, one layer at a time, in float64 numpy.

    Parameters
    ----------
    model_or_layers : nn.Sequential or list of (W, b, activation)
        A torch ``nn.Sequential`` (nested ones are flattened; layer names as in
        ``named_modules()``, e.g. ``"features.0"``), or a list of ``(W, b, activation)`` with
        ``W`` shaped (n_in, n_out), :math:`z = x W + b` as in Montavon's tutorial, ``b`` may be
        None, and ``activation`` one of ``"relu"``, ``"tanh"``, ``"sigmoid"``, None, a function
        or an ``nn.Module``. The list becomes an ``nn.Sequential`` of Linear and activation
        modules, named ``"0"``, ``"1"``, … (``walk.model``). The weights are copied once, to
        float64; the user's model is never changed.

    Attributes
    ----------
    steps : list of LayerStep
        One per layer, in forward order (after :meth:`backward`); also ``walk[k]`` and
        ``walk["name"]``.
    output : ndarray
        The logits (with a batch dimension if ``x`` had one).
    target : int
        The explained class.
    relevance : ndarray
        :math:`R_i` at the input, shaped like ``x``.
    ledger : Ledger
        Per layer Σ R_out, Σ R_in and what bias and stabiliser absorbed.
    """

    def __init__(self, model_or_layers: nn.Sequential | list[Any]) -> None:
        self.model = as_sequential(model_or_layers)
        _check_has_values(self.model)
        self.layers: list[Layer] = [make_layer(n, m) for n, m in leaf_layers(self.model)]
        if not self.layers:
            raise InputError("The model has no layers to walk through.")
        self._activations: list[np.ndarray] | None = None
        self._batched = False
        self._reset()

    def _reset(self) -> None:
        self.steps: list[LayerStep] = []
        self.target: int | None = None
        self.relevance: np.ndarray | None = None
        self.ledger: Ledger | None = None
        self.rules: dict[str, Rule] = {}

    # ----------------------------------------------------------------------------------
    def forward(self, x: Any) -> Walkthrough:
        """Run one sample through the network, keeping every layer's input and output.

        ``x`` is a numpy array or torch tensor, one sample with or without a leading batch
        dimension of 1.
        """
        array = _as_array(x)
        _warn_train_mode(self.model)
        sample, batched = self._split_batch(array)
        activations = [sample]
        for layer in self.layers:
            activations.append(np.asarray(layer.forward(activations[-1]), dtype=np.float64))
        self._activations, self._batched, self._input_shape = activations, batched, array.shape
        self._reset()
        return self

    def _split_batch(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """The sample without batch dimension, and whether ``x`` had one."""
        expected, first = None, None
        for layer in self.layers:
            if isinstance(layer, Dense):
                expected, first = 1, layer
            elif isinstance(layer, Patch | MaxPool):
                expected, first = layer.spatial + 1, layer
            elif not isinstance(layer.module, nn.Flatten):
                continue
            break
        if expected is None:  # only Flatten or activations decide nothing: a leading 1 is a batch
            batched = x.ndim >= 2 and x.shape[0] == 1
        elif x.ndim == expected:
            batched = False
        elif x.ndim == expected + 1 and x.shape[0] == 1:
            batched = True
        elif x.ndim == expected + 1:
            raise InputError(
                f"The stepper explains one sample at a time, got a batch of {x.shape[0]} "
                f"(shape {x.shape}). Pass x[k] for sample k, or use lt.explain for batches."
            )
        else:
            raise InputError(
                f"The first layer {first.label} expects one sample with {expected} dimension(s) "
                f"(or {expected + 1} with a leading batch dimension of 1), got shape {x.shape}."
            )
        return (x[0] if batched else x), batched

    @property
    def output(self) -> np.ndarray:
        """The network's output (logits) for the sample."""
        self._require_forward()
        out = self._activations[-1].copy()
        return out[None] if self._batched else out

    def _require_forward(self) -> None:
        if self._activations is None:
            raise InputError("Call .forward(x) first: the walkthrough has no input yet.")

    # ----------------------------------------------------------------------------------
    def backward(
        self, target: int | None = None, rule: RuleSpec = None, init: str = "logit"
    ) -> Walkthrough:
        """Propagate relevance from the output back to the input, layer by layer.

        Parameters
        ----------
        target : int, optional
            The class to explain; default the predicted one (arg-max of the logits).
        rule : Rule, Composite or mapping {layer name: Rule}, optional
            A rule for every weighted layer (``uniform(rule)``), a composite, or rules by
            name; default ``uniform(Epsilon())`` (ε = 1e-6). Pooling layers nobody maps get
            :data:`lrp_tutor.composites.POOLING_RULE`.
        init : {"logit", "one"}
            The seed: :math:`R = f_c(x)\\cdot\\mathrm{onehot}(c)` (default, so that
            :math:`\\sum_i R_i \\approx f_c(x)`) or :math:`\\mathrm{onehot}(c)`.
        """
        self._require_forward()
        activations = self._activations
        rules = self._resolve(rule)
        logits = activations[-1].reshape(-1)
        c = _check_target(target, logits)
        if init == "logit":
            seed = logits[c]
        elif init == "one":
            seed = 1.0
        else:
            raise InputError(f'init must be "logit" (R = f_c(x)·onehot(c)) or "one", got {init!r}.')
        relevance = np.zeros(logits.size)
        relevance[c] = seed
        steps: list[LayerStep] = []
        for k in reversed(range(len(self.layers))):
            layer = self.layers[k]
            r_out = relevance.reshape(activations[k + 1].shape)
            rule_k = rules.get(layer.name) if layer.takes_rule else None
            propagation = propagate(layer, rule_k, activations[k], r_out)
            steps.append(
                LayerStep(k, layer, rule_k, activations[k], activations[k + 1], r_out, propagation)
            )
            relevance = propagation.R_in
        self.steps = steps[::-1]
        self.rules = rules
        self.target = c
        self.relevance = relevance.reshape(self._input_shape)
        self.ledger = Ledger([step.ledger_entry for step in self.steps])
        return self

    def _resolve(self, rule: RuleSpec) -> dict[str, Rule]:
        """``{layer name: rule}`` for every layer that takes one."""
        if rule is None:
            composite = uniform(Epsilon())
        elif isinstance(rule, Rule):
            composite = uniform(rule)
        elif isinstance(rule, Composite):
            composite = rule
        elif isinstance(rule, Mapping):
            by_name = {layer.name: layer for layer in self.layers}
            for name in rule:
                if name not in by_name:
                    raise CompositeError(
                        f"The rules name layer {name!r}, which the model does not have. Layers "
                        f"that take a rule: {self._rule_layers()}."
                    )
                if not by_name[name].takes_rule:
                    raise CompositeError(
                        f"The rules give {by_name[name].label} a rule, but it takes none: "
                        "relevance passes through it. Map only: " + self._rule_layers() + "."
                    )
            composite = Composite(by_name=rule)
        else:
            hint = (
                " (did you forget the parentheses, e.g. Epsilon()?)"
                if isinstance(rule, type)
                else ""
            )
            raise CompositeError(
                f"rule must be a Rule, a Composite or a mapping {{layer name: Rule}}, got "
                f"{rule!r}{hint}."
            )
        resolved = composite.resolve(self.model)
        # a module used twice (shared weights) has one name in named_modules(): its later
        # uses take the rule of its first use, as in the fast path
        first_name = {module: name for name, module in self.model.named_modules()}
        for layer in self.layers:
            shared = first_name.get(layer.module)
            if layer.takes_rule and layer.name not in resolved and shared in resolved:
                resolved[layer.name] = resolved[shared]
        for layer in self.layers:
            if layer.takes_rule and layer.name not in resolved:
                raise CompositeError(
                    f"No rule for layer {layer.label}: {composite!r} does not map it. Add it "
                    "(by name or by type) or give the composite a default."
                )
        return resolved

    def _rule_layers(self) -> str:
        names = [layer.name for layer in self.layers if layer.takes_rule]
        return ", ".join(map(repr, names)) or "none"

    # ----------------------------------------------------------------------------------
    def _require_backward(self) -> None:
        self._require_forward()
        if not self.steps:
            raise InputError("Call .backward() first: no relevance has been propagated yet.")

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self):  # noqa: ANN204
        self._require_backward()
        return iter(self.steps)

    def __getitem__(self, key: int | str) -> LayerStep:
        self._require_backward()
        if isinstance(key, str):
            for step in self.steps:
                if step.name == key or step.label == key:
                    return step
            names = ", ".join(repr(s.name) for s in self.steps)
            raise KeyError(f"No layer {key!r} in the walkthrough; it has: {names}.")
        return self.steps[key]

    def __repr__(self) -> str:
        if not self.steps:
            state = "no backward yet" if self._activations is not None else "no input yet"
            return f"<Walkthrough of {len(self.layers)} layers, {state}>"
        lines = [
            f"Walkthrough of {len(self.layers)} layers, target {self.target}, "
            f"f_c(x) = {f.num(self._activations[-1].reshape(-1)[self.target])}"
        ]
        width = max(len(s.label) for s in self.steps)
        for step in self.steps:
            rule = "—" if step.rule is None else repr(step.rule)
            lines.append(f"  {step.label:<{width}}  {rule}")
        lines.append(self.ledger.check())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.steps:
            return f.para(repr(self))
        rows = []
        for step, entry in zip(self.steps, self.ledger, strict=True):
            rows.append(
                [
                    step.label,
                    "—" if step.rule is None else repr(step.rule),
                    f.num(entry.relevance_out[0]),
                    f.num(entry.relevance_in[0]),
                    f.num(entry.bias[0]),
                    f.num(entry.stabilizer[0]),
                ]
            )
        head = f"Walkthrough · target {self.target}"
        table = f.table(["layer", "rule", "Σ R_out", "Σ R_in", "bias", "ε"], rows)
        return f.box(head, table, f.para(self.ledger.check()))


def _check_has_values(model: nn.Module) -> None:
    """Refuse a model whose weights live on the meta device (shapes only, no values)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_meta:
            raise InputError(
                f"The model's parameter '{name}' is on the meta device: it has a shape but no "
                "values. Load the weights first, e.g. model.to_empty(device='cpu') followed by "
                "model.load_state_dict(...)."
            )


def _warn_train_mode(model: nn.Module) -> None:
    """Warn when a Dropout in train mode would make ``model(x)`` differ from the walkthrough."""
    active = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d) and m.training and m.p > 0
    ]
    if active:
        warnings.warn(
            f"Dropout {', '.join(map(repr, active))} is in train mode; the walkthrough treats "
            "it as in eval mode (the identity), so its output is model.eval()(x), not the "
            "random model(x) of train mode. Call model.eval() to silence this warning.",
            UserWarning,
            stacklevel=3,
        )


def _as_array(x: Any) -> np.ndarray:
    """A float64 numpy copy of ``x`` (numpy array, torch tensor or nested list)."""
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise InputError(
                "x is on the meta device: it has a shape but no values. Pass a tensor with "
                "values (on the CPU or a GPU)."
            )
        x = x.detach().cpu().numpy()
    try:
        array = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"x must be a numpy array or a torch tensor of numbers, got {type(x).__name__}."
        ) from error
    if array.ndim == 0:
        raise InputError("x must be an array (one sample), got a single number.")
    if not np.all(np.isfinite(array)):
        raise InputError("x contains NaN or infinity.")
    return array


def _check_target(target: Any, logits: np.ndarray) -> int:
    if target is None:
        return int(np.argmax(logits))
    if isinstance(target, torch.Tensor | np.ndarray) and len(target.reshape(-1)) == 1:
        target = target.reshape(-1)[0].item()
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise InputError(f"target must be a class index (int) or None, got {target!r}.")
    if not 0 <= int(target) < logits.size:
        raise InputError(
            f"target {target} is out of range: the model has {logits.size} outputs "
            f"(0 … {logits.size - 1})."
        )
    return int(target)
