"""Each operation family against a dense float64 oracle: the rule book applied neuron by neuron.

A family that is a linear map of its input, :math:`z = Wx + b`, is checked by writing
:math:`W` out as a dense matrix (of the modified weights :math:`\\rho(W)` for each term) and
applying the rule's formula to every :math:`z_{ij}`:

.. math::

    R_i = \\sum_p \\sum_j c_p\\, \\frac{z^p_{ij}}{\\mathrm{stab}(z^p_j)} R_j, \\qquad
    z^p_{ij} = \\sum_t \\phi_t(x_i)\\,\\rho_t(w_{ij}) .

The model is the operation, a Flatten and a dense head; the relevance the Flatten receives is
the operation's :math:`R_j` (``keep_layers``), and the relevance at x must be the oracle's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrp_tutor as lt
from lrp_tutor import composites
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZPlus, stabilize

f64 = torch.float64
RULES = [LRP0(), Epsilon(0.1), ZPlus(), AlphaBeta(2, 1), Gamma(0.25), Flat(), WSquare()]


def dense(f, shape) -> torch.Tensor:
    """The matrix (n_out, n_in) of a linear function of one sample of ``shape``."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=f64).reshape(n, *shape)
    return f(basis).reshape(n, -1).T


def oracle(matrix, bias, x: torch.Tensor, r_out: torch.Tensor, rule) -> torch.Tensor:
    """R at x by the rule book: ``matrix(rho)`` is ρ(W) dense, ``bias`` the bias (n_out,)."""
    x, r = x.reshape(-1), r_out.reshape(-1)
    r_in = torch.zeros_like(x)
    for part in rule.parts:
        z_ij = 0.0
        for term in part.terms:
            z_ij = z_ij + matrix(term.weight) * term.input(x)[None, :]
        z_j = z_ij.sum(1) + part.bias(bias)
        den = stabilize(z_j, part.epsilon)
        share = torch.where(den == 0, 0.0, part.coefficient * r / den.where(den != 0, 1.0))
        r_in = r_in + (z_ij * share[:, None]).sum(0)
    return r_in


def explained(op: nn.Module, x: torch.Tensor, composite):
    """The relevance at x and at the operation's output (what the Flatten received)."""
    with torch.no_grad():
        width = op(x).flatten(1).shape[1]
    torch.manual_seed(9)
    model = nn.Sequential(op, nn.Flatten(), nn.Linear(width, 3)).double().eval()
    e = lt.explain(model, x, composite=composite, keep_layers=True)
    assert e.ledger.holds(1e-10)
    return e.relevance, e.layers["1"]


# ------------------------------------------------------------------ layers with a weight

