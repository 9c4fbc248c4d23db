"""Properties over random small models (hypothesis).

(a) The user's model is never changed: after ``explain()`` or a ``Walkthrough`` — returned or
    raised — parameters and buffers (bitwise, and their version counters), hooks,
    ``requires_grad`` flags and every module's training flag are as before.
(b) No rule ever produces NaN or inf, on either path, at zero denominators (zero inputs, zero
    weights), tiny weights (1e-30) or huge activations (1e30, float64).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_state import assert_unchanged, snapshot
from torch import nn

import lrp_tutor as lt
from lrp_tutor import composites
from lrp_tutor.errors import LRPError
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Rule, WSquare, ZBox, ZPlus

f64 = torch.float64

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


# ------------------------------------------------------------------------------ models


@st.composite
def architectures(draw: Any, batchnorm: bool = True) -> dict:
    """A recipe for a small CNN/MLP: conv blocks, Flatten, dense blocks, 3 logits."""
    channels = draw(st.integers(1, 2))
    side = draw(st.integers(4, 6))
    convs = []
    c, s = channels, side
    for _ in range(draw(st.integers(0, 2))):
        out = draw(st.integers(1, 3))
        kernel = draw(st.sampled_from([1, 3]))
        pad = draw(st.sampled_from([0, 1])) if kernel == 3 else 0
        if s + 2 * pad - kernel + 1 < 1:
            break
        pool = draw(st.sampled_from([None, "max", "avg"]))
        s = s + 2 * pad - kernel + 1
        if pool and s < 2:
            pool = None
        convs.append(
            {
                "in": c,
                "out": out,
                "kernel": kernel,
                "pad": pad,
                "bias": draw(st.booleans()),
                "bn": batchnorm and draw(st.booleans()),
                "inplace": draw(st.booleans()),
                "pool": pool,
            }
        )
        c = out
        s = s // 2 if pool else s
    width = c * s * s
    dense = []
    for _ in range(draw(st.integers(0, 2))):
        out = draw(st.integers(2, 5))
        dense.append(
            {
                "in": width,
                "out": out,
                "bias": draw(st.booleans()),
                "bn": batchnorm and draw(st.booleans()),
                "inplace": draw(st.booleans()),
            }
        )
        width = out
    return {"shape": (channels, side, side), "convs": convs, "dense": dense, "width": width}


def build(recipe: dict, dtype: torch.dtype = f64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for b in recipe["convs"]:
        layers.append(nn.Conv2d(b["in"], b["out"], b["kernel"], padding=b["pad"], bias=b["bias"]))
        if b["bn"]:
            layers.append(nn.BatchNorm2d(b["out"]))
        layers.append(nn.ReLU(inplace=b["inplace"]))
        if b["pool"] == "max":
            layers.append(nn.MaxPool2d(2))
        elif b["pool"] == "avg":
            layers.append(nn.AvgPool2d(2))
    layers.append(nn.Flatten())
    for b in recipe["dense"]:
        layers.append(nn.Linear(b["in"], b["out"], bias=b["bias"]))
        if b["bn"]:
            layers.append(nn.BatchNorm1d(b["out"]))
        layers.append(nn.ReLU(inplace=b["inplace"]))
    layers.append(nn.Linear(recipe["width"], 3))
    return nn.Sequential(*layers).to(dtype)


# ------------------------------------------------------------------------------ (a)


BAD_INPUTS = st.sampled_from([None, None, None, "nan", "inf", "int", "channels", "1d", "empty"])

RULES_A = st.sampled_from(
    [None, LRP0(), Epsilon(0.1), Gamma(0.25), AlphaBeta(2, 1), ZPlus(), WSquare(), Flat()]
)


@SETTINGS
@given(
    recipe=architectures(),
    modes=st.lists(st.booleans(), min_size=30, max_size=30),
    frozen=st.lists(st.booleans(), min_size=30, max_size=30),
    hooks=st.lists(st.sampled_from(["", "forward", "pre", "backward"]), min_size=30, max_size=30),
    bad=BAD_INPUTS,
    target=st.one_of(st.none(), st.integers(-1, 3)),
    rule=RULES_A,
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_the_model_is_never_changed(recipe, modes, frozen, hooks, bad, target, rule, batch, seed):
    torch.manual_seed(seed)
    model = build(recipe)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    for m, mode in zip(model.modules(), modes, strict=False):
        m.training = mode
    for p, off in zip(model.parameters(), frozen, strict=False):
        p.requires_grad_(not off)
    for m, hook in zip(model.modules(), hooks, strict=False):
        if hook == "forward":
            m.register_forward_hook(lambda module, args, out: None)
        elif hook == "pre":
            m.register_forward_pre_hook(lambda module, args: None)
        elif hook == "backward" and m is not model:
            m.register_full_backward_hook(lambda module, grad_in, grad_out: None)
    x = torch.rand(batch, *recipe["shape"], dtype=f64) - 0.3
    if bad == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif bad == "inf":
        x[-1, 0, 1, 1] = float("inf")
    elif bad == "int":
        x = (x * 10).long()
    elif bad == "channels":
        x = torch.rand(batch, recipe["shape"][0] + 1, *recipe["shape"][1:], dtype=f64)
    elif bad == "1d":
        x = x.reshape(-1)
    elif bad == "empty":
        x = x[:0]

    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            e = lt.explain(model, x, target=target, rule=rule)
        except LRPError:
            pass
        else:
            assert bad is None and e.relevance.shape == x.shape
        assert_unchanged(before, snapshot(model))
        try:
            walk = lt.Walkthrough(model).forward(x[:1] if x.ndim > 1 else x)
            walk.backward(target=target, rule=rule)
        except LRPError:
            pass
        assert_unchanged(before, snapshot(model))


# ------------------------------------------------------------------------------ (b)


def all_rules(low: float, high: float) -> list[Rule]:
    return [
        LRP0(),
        Epsilon(),
        Epsilon(1.0),
        Epsilon(0.25, relative=True),
        Gamma(0.25),
        Gamma(0.25, epsilon=0.0),
        AlphaBeta(1.0),
        AlphaBeta(2.0, 1.0),
        AlphaBeta(3.0, 2.0, epsilon=0.0),
        ZPlus(),
        ZPlus(epsilon=0.0),
        WSquare(),
        WSquare(epsilon=0.0),
        Flat(),
        Flat(epsilon=0.0),
        ZBox(low, high),
        ZBox(low, high, epsilon=0.0),
    ]


SCENARIOS = st.sampled_from(
    [
        "zero input",
        "zero weights",
        "zero biases and input",
        "some zero layers",
        "tiny weights",
        "tiny weights and input",
        "huge input",
        "huge input, tiny weights",
        "huge input, zero biases",
    ]
)


def prepare(model: nn.Module, x: torch.Tensor, scenario: str, layer_mask: list[bool]):
    """Set weights and input to the scenario's extreme values (in place, our own model)."""
    weighted = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    with torch.no_grad():
        for m, masked in zip(weighted, layer_mask, strict=False):
            if scenario == "zero weights" or (scenario == "some zero layers" and masked):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
            if "tiny weights" in scenario:
                m.weight.mul_(1e-30)
                if m.bias is not None:
                    m.bias.mul_(1e-30)
            if "zero biases" in scenario and m.bias is not None:
                m.bias.zero_()
    if "zero" in scenario and "input" in scenario:
        x = torch.zeros_like(x)
    if scenario == "tiny weights and input":
        x = x * 1e-30
    if "huge input" in scenario:
        x = x * 1e30
    return x


