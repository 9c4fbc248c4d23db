"""Composites: which rule goes to which layer.

A composite looks at a model's layers and gives each layer that redistributes relevance
through weights (``Linear``, ``Conv1d``, ``Conv2d``) or a fixed linear map (``AvgPool``,
``AdaptiveAvgPool``) one rule from :mod:`lrp_tutor.rules`. Other layers need no rule:
element-wise activations, Flatten and Dropout pass relevance on, MaxPool sends it to the
winner, BatchNorm is merged into the layer before it.

Both paths read a composite the same way, through :meth:`Composite.resolve`, which returns
``{module name: rule}``. Precedence: ``by_name`` > ``first`` > ``by_type`` (first match in the
order given) > ``default``. Pooling layers that nothing maps get :data:`POOLING_RULE`.

Examples
--------
>>> import torch.nn as nn
>>> from lrp_tutor.rules import Epsilon, Flat
>>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> Composite(default=Epsilon(0.1), first=Flat()).resolve(model)
{'0': Flat(), '2': Epsilon(epsilon=0.1)}
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch import nn

from .errors import CompositeError
from .rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Rule, ZBox, ZPlus

__all__ = [
    "Composite",
    "WEIGHTED",
    "POOLING",
    "ACTIVATIONS",
    "POOLING_RULE",
    "SUM_RULE",
    "by_type",
    "by_name",
    "uniform",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "montavon_vgg",
    "attn_lrp",
    "cp_lrp",
    "attention_rules",
    "ATTENTION",
]

CONVOLUTIONS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""Convolutions of every dimension, transposed ones included (the presets' "conv" layers)."""

WEIGHTED: tuple[type[nn.Module], ...] = (nn.Linear, *CONVOLUTIONS)
"""Layers whose relevance a rule redistributes through their weights."""

POOLING: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)
"""Average pooling: linear layers with fixed weights."""

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.LogSigmoid,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Threshold,
)
"""Element-wise activations: relevance passes through them unchanged (both paths)."""

POOLING_RULE: Rule = Epsilon(1e-6)
"""The rule of average-pooling layers that a composite does not map (as in Zennit)."""

SUM_RULE: Rule = Epsilon(1e-6)
"""The rule of residual sums (``lrp_tutor.fast.Sum``, torchvision-style residual blocks) that
a composite does not map by name or by type: :math:`R_k = a^{(k)}/\\mathrm{stab}(z)\\cdot R`."""


ATTENTION: dict[str, str] = {
    "cp_lrp": "softmax outputs are held constant, so a product with them (attention's A·V) is "
    "a linear map of the values and no relevance enters the queries and keys; in a product "
    "of two activations, the output of a non-linear activation (a gated MLP's SiLU branch) "
    "is held constant (Ali et al. 2022, 'XAI for transformers: better explanations through "
    "conservative propagation')",
    "attn_lrp": "softmax takes AttnLRP's rule R_i = x_i (R_i - s_i Σ_j R_j); a product of two "
    "activations (Q·Kᵀ, A·V, a gated MLP) gives each factor half of each contribution's "
    "relevance (Achtibat et al. 2024, 'AttnLRP: attention-aware layer-wise relevance "
    "propagation for transformers')",
}
"""The two treatments of attention a :class:`Composite` chooses between (``attention=``)."""