CONVOLUTIONS = [
    (
        lambda: nn.Conv3d(2, 4, (2, 3, 3), stride=(1, 2, 1), padding=1, dilation=(1, 1, 2)),
        (2, 4, 5, 6),
    ),
    (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2), (4, 5, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
    (
        lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
        (4, 3, 3),
    ),
    (lambda: nn.ConvTranspose1d(2, 3, 4, stride=3, dilation=2), (2, 4)),
]


@pytest.mark.parametrize("make, shape", CONVOLUTIONS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_convolutions_of_every_kind(make, shape, rule):
    torch.manual_seed(0)
    op = make().double().eval()
    x = torch.randn(1, *shape, dtype=f64)
    r_x, r_out = explained(op, x, composites.Composite(by_type={type(op): rule}, default=LRP0()))

    def matrix(rho):
        w = rho(op.weight.detach())
        if isinstance(op, nn.modules.conv._ConvTransposeNd):
            conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[w.ndim - 3]
            return dense(
                lambda v: conv(
                    v, w, None, op.stride, op.padding, op.output_padding, op.groups, op.dilation
                ),
                shape,
            )
        return dense(lambda v: op._conv_forward(v, w, None), shape)  # padding_mode included

    with torch.no_grad():
        out_shape = op(x).shape[1:]
        bias = op.bias.detach().view(-1, *([1] * (len(out_shape) - 1))).expand(out_shape)
        expected = oracle(matrix, bias.reshape(-1), x, r_out, rule)
    scale = float(expected.abs().max())
    torch.testing.assert_close(r_x.reshape(-1), expected, rtol=0, atol=1e-10 * scale)


# ------------------------------------------------------------------ fixed linear maps


class Op(nn.Module):
    """An operation written in a forward, the way library code writes it."""

    def __init__(self, kind: str, channels: int = 4) -> None:
        super().__init__()
        self.kind = kind
        self.norm = {
            "layer_norm": nn.LayerNorm(5),
            "layer_norm_2d": nn.LayerNorm(channels),
            "group_norm": nn.GroupNorm(2, channels),
            "rms_norm": nn.RMSNorm(5),
            "batch_norm": nn.BatchNorm2d(channels),
            "lrn": nn.LocalResponseNorm(3, alpha=0.5, k=1.5),
        }.get(kind)
        self.scale = nn.Parameter(torch.linspace(-1.5, 2.0, channels).view(-1, 1, 1))
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        if self.kind == "layer_norm_2d":  # timm's LayerNorm2d
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if self.norm is not None:
            return self.norm(x)
        if self.kind == "mean":
            return x.mean((2, 3))
        if self.kind == "sum":
            return x.sum(1, keepdim=True)
        if self.kind == "bilinear":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.kind == "layer_scale":
            return x * self.scale
        if self.kind == "gate":  # squeeze-excitation
            return x * torch.sigmoid(self.fc(x.mean((2, 3)))).view(*x.shape[:2], 1, 1)
        raise ValueError(self.kind)


def _fixed_matrix(op: Op, x: torch.Tensor):
    """W and b of the operation at x, with what the family holds constant held constant."""
    kind, shape = op.kind, x.shape[1:]
    with torch.no_grad():
        if kind == "gate":
            g = torch.sigmoid(op.fc(x.mean((2, 3)))).view(*x.shape[:2], 1, 1)[0]
            f = lambda v: v * g  # noqa: E731
        elif kind in ("layer_norm", "layer_norm_2d", "group_norm"):
            xs = x[0]
            if kind == "group_norm":
                groups = xs.reshape(2, -1)
                sigma = (groups.var(1, unbiased=False) + op.norm.eps).sqrt()
                w = op.norm.weight.view(-1, 1, 1)

                def f(v):
                    g = v.reshape(v.shape[0], 2, -1)
                    c = (g - g.mean(-1, keepdim=True)) / sigma[None, :, None]
                    return c.reshape(v.shape) * w

            else:
                t = xs.permute(1, 2, 0) if kind == "layer_norm_2d" else xs
                sigma = (t.var(-1, unbiased=False, keepdim=True) + op.norm.eps).sqrt()

                def f(v):
                    t = v.permute(0, 2, 3, 1) if kind == "layer_norm_2d" else v
                    c = (t - t.mean(-1, keepdim=True)) / sigma * op.norm.weight
                    return c.permute(0, 3, 1, 2) if kind == "layer_norm_2d" else c

        elif kind == "lrn":
            weight = (op(x) / x)[0]  # 1/d_c, the divisor held constant
            f = lambda v: v * weight  # noqa: E731
        elif kind == "rms_norm":
            rms = (x[0].pow(2).mean(-1, keepdim=True) + torch.finfo(f64).eps).sqrt()
            f = lambda v: v / rms * op.norm.weight  # noqa: E731
        else:
            f = lambda v: op(v) - op(torch.zeros_like(v[:1]))  # noqa: E731
        matrix = dense(f, shape)
        bias = (op(x) - f(x)).reshape(-1)  # z = Wx + b
    return matrix, bias


@pytest.mark.parametrize(
    "kind, shape",
    [
        ("layer_norm", (3, 5)),
        ("layer_norm_2d", (4, 3, 3)),
        ("group_norm", (4, 3, 3)),
        ("rms_norm", (3, 5)),
        ("batch_norm", (4, 3, 3)),
        ("lrn", (4, 3, 3)),
        ("mean", (4, 3, 3)),
        ("sum", (4, 3, 3)),
        ("bilinear", (4, 2, 3)),
        ("layer_scale", (4, 3, 3)),
        ("gate", (4, 3, 3)),
    ],
)
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_fixed_maps_under_the_epsilon_rule(kind, shape, epsilon):
    """Normalisations (σ held constant), BatchNorm on its own, means, interpolation, a layer
    scale, a gate (held constant): the ε-rule on the linear map they are at x."""
    torch.manual_seed(1)
    op = Op(kind).double().eval()
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if kind == "batch_norm":
            op.norm.running_mean.uniform_(-1, 1)
            op.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(1, *shape, dtype=f64)
    rule = Epsilon(epsilon)
    r_x, r_out = explained(op, x, composites.Composite(by_type={nn.Module: rule}, default=rule))
    matrix, bias = _fixed_matrix(op, x)
    expected = oracle(lambda rho: rho(matrix), bias, x, r_out, rule)
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(r_x.reshape(-1), expected, rtol=0, atol=1e-10 * scale)


def test_product_of_two_activations_splits_uniformly():
    """a * b of two activations of one shape: each factor receives half (AttnLRP)."""

    class Squared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)

        def forward(self, x):
            return self.a(x) * self.b(x)

    torch.manual_seed(2)
    op = Squared().double().eval()
    x = torch.randn(2, 4, dtype=f64)
    everything = composites.Composite(by_type={nn.Module: LRP0()}, default=LRP0())
    model = nn.Sequential(op, nn.Linear(4, 2, bias=False)).double().eval()
    e = lt.explain(model, x, composite=everything, keep_layers=True)
    assert e.ledger.holds(1e-10)
    r_out = e.layers["1"].sum(1)  # what the product's output received
    # bias-free LRP-0 layers pass on what they receive: each factor got half of every R_j
    torch.testing.assert_close(e.layers["0.a"].sum(1), r_out / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(e.layers["0.b"].sum(1), r_out / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(e.total, e.seed, rtol=1e-12, atol=0)


def test_the_registry_names_real_functions_and_stepper_layers():
    """Every family finds torch functions for each name it lists (no typo hides one), and
    names a stepper layer that exists, where it names one."""
    from lrp_tutor.fast import registry
    from lrp_tutor.stepper import _layers

    found = {}
    for key, family in registry._FAMILIES.items():
        found.setdefault(family.name, set()).add(getattr(key, "__name__", str(key)))
    for family in registry.FAMILIES:
        assert found.get(family.name), family.name
        for name in family.functions:
            if name not in ("T", "mT", "H", "mH"):
                assert any(
                    getattr(space, name, None) is not None for space in registry._NAMESPACES
                ), (family.name, name)
        if family.stepper is not None:
            assert isinstance(getattr(_layers, family.stepper), type), family.stepper
