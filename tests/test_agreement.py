"""The fast path agrees with the stepper, and with a dense-matrix oracle, layer by layer.

The oracle below writes every layer as the matrix of its linear map (built by applying the
layer to the unit vectors) and evaluates LRP's formula for each neuron pair in float64:

    z^p_ij = Σ_t φ_t(x_i)·ρ_t(w_ij),   z^p_j = Σ_i z^p_ij + ρ^p(b_j),
    R_{i←j} = Σ_p c_p · z^p_ij / stab(z^p_j) · R_j,   R_i = Σ_j R_{i←j}.

It shares nothing with the fast path but the rule book.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_tutor import composites
from lrp_tutor.composites import POOLING, Composite
from lrp_tutor.fast import explain
from lrp_tutor.rules import (
    LRP0,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Part,
    Rule,
    Term,
    WSquare,
    ZBox,
    ZPlus,
    identity,
    ones_like,
    stabilize,
)
from lrp_tutor.stepper import Walkthrough

# one composite is reused on every model here: entries for layers a model lacks are meant
pytestmark = pytest.mark.filterwarnings("ignore:The composite maps:UserWarning")

f64 = torch.float64
TOL = 1e-10


class FlatWithBias(Rule):
    """A rule of the user's own, from the rule book's parts: flat terms and the bias.

    z_j is the same for every output j but its bias, the case where a bias is broadcast
    over a product shared by all outputs."""

    formula = "R_{i←j} = 1 / stab(Σ_i 1 + b_j) · R_j"
    source = "a test"

    def __init__(self) -> None:
        self.parts = (Part(1.0, (Term(ones_like, ones_like, "1·1"),), identity, 0.1, "z"),)


RULES = [
    LRP0(),
    Epsilon(),
    Epsilon(0.25),
    Epsilon(0.25, relative=True),
    ZPlus(),
    AlphaBeta(2, 1),
    AlphaBeta(1, 0),
    Gamma(0.25),
    Flat(),
    WSquare(),
    ZBox(-3.0, 3.0),
    FlatWithBias(),
]


def composite_set(model: nn.Module) -> list[Composite]:
    return [
        composites.epsilon_plus_flat(),
        composites.epsilon_gamma_box(-3.0, 3.0),
        composites.epsilon_alpha2_beta1(),
        composites.montavon_vgg(model, -3.0, 3.0),
        Composite(default=Epsilon(0.1), by_type={POOLING: ZPlus(), nn.Linear: Gamma(0.5)}),
    ]


# ------------------------------------------------------------------------------ random models


def random_mlp(seed: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    g = np.random.default_rng(seed)
    widths = [int(w) for w in g.integers(3, 9, size=g.integers(2, 4))] + [4]
    acts = [nn.ReLU, nn.Tanh, nn.LeakyReLU]
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        layers.append(nn.Linear(a, b, bias=bool(g.integers(0, 2))))
        if k < len(widths) - 2:
            layers.append(acts[int(g.integers(0, 3))]())
    torch.manual_seed(seed)
    return nn.Sequential(*layers).double().eval(), (widths[0],)


def random_cnn(seed: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    c1, c2 = (int(c) for c in g.integers(2, 5, size=2))
    pool = [
        nn.AvgPool2d(2),
        nn.MaxPool2d(2),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(2),
        nn.MaxPool2d(3, stride=2, padding=1),
    ][seed % 5]
    layers = [
        nn.Conv2d(2, c1, 3, padding=int(g.integers(0, 2)), bias=bool(g.integers(0, 2))),
        nn.ReLU(),
        pool,
        nn.Conv2d(c1, c2, 2, stride=int(g.integers(1, 3)), bias=bool(g.integers(0, 2))),
        [nn.ReLU(), nn.Tanh()][int(g.integers(0, 2))],
        nn.Flatten(),
    ]
    model = nn.Sequential(*layers).double().eval()
    features = model(torch.zeros(1, 2, 6, 6, dtype=f64)).shape[1]
    layers += [nn.Linear(features, 5), nn.ReLU(), nn.Linear(5, 3, bias=bool(g.integers(0, 2)))]
    return nn.Sequential(*layers).double().eval(), (2, 6, 6)


MODELS = [(random_mlp, s) for s in range(3)] + [(random_cnn, s) for s in range(5)]


# ------------------------------------------------------------------------------ the oracle


def dense(fn, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix (out × in) of a linear map ``fn`` on inputs of ``shape`` (one sample)."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=f64).reshape(n, *shape)
    return fn(basis).reshape(n, -1).T


@torch.no_grad()
def oracle(model: nn.Sequential, x: torch.Tensor, target: int, composite: Composite, init: str):
    """R at every layer's input and the ledger rows, by the neuron-pair formula."""
    rules = composite.resolve(model)
    names = [name for name, _ in model.named_children()]
    inputs = [x]
    for m in model:
        inputs.append(m(inputs[-1]))
    logits = inputs[-1][0]
    r = torch.zeros_like(logits)
    r[target] = logits[target] if init == "logit" else 1.0
    relevances, rows = {}, {}
    for k in reversed(range(len(model))):
        m, name, a = model[k], names[k], inputs[k]
        shape = a.shape[1:]
        r_out = r.reshape(-1)
        absorbed_b = absorbed_e = 0.0
        if isinstance(m, (nn.Linear, nn.Conv2d, *POOLING)):
            rule = rules[name]
            r_in = torch.zeros(a.numel(), dtype=f64)
            bias = _bias(m, inputs[k + 1].shape[1:])
            for part in rule.parts:
                z_ij = 0.0
                for term in part.terms:
                    matrix = _modified_matrix(m, shape, term.weight)
                    phi = term.input(a).reshape(-1)
                    z_ij = z_ij + matrix * phi[None, :]
                b = part.bias(bias)
                z_j = z_ij.sum(1) + b
                eps = part.epsilon  # a relative ε: ε·RMS of all the layer's z_j (one sample)
                if part.relative:
                    eps = part.epsilon * float(torch.sqrt((z_j * z_j).sum() / z_j.numel()))
                den = stabilize(z_j, eps)
                dead = den == 0
                share = torch.where(dead, 0.0, part.coefficient * r_out / den.where(~dead, 1.0))
                r_in += (z_ij * share[:, None]).sum(0)  # R_i = Σ_j R_{i←j}
                absorbed_b += float((b * share).sum())
                sign = torch.ones_like(z_j).where(z_j >= 0, -1.0)  # sign(0) = +1, float64
                eps_share = eps * sign * share
                absorbed_e += float(eps_share.sum() + part.coefficient * r_out[dead].sum())
        elif isinstance(m, nn.MaxPool2d):
            _, idx = F.max_pool2d(
                a, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, True
            )
            winners = torch.zeros(idx.numel(), a.numel(), dtype=f64)
            flat = (idx + torch.arange(a.shape[1])[None, :, None, None] * a[0, 0].numel()).reshape(
                -1
            )
            winners[torch.arange(idx.numel()), flat] = 1.0
            r_in = winners.T @ r_out
        else:  # activations, Flatten
            r_in = r_out.clone()
        relevances[name] = r_in.reshape(a.shape)
        rows[name] = (float(r_out.sum()), float(r_in.sum()), absorbed_b, absorbed_e)
        r = r_in
    return relevances, rows