class Composite:
    """Map the layers of a model to rules.

    Parameters
    ----------
    by_type : mapping of layer type (or tuple of types) to Rule, optional
        Rules by ``isinstance``; the first match in the order given wins.
    by_name : mapping of module name to Rule, optional
        Rules for named modules (``"features.0"``); a name the model lacks raises
        :class:`~lrp_tutor.errors.CompositeError`.
    first : Rule, optional
        The rule of the first weighted layer (``Linear``/``Conv``) in registration order,
        typically the pixel layer (``ZBox``, ``Flat``, ``WSquare``).
    default : Rule, optional
        The rule of every weighted layer nothing else maps.
    attention : {"cp_lrp", "attn_lrp"}
        How softmax and the product of two activations are explained (see
        :data:`ATTENTION`): ``"cp_lrp"`` (the default) holds softmax outputs and gates
        constant, ``"attn_lrp"`` applies AttnLRP's softmax and uniform product rules.
    """

    def __init__(
        self,
        by_type: Mapping[Any, Rule] | None = None,
        by_name: Mapping[str, Rule] | None = None,
        first: Rule | None = None,
        default: Rule | None = None,
        label: str | None = None,
        attention: str = "cp_lrp",
    ) -> None:
        self.by_type = dict(by_type or {})
        self.by_name = dict(by_name or {})
        self.first = first
        self.default = default
        self.label = label
        if attention not in ATTENTION:
            raise CompositeError(
                f"attention={attention!r} is not one of {', '.join(map(repr, ATTENTION))}: "
                + "; ".join(f"{k!r}: {v}" for k, v in ATTENTION.items())
            )
        self.attention = attention
        for key, rule in [*self.by_type.items(), *self.by_name.items()]:
            _check_rule(rule, key)
        for key in self.by_type:
            _check_type_key(key)
        for key, rule in (("first", first), ("default", default)):
            if rule is not None:
                _check_rule(rule, key)

    def resolve(self, model: nn.Module) -> dict[str, Rule]:
        """``{module name: rule}`` for every leaf layer of ``model`` that takes a rule."""
        modules = dict(model.named_modules())
        missing = [name for name in self.by_name if name not in modules]
        if missing:
            known = ", ".join(n for n, m in modules.items() if n and _takes_rule(m))
            raise CompositeError(
                f"The composite names {', '.join(map(repr, missing))}, which the model does not "
                f"have. Layers that take a rule: {known or 'none'}."
            )
        _check_targets(self, modules)
        resolved: dict[str, Rule] = {}
        first_seen = False
        for name, module in modules.items():
            if not _takes_rule(module):
                continue
            is_first = isinstance(module, WEIGHTED) and not first_seen
            first_seen = first_seen or isinstance(module, WEIGHTED)
            rule = self._rule_for(name, module, is_first)
            if rule is not None:
                resolved[name] = rule
        return resolved

    def _rule_for(self, name: str, module: nn.Module, is_first: bool) -> Rule | None:
        if name in self.by_name:
            return self.by_name[name]
        if is_first and self.first is not None:
            return self.first
        for types, rule in self.by_type.items():
            if isinstance(module, types):
                return rule
        if isinstance(module, POOLING):
            return POOLING_RULE
        return self.default

    def operation_rule(
        self, module: nn.Module, role: str, probe: type[nn.Module] | None = None
    ) -> Rule | None:
        """The rule of an operation that runs inside ``module`` (not the computation of a
        layer the composite names): the first ``by_type`` entry that ``module`` is an instance
        of or ``probe`` a subclass of; else :data:`POOLING_RULE` (``role`` "fixed": a linear
        map without learned weights, a constant factor, a product of activations),
        :data:`SUM_RULE` ("sum"), or the default ("weighted"; ``None`` if there is none).

        Both paths ask this: the fast path for every intercepted operation, the attention
        stepper for the operations of ``nn.MultiheadAttention``.

        >>> attn_lrp(epsilon=0.1).operation_rule(nn.MultiheadAttention(4, 2), "weighted", nn.Linear)
        Epsilon(epsilon=0.1)
        >>> attn_lrp(epsilon=0.1).operation_rule(nn.MultiheadAttention(4, 2), "fixed")
        Epsilon(epsilon=1e-06)
        """
        for types, rule in self.by_type.items():
            if isinstance(module, types) or (probe is not None and issubclass(probe, types)):
                return rule
        if role == "fixed":
            return POOLING_RULE
        if role == "sum":
            return SUM_RULE
        return self.default

    def __repr__(self) -> str:
        if self.label:
            return self.label
        parts = []
        for key in ("by_type", "by_name", "first", "default"):
            value = getattr(self, key)
            if value:
                if key == "by_type":
                    value = {_type_name(t): r for t, r in value.items()}
                parts.append(f"{key}={value!r}")
        if self.attention != "cp_lrp":
            parts.append(f"attention={self.attention!r}")
        return f"Composite({', '.join(parts)})"