def finite(a: Any) -> bool:
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return bool(np.isfinite(a).all())


def ledger_finite(ledger) -> bool:
    return all(
        finite(v)
        for entry in ledger
        for v in (entry.relevance_out, entry.relevance_in, entry.bias, entry.stabilizer)
    )


@SETTINGS
@given(
    recipe=architectures(batchnorm=False),
    scenario=SCENARIOS,
    layer_mask=st.lists(st.booleans(), min_size=6, max_size=6),
    rules=st.lists(st.integers(0, 16), min_size=4, max_size=4, unique=True),
    first=st.sampled_from([None, "flat", "w2", "zbox"]),
    init=st.sampled_from(["logit", "one"]),
    target=st.one_of(st.none(), st.integers(0, 2)),
    seed=st.integers(0, 2**16),
)
def test_no_rule_produces_nan_or_inf(
    recipe, scenario, layer_mask, rules, first, init, target, seed
):
    torch.manual_seed(seed)
    model = build(recipe).eval()
    x = prepare(model, torch.randn(2, *recipe["shape"], dtype=f64), scenario, layer_mask)
    low, high = float(x.min()) - 1.0, float(x.max()) + 1.0
    walk = lt.Walkthrough(model).forward(x[0])
    book = all_rules(low, high)
    assert len(book) == 17
    for rule in [book[k] for k in rules]:
        if first is None:
            spec: Any = composites.uniform(rule)
        else:
            pixel = {"flat": Flat(), "w2": WSquare(), "zbox": ZBox(low, high)}[first]
            spec = composites.Composite(first=pixel, default=rule)
        e = lt.explain(model, x, target=target, composite=spec, init=init)
        assert finite(e.output), (scenario, rule)
        assert finite(e.relevance), (scenario, rule, first)
        assert ledger_finite(e.ledger), (scenario, rule, first)
        if init == "logit":
            walk.backward(target=target, rule=spec)
        else:
            walk.backward(target=target, rule=spec, init="one")
        assert finite(walk.relevance), ("stepper", scenario, rule, first)
        assert ledger_finite(walk.ledger), ("stepper", scenario, rule, first)
        for step in walk:
            assert finite(step.relevance_out) and finite(step.stabilizer_absorbed)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_conservation_survives_extreme_scales(scale):
    """Not only finite: at 1e±30 the books still balance (relative to the seed)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)
    ).double()
    x = torch.rand(2, 1, 4, 4, dtype=f64) * scale
    for rule in (LRP0(), AlphaBeta(), ZPlus(), Flat()):
        for e in (
            lt.explain(model.eval(), x, rule=rule),
            lt.Walkthrough(model).forward(x[0]).backward(rule=rule),
        ):
            for entry in e.ledger:
                size = np.max(
                    [np.abs(getattr(entry, k)) for k in ("relevance_out", "relevance_in", "bias")]
                )
                assert size > 0 and np.all(np.abs(entry.residual) <= 1e-10 * size), (rule, entry)