def _bias(m: nn.Module, out_shape: torch.Size) -> torch.Tensor:
    if getattr(m, "bias", None) is None:
        return torch.zeros(int(np.prod(out_shape)), dtype=f64)
    b = m.bias.detach()
    if isinstance(m, nn.Conv2d):
        b = b[:, None, None].expand(out_shape)
    return b.reshape(-1)


def _modified_matrix(m: nn.Module, shape: torch.Size, rho) -> torch.Tensor:
    """ρ applied to the weights where the layer has weights, as a dense matrix."""
    if isinstance(m, nn.Linear):
        return rho(m.weight.detach())
    if isinstance(m, nn.Conv2d):
        kernel = rho(m.weight.detach())
        return dense(
            lambda v: F.conv2d(v, kernel, None, m.stride, m.padding, m.dilation, m.groups), shape
        )
    pool = dense(m, shape)  # w_ij = 1/d_j on the window, 0 elsewhere
    return torch.where(pool != 0, rho(pool), 0.0)


# ------------------------------------------------------------------------------ the tests


def _cases():
    for make, seed in MODELS:
        model, _ = make(seed)
        for rule in RULES + composite_set(model):
            yield pytest.param(make, seed, rule, id=f"{make.__name__}{seed}-{rule!r}")


def _close(a, b, what: str) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    assert np.abs(a - b).max(initial=0.0) <= TOL * scale, (what, np.abs(a - b).max(), scale)