def _takes_rule(module: nn.Module) -> bool:
    return isinstance(module, WEIGHTED + POOLING)


RULE_TAKERS: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        *WEIGHTED,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        nn.modules.batchnorm._BatchNorm,
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
"""The torch.nn layers a composite may give a rule to. A module of a class not from
torch.nn (``lrp_tutor.fast.Sum``, a block of your own) may take one too."""


def _may_take_rule(kind: type) -> bool:
    """Whether modules of class ``kind`` (or of its subclasses) can take a rule."""
    if not kind.__module__.startswith("torch.nn"):
        return True
    return issubclass(kind, RULE_TAKERS) or any(issubclass(t, kind) for t in RULE_TAKERS)


def _why_no_rule(kind: type) -> str:
    if issubclass(kind, ACTIVATIONS):
        return "element-wise activations pass relevance on unchanged"
    if issubclass(kind, nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AdaptiveMaxPoolNd):
        return "max pooling sends relevance to the winner"
    if issubclass(kind, nn.Sequential | nn.ModuleList | nn.ModuleDict):
        return "a container's rules are those of the layers inside it"
    return "it passes relevance on without a rule"


def _check_type_key(key: Any) -> None:
    """A ``by_type`` key must be a module class (or a tuple of them) that can take a rule."""
    for kind in key if isinstance(key, tuple) else (key,):
        if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
            if isinstance(kind, str) and isinstance(getattr(nn, kind, None), type):
                fix = f"use the class nn.{kind} (from torch import nn), not the string {kind!r}"
            else:
                fix = "e.g. nn.Linear, or a tuple (nn.Conv1d, nn.Conv2d)"
            raise CompositeError(
                f"by_type maps {kind!r} to a rule, but its keys must be layer classes: {fix}."
            )
        if not _may_take_rule(kind):
            raise CompositeError(
                f"by_type maps {kind.__name__} to a rule, but {kind.__name__} takes no rule: "
                f"{_why_no_rule(kind)}. Map the layers around it (e.g. nn.Linear, nn.Conv2d)."
            )


def _check_targets(composite: Composite, modules: dict[str, nn.Module]) -> None:
    """``by_name`` must name layers that take a rule; a ``by_type`` key that matches no
    layer of the model gets a warning (a composite is often reused across models)."""
    for name in composite.by_name:
        kind = type(modules[name])
        if not _may_take_rule(kind):
            known = ", ".join(n for n, m in modules.items() if n and _takes_rule(m))
            raise CompositeError(
                f"The composite maps layer '{name}' ({kind.__name__}) to "
                f"{composite.by_name[name]!r}, but {kind.__name__} takes no rule: "
                f"{_why_no_rule(kind)}. Layers that take a rule: {known or 'none'}."
            )
    if composite.label is not None:  # presets and uniform() are meant for any model
        return
    for key in composite.by_type:
        if not any(isinstance(m, key) for m in modules.values()):
            warnings.warn(
                f"The composite maps {_type_name(key)} to {composite.by_type[key]!r}, but the "
                f"model ({type(modules['']).__name__}) has no such layer; that entry is unused.",
                UserWarning,
                stacklevel=3,
            )


def _type_name(types: Any) -> str:
    if isinstance(types, tuple):
        return "(" + ", ".join(t.__name__ for t in types) + ")"
    return types.__name__


def _check_rule(rule: Any, where: Any) -> None:
    if not isinstance(rule, Rule):
        hint = (
            " (did you forget the parentheses, e.g. Epsilon()?)" if isinstance(rule, type) else ""
        )
        raise CompositeError(
            f"The composite maps {where!r} to {rule!r}, which is not a rule{hint}. "
            "Use a rule from lrp_tutor.rules."
        )


def uniform(rule: Rule) -> Composite:
    """One rule for every weighted layer (what ``explain(..., rule=rule)`` uses).

    >>> uniform(Epsilon(0.25))
    uniform(Epsilon(epsilon=0.25))
    """
    _check_rule(rule, "rule")
    return Composite(default=rule, label=f"uniform({rule!r})")


def by_type(mapping: Mapping[Any, Rule], default: Rule | None = None) -> Composite:
    """Rules by layer type, e.g. ``by_type({nn.Conv2d: ZPlus(), nn.Linear: Epsilon(0.1)})``."""
    return Composite(by_type=mapping, default=default)


def by_name(mapping: Mapping[str, Rule], default: Rule | None = None) -> Composite:
    """Rules by module name, e.g. ``by_name({"features.0": Flat()}, default=Epsilon())``."""
    return Composite(by_name=mapping, default=default)


def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
    """Flat at the first layer, z⁺ on convolutions, ε on dense layers (Zennit's EpsilonPlusFlat).

    >>> epsilon_plus_flat()
    epsilon_plus_flat()
    """
    return Composite(
        by_type={CONVOLUTIONS: ZPlus(), nn.Linear: Epsilon(epsilon)},
        first=Flat(),
        label="epsilon_plus_flat()",
    )


def epsilon_gamma_box(low: Any, high: Any, epsilon: float = 1e-6, gamma: float = 0.25) -> Composite:
    """z^B at the pixels, γ on convolutions, ε on dense layers (Zennit's EpsilonGammaBox).

    >>> epsilon_gamma_box(0.0, 1.0)
    epsilon_gamma_box(low=0.0, high=1.0)
    """
    return Composite(
        by_type={CONVOLUTIONS: Gamma(gamma), nn.Linear: Epsilon(epsilon)},
        first=ZBox(low, high),
        label=f"epsilon_gamma_box(low={low!r}, high={high!r})",
    )


def epsilon_alpha2_beta1(epsilon: float = 1e-6) -> Composite:
    """αβ (α = 2, β = 1) on convolutions, ε on dense layers (Zennit's EpsilonAlpha2Beta1).

    >>> epsilon_alpha2_beta1()
    epsilon_alpha2_beta1()
    """
    return Composite(
        by_type={CONVOLUTIONS: AlphaBeta(2.0, 1.0), nn.Linear: Epsilon(epsilon)},
        label="epsilon_alpha2_beta1()",
    )