@pytest.mark.parametrize("make, seed, rule", list(_cases()))
def test_fast_path_agrees_with_stepper_and_oracle_layer_by_layer(make, seed, rule):
    model, shape = make(seed)
    torch.manual_seed(100 + seed)
    x = torch.randn(2, *shape, dtype=f64)
    init = "one" if seed % 2 else "logit"
    composite = rule if isinstance(rule, Composite) else composites.uniform(rule)
    e = explain(model, x, composite=composite, init=init, keep_layers=True)
    for n in range(x.shape[0]):
        target = int(e.target[n])
        walk = Walkthrough(model).forward(x[n]).backward(target, composite, init)
        reference, rows = oracle(model, x[n : n + 1], target, composite, init)
        _close(e.relevance[n], walk.relevance.reshape(shape), "input relevance vs stepper")
        _close(e.relevance[n], reference[walk.steps[0].name][0], "input relevance vs oracle")
        assert [s.name for s in walk.steps] == list(e.layers)
        for step, fast_entry, walk_entry in zip(walk.steps, e.ledger, walk.ledger, strict=True):
            mine = e.layers[step.name][n]
            _close(mine, step.relevance_in.reshape(mine.shape), f"R_in of {step.name} (stepper)")
            _close(mine, reference[step.name][0], f"R_in of {step.name} (oracle)")
            assert fast_entry.layer == walk_entry.layer
            ours = [
                fast_entry.relevance_out[n],
                fast_entry.relevance_in[n],
                fast_entry.bias[n],
                fast_entry.stabilizer[n],
            ]
            theirs = [
                walk_entry.relevance_out[0],
                walk_entry.relevance_in[0],
                walk_entry.bias[0],
                walk_entry.stabilizer[0],
            ]
            scale = max(abs(v) for v in theirs[:2]) or 1.0
            assert np.allclose(ours, theirs, rtol=0, atol=TOL * scale), (step.name, ours, theirs)
            assert np.allclose(ours, rows[step.name], rtol=0, atol=TOL * scale), step.name
    assert e.ledger.holds(TOL)
    # in a larger batch the weights are handled otherwise (kept instead of computed again,
    # products of signed inputs stacked into one), never the relevance of a sample
    more = torch.cat([x, torch.randn(14, *shape, dtype=f64)])
    big = explain(model, more, composite=composite, init=init)
    _close(big.relevance[:2], e.relevance, "the same samples in a batch of 16")


def test_oracle_is_not_trivially_equal_to_the_fast_path():
    # the oracle must tell rules apart (otherwise agreeing with it would prove nothing)
    model, shape = random_cnn(1)
    x = torch.randn(1, *shape, dtype=f64)
    eps, _ = oracle(model, x, 0, composites.uniform(Epsilon()), "logit")
    zplus, _ = oracle(model, x, 0, composites.uniform(ZPlus()), "logit")
    assert not torch.allclose(eps["0"], zplus["0"])
    fast = explain(model, x, target=0, rule=ZPlus()).relevance
    torch.testing.assert_close(fast, zplus["0"], rtol=1e-10, atol=1e-12)


ODD_LAYERS = [
    nn.Sequential(nn.AdaptiveAvgPool2d((3, 2)), nn.Flatten(), nn.Linear(12, 3)),
    nn.Sequential(
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
        nn.Flatten(),
        nn.Linear(18, 3),
    ),
    nn.Sequential(nn.AvgPool2d(2, divisor_override=3), nn.Flatten(), nn.Linear(8, 3)),
    nn.Sequential(
        nn.Conv2d(2, 4, 2, dilation=2, groups=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(),
        nn.Linear(24, 3),
    ),
]


@pytest.mark.parametrize("model", ODD_LAYERS, ids=range(len(ODD_LAYERS)))
@pytest.mark.parametrize("pool_rule", [Epsilon(0.01), ZPlus(), AlphaBeta(2, 1), Flat(), WSquare()])
def test_pooling_and_convolution_variants_agree_with_the_oracle(model, pool_rule):
    # layers the stepper does not show (uneven adaptive pooling, divisors, dilation, groups)
    torch.manual_seed(0)
    model = model.double().eval()
    x = torch.randn(2, 2, 5, 4, dtype=f64)
    composite = Composite(default=Gamma(0.5), by_type={POOLING: pool_rule})
    e = explain(model, x, composite=composite, keep_layers=True)
    for n in range(2):
        reference, rows = oracle(model, x[n : n + 1], int(e.target[n]), composite, "logit")
        for name, r in e.layers.items():
            _close(r[n], reference[name][0], f"R_in of {name}")
        for entry in e.ledger:
            name = entry.layer.split(" (")[0]
            ours = [
                entry.relevance_out[n],
                entry.relevance_in[n],
                entry.bias[n],
                entry.stabilizer[n],
            ]
            scale = max(abs(v) for v in rows[name][:2]) or 1.0
            assert np.allclose(ours, rows[name], rtol=0, atol=TOL * scale), name


@pytest.mark.parametrize("activation", composites.ACTIVATIONS, ids=lambda t: t.__name__)
def test_both_paths_pass_relevance_through_every_activation(activation):
    # one list serves both paths: each activation is explained, and explained alike
    torch.manual_seed(0)
    module = nn.Threshold(0.1, 0.0) if activation is nn.Threshold else activation()
    model = nn.Sequential(nn.Linear(4, 5), module, nn.Linear(5, 2)).double().eval()
    x = torch.randn(1, 4, dtype=f64)
    composite = composites.uniform(Epsilon(0.01))
    e = explain(model, x, composite=composite)
    walk = Walkthrough(model).forward(x[0]).backward(int(e.target[0]), composite)
    _close(e.relevance[0], walk.relevance, f"input relevance through {activation.__name__}")
    assert e.ledger[1].relevance_in.tolist() == e.ledger[1].relevance_out.tolist()