def montavon_vgg(
    model: nn.Module,
    low: Any,
    high: Any,
    gamma: float = 0.25,
    epsilon: float = 0.25,
    relative: bool = True,
) -> Composite:
    """Montavon et al.'s recipe for VGG: z^B at the pixels, γ in the lower convolutions, ε in
    the upper ones, LRP-0 in the dense top layers.

    The weighted layers of ``model`` are split by position: the first gets ``ZBox(low, high)``,
    convolutions in the lower half of the convolution stack get ``Gamma(gamma)``, the upper
    half ``Epsilon(epsilon, relative=True)``, and dense layers ``LRP0()`` (Montavon et al.
    2019, sec. 10.2.2: for VGG-16, γ for conv 1–16 of the torchvision index, ε for 17–30,
    LRP-0 above). As in their tutorial, ε there is relative: 0.25 times the RMS of the
    layer's z, per sample, so that it absorbs the same share whatever the scale of the
    activations. ``relative=False`` gives an absolute ε instead.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
    ...                     nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    >>> sorted(montavon_vgg(net, 0.0, 1.0).resolve(net).items())
    [('0', ZBox(low=0.0, high=1.0)), ('2', Gamma(gamma=0.25)), \
('4', Epsilon(epsilon=0.25, relative=True)), ('6', LRP0())]
    """
    weighted = [n for n, m in model.named_modules() if isinstance(m, WEIGHTED)]
    convs = [n for n, m in model.named_modules() if isinstance(m, CONVOLUTIONS)]
    lower = convs[: (len(convs) + 1) // 2]
    upper = Epsilon(epsilon, relative=relative)
    names = {n: (Gamma(gamma) if n in lower else upper) for n in convs}
    names.pop(weighted[0] if weighted else "", None)  # the pixel layer gets z^B
    absolute = "" if relative else ", relative=False"
    return Composite(
        by_name=names,
        by_type={nn.Linear: LRP0()},
        first=ZBox(low, high),
        label=f"montavon_vgg(low={low!r}, high={high!r}{absolute})",
    )


def _attention_preset(
    attention: str, epsilon: float, gamma: float | None, conv: Rule | None
) -> Composite:
    """The composite of :func:`attn_lrp` or :func:`cp_lrp`, labelled by its call."""
    from .fast.modules import Product, Sum  # the engine's operations, as types to map

    linear: Rule = Epsilon(epsilon) if gamma is None else Gamma(gamma)
    joins = Epsilon(epsilon)
    args = [] if epsilon == 1e-6 else [f"epsilon={epsilon!r}"]
    args += [] if gamma is None else [f"gamma={gamma!r}"]
    args += [] if conv is None else [f"conv={conv!r}"]
    return Composite(
        by_type={nn.Linear: linear, CONVOLUTIONS: conv or linear, Sum: joins, Product: joins},
        default=linear,
        attention=attention,
        label=f"{attention}({', '.join(args)})",
    )


def attention_rules(composite: Composite, module: nn.Module) -> dict[str, Rule | None]:
    """The rules of the operations inside an attention layer ``module`` under ``composite``,
    as :meth:`Composite.operation_rule` gives them: ``"projection"`` (the query, key, value
    and output projections, the rule of ``nn.Linear``), ``"scale"`` (the constant factor
    :math:`1/\\sqrt{d}`), ``"product"`` (:math:`QK^\\top` and, under AttnLRP, :math:`AV`:
    the ε of its first part stabilises the uniform rule) and ``"mix"`` (:math:`AV` under
    CP-LRP, a linear map of the values with the constant weights *A*).

    >>> rules = attention_rules(attn_lrp(epsilon=0.1), nn.MultiheadAttention(4, 2))
    >>> rules["projection"], rules["scale"], rules["product"]
    (Epsilon(epsilon=0.1), Epsilon(epsilon=1e-06), Epsilon(epsilon=0.1))
    """
    from .fast.modules import Product  # the engine's operation, as a type to map

    return {
        "projection": composite.operation_rule(module, "weighted", nn.Linear),
        "scale": composite.operation_rule(module, "fixed"),
        "product": composite.operation_rule(module, "fixed", Product),
        "mix": composite.operation_rule(module, "weighted"),
    }


def attn_lrp(
    epsilon: float = 1e-6, gamma: float | None = None, conv: Rule | None = None
) -> Composite:
    r"""AttnLRP (Achtibat et al. 2024, ICML) for transformers.

    Softmax takes the rule :math:`R_i = x_i (R_i - s_i \sum_j R_j)`; the product of two
    activations (attention's :math:`QK^\top` and :math:`A V`, a gated MLP) the uniform rule,
    each factor receiving half of each contribution's relevance; LayerNorm and RMSNorm hold
    their standard deviation constant; element-wise activations pass relevance on; linear
    layers take ``Epsilon(epsilon)``, or ``Gamma(gamma)`` where ``gamma`` is given (LXT's
    γ option for vision transformers), and convolutions (a ViT's patch embedding) ``conv``
    if given, else the same rule; residual sums and the products of activations are
    stabilised by the same ``epsilon``.

    >>> attn_lrp()
    attn_lrp()
    >>> attn_lrp(gamma=0.25).by_type[nn.Linear]
    Gamma(gamma=0.25)
    """
    return _attention_preset("attn_lrp", epsilon, gamma, conv)


def cp_lrp(
    epsilon: float = 1e-6, gamma: float | None = None, conv: Rule | None = None
) -> Composite:
    r"""CP-LRP (Ali et al. 2022, ICML): attention weights held constant.

    Softmax outputs are constants, so :math:`A V` is a linear map of the values and
    relevance reaches the tokens through the values only; in a gated MLP the activated
    branch is held constant as a gate. The rest as in :func:`attn_lrp`.

    >>> cp_lrp(gamma=0.25)
    cp_lrp(gamma=0.25)
    """
    return _attention_preset("cp_lrp", epsilon, gamma, conv)
