"""What a new user gets wrong, and what lrp_tutor answers: one test per troubleshooting case.

Every case either raises an error of :mod:`lrp_tutor.errors` whose message names the argument
or the layer and says what to do, or — where the input is legitimate — gives the correct
result (checked against a reference computed another way) with a documented warning where
one is due. README.md's troubleshooting table has one row per test of this file (the test's
name is in an HTML comment of the row); ``test_troubleshooting_table_lists_every_case``
keeps the two in step.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from model_state import assert_unchanged, snapshot
from torch import nn

import lrp_tutor as lt
from lrp_tutor import assignments, checks, composites, course, widgets, zoo
from lrp_tutor.cli import main
from lrp_tutor.errors import (
    CompositeError,
    InputError,
    RuleError,
    UnsupportedLayerError,
    WeightsError,
)
from lrp_tutor.rules import (
    LRP0,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    WSquare,
    ZBox,
    ZPlus,
)
from lrp_tutor.zoo import store

f64 = torch.float64
RULES = [LRP0(), Epsilon(0.1), Gamma(0.25), AlphaBeta(2, 1), ZPlus(), Flat(), WSquare()]


def message(kind: type[Exception], call, *words: str) -> str:
    """Run ``call``, expect ``kind``, and check that every word is in its message."""
    with pytest.raises(kind) as info:
        call()
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} not in: {text}"
    return text


def dense(inplace: bool = False, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return (
        nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace), nn.Linear(5, 4), nn.ReLU(inplace))
        .append(nn.Linear(4, 3))
        .double()
        .eval()
    )


def convnet(inplace: bool = False, seed: int = 0) -> nn.Sequential:
    """(N, 1, 8, 8) → 3 logits; no BatchNorm, so that the stepper can walk it too."""
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3),
            nn.ReLU(inplace),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(6, 3),
        )
        .double()
        .eval()
    )


def x_dense(n: int = 3, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(n, 6, dtype=f64)


def x_image(n: int = 2, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(n, 1, 8, 8, dtype=f64)


def assert_close(a, b, tol: float = 1e-10) -> None:
    a = torch.as_tensor(a, dtype=f64).detach()
    b = torch.as_tensor(b, dtype=f64).detach()
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.abs().max() + 1e-300))


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """LRP-0 on a bias-free ReLU network is gradient × input: an independent reference."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
    return g * x


# ============================================================================ fast path


def test_explain_x_without_batch_dimension():
    message(
        InputError,
        lambda: lt.explain(dense(), torch.randn(6, dtype=f64)),
        "x has shape (6,)",
        "batch",
        "x.unsqueeze(0)",
    )


def test_explain_x_of_wrong_shape():
    text = message(
        InputError,
        lambda: lt.explain(convnet(), torch.rand(2, 8, 8, dtype=f64)),
        "x of shape (2, 8, 8)",
        "'0' (Conv2d",
        "shape the model expects",
    )
    assert "x.unsqueeze(0)" in text


def test_explain_x_not_a_tensor():
    message(
        InputError,
        lambda: lt.explain(dense(), x_dense().numpy()),
        "x must be a torch.Tensor",
        "ndarray",
        "torch.as_tensor",
    )


def test_explain_empty_batch():
    message(
        InputError,
        lambda: lt.explain(dense(), torch.zeros(0, 6, dtype=f64)),
        "(0, 6)",
        "empty batch",
        "at least one sample",
    )


@pytest.mark.parametrize("target", [3, -1, [0] * 49 + [5]], ids=["3", "-1", "list"])
def test_explain_target_out_of_range(target):
    text = message(
        InputError,
        lambda: lt.explain(dense(), x_dense(50), target=target),
        "target",
        "out of range",
        "3 classes",
        "0 … 2",
    )
    assert len(text) < 200  # the bad class is named once, not once per sample


@pytest.mark.parametrize(
    "target, words",
    [
        (torch.tensor([[0], [1], [2]]), ("shape (N,)", "(3, 1)")),
        ([0, 1], ("2 entries", "3 samples", "one class per sample")),
    ],
)
def test_explain_target_of_wrong_shape(target, words):
    message(InputError, lambda: lt.explain(dense(), x_dense(), target=target), "target", *words)


@pytest.mark.parametrize("target", [1.0, torch.tensor([0.0, 1.0, 2.0]), np.array([0.5, 1, 2])])
def test_explain_float_target(target):
    text = message(InputError, lambda: lt.explain(dense(), x_dense(), target=target), "target")
    assert "int" in text and ("target=3" in text or "sequence of ints" in text)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_explain_nan_or_inf_input(bad):
    x = x_dense()
    x[1, 4] = bad
    message(
        InputError,
        lambda: lt.explain(dense(), x),
        "x contains 1 NaN or infinite value",
        "(1, 4)",
        "finite",
    )


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool])
def test_explain_integer_input(dtype):
    x = (x_dense() > 0).to(dtype)
    message(InputError, lambda: lt.explain(dense(), x), f"dtype {dtype}", "x.float()")


def test_explain_train_mode_warns_explains_in_eval_and_restores():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3)
    ).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    reference = copy.deepcopy(model).eval()
    model.train()
    model[4].eval()  # a mixed state comes back as it was
    modes = [m.training for m in model.modules()]
    x = x_dense()
    with pytest.warns(UserWarning, match=r"train mode; explain\(\) explains it in eval mode"):
        e = lt.explain(model, x, rule=Epsilon(0.1))
    assert [m.training for m in model.modules()] == modes
    expected = lt.explain(reference, x, rule=Epsilon(0.1))
    assert torch.equal(e.output, reference(x).detach())  # running statistics, no dropout
    assert_close(e.relevance, expected.relevance)


def test_explain_train_mode_without_dropout_or_batchnorm_does_not_warn():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.0), nn.Linear(5, 3)).double()
    assert model.training  # freshly built, as in a student's notebook
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = lt.explain(model, x_dense(), rule=Epsilon(0.1))
    assert model.training and e.ledger.holds(1e-10)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_explain_inplace_relu_gives_the_out_of_place_result(rule):
    for make, x in ((dense, x_dense()), (convnet, x_image())):
        inplace, plain = make(inplace=True), make(inplace=False)
        got = lt.explain(inplace, x, rule=rule)
        expected = lt.explain(plain, x, rule=rule)
        assert torch.equal(got.output, expected.output)
        assert_close(got.relevance, expected.relevance, 1e-12)
        assert got.ledger.holds(1e-10)


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_explain_module_used_twice(rule):
    torch.manual_seed(0)
    shared = nn.Linear(5, 5)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU())
    model = model.append(nn.Linear(5, 3)).double().eval()
    unshared = copy.deepcopy(nn.Sequential(*model))  # deepcopy keeps the sharing ...
    unshared[4] = copy.deepcopy(model[2])  # ... so give the second use its own copy
    assert unshared[4] is not unshared[2]
    x = x_dense()
    got = lt.explain(model, x, rule=rule)
    expected = lt.explain(unshared.eval(), x, rule=rule)
    assert_close(got.relevance, expected.relevance, 1e-12)
    assert [entry.layer for entry in got.ledger][2:5] == ["2 (Linear)", "3 (ReLU)", "2#2 (Linear)"]
    if rule == LRP0():  # an independent check: bias-free → gradient × input
        for m in (model, unshared):
            for layer in m:
                if isinstance(layer, nn.Linear):
                    layer.bias = None
        c = int(lt.explain(model, x[:1], rule=rule).target[0])
        assert_close(
            lt.explain(model, x[:1], rule=rule, target=c).relevance,
            gradient_x_input(model, x[:1], c),
        )


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


class _RunningSumNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.cumsum(x, 1)[:, -1])


@pytest.mark.parametrize(
    "make, x, words",
    [
        (_LSTMNet, torch.randn(2, 5, 4), ("'rnn' (LSTM", "recurrent")),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 1), nn.Flatten(), nn.Linear(8, 3)
            ),
            torch.randn(2, 1, 4, 4),
            ("'1' (LPPool2d", "lp_pool2d"),
        ),
        (_RunningSumNet, torch.randn(2, 5, 4), ("torch.cumsum", "_RunningSumNet")),
    ],
    ids=["LSTM", "LPPool2d", "cumsum"],
)
def test_explain_unsupported_layer_is_named(make, x, words):
    text = message(UnsupportedLayerError, lambda: lt.explain(make().eval(), x), *words)
    assert "no LRP rule" in text
    assert issubclass(UnsupportedLayerError, TypeError)


class _FunctionalSoftmax(nn.Module):
    def __init__(self, log: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.log = log

    def forward(self, x):
        return (torch.log_softmax if self.log else torch.softmax)(self.fc(x), 1)


@pytest.mark.parametrize(
    "model, words",
    [
        (nn.Sequential(nn.Linear(6, 3), nn.Softmax(dim=1)), ("'1' (Softmax",)),
        (nn.Sequential(nn.Linear(6, 3), nn.LogSoftmax(dim=1)), ("'1' (LogSoftmax",)),
        (_FunctionalSoftmax(log=False), ("torch.softmax", "(_FunctionalSoftmax)")),
        (_FunctionalSoftmax(log=True), ("torch.log_softmax", "(_FunctionalSoftmax)")),
    ],
    ids=["Softmax", "LogSoftmax", "torch.softmax", "torch.log_softmax"],
)
def test_explain_softmax_head(model, words):
    x = torch.randn(2, 6)
    message(
        UnsupportedLayerError, lambda: lt.explain(model.eval(), x), *words, "explain the logits"
    )


def test_explain_meta_device():
    """A model and an input on different devices: x is moved to the model's device (see the
    GPU test below); a tensor on the meta device has no values, which is named."""
    model, x = dense(), x_dense()
    message(InputError, lambda: lt.explain(model, x.to("meta")), "x is on the meta device")
    message(
        InputError,
        lambda: lt.explain(copy.deepcopy(model).to("meta"), x),
        "'0.weight' is on the meta device",
        "load_state_dict",
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_explain_model_on_gpu_x_on_cpu():
    model, x = convnet(), x_image()
    expected = lt.explain(model, x, rule=AlphaBeta())
    got = lt.explain(copy.deepcopy(model).cuda(), x, rule=AlphaBeta())
    assert got.relevance.device == x.device
    assert_close(got.relevance, expected.relevance, 1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_explain_half_precision_model(dtype):
    model = convnet().to(dtype)
    message(
        InputError,
        lambda: lt.explain(model, x_image().float()),
        f"{dtype}",
        "float32 or float64",
        "copy.deepcopy(model).float()",
    )
    # a half-precision x for a float32 model is computed in float32 and handed back in x's dtype
    model32, x = convnet().float(), x_image().float()
    got = lt.explain(model32, x.to(dtype))
    expected = lt.explain(model32, x.to(dtype).float())
    assert got.relevance.dtype == dtype
    assert torch.equal(got.relevance, expected.relevance.to(dtype))


def test_explain_backward_hook_on_a_layer():
    model = convnet()
    calls = []
    model[3].register_full_backward_hook(lambda module, grad_in, grad_out: calls.append(1))
    message(
        UnsupportedLayerError,
        lambda: lt.explain(model, x_image()),
        "backward hook",
        "'3'",
        "remove()",
    )
    assert calls == []


def test_explain_forward_hook_that_replaces_an_output():
    """A hook's computation is part of the forward: explained like any operation (here a
    constant factor 2 on the output of '2'); a hook that works in place is explained alike."""
    model, x = dense(), x_dense()
    expected = lt.explain(model, x, rule=AlphaBeta())
    handle = model[2].register_forward_hook(lambda module, args, out: 2 * out)
    for rule in (Epsilon(), AlphaBeta()):  # the hook runs after '2': in the model's forward
        got = lt.explain(model, x, rule=rule)
        assert "model (mul)" in [entry.layer for entry in got.ledger]
        assert got.ledger.holds(1e-10)
    doubled = lt.explain(model, x, rule=AlphaBeta())
    with torch.no_grad():
        assert_close(doubled.output, model(x.to(f64)), 1e-15)  # what the hooked model computes
    handle.remove()

    def in_place(module, args, out):
        out.mul_(2)  # changes the output without returning it

    handle = model[2].register_forward_hook(in_place)
    assert_close(lt.explain(model, x, rule=AlphaBeta()).relevance, doubled.relevance, 1e-12)
    handle.remove()
    # a hook that only looks (returns None) changes nothing
    seen = []
    model[2].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    assert_close(lt.explain(model, x, rule=AlphaBeta()).relevance, expected.relevance, 1e-12)
    assert seen


def test_explain_rule_class_instead_of_instance():
    message(CompositeError, lambda: lt.explain(dense(), x_dense(), rule=Epsilon), "parentheses")
    walk = lt.Walkthrough(dense()).forward(x_dense()[0])
    message(CompositeError, lambda: walk.backward(rule=Epsilon), "parentheses", "Epsilon()")


def test_explain_model_it_cannot_look_into():
    model, x = convnet(), x_image()
    cases = [
        (torch.compile, ["torch.compile'd", "lt.explain(model._orig_mod, x)"]),
        (torch.jit.script, ["TorchScript", "original nn.Module"]),
        (nn.DataParallel, ["DataParallel", "lt.explain(model.module, x)"]),
        (lambda m: nn.Sequential(torch.jit.script(m)), ["Layer '0'", "TorchScript"]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's own
        for wrap, words in cases:
            wrapped = wrap(model)
            before = snapshot(model)
            message(InputError, lambda wrapped=wrapped: lt.explain(wrapped, x), *words)
            assert_unchanged(before, snapshot(model))
    message(InputError, lambda: lt.explain(None, x), "model must be a torch.nn.Module")
    message(InputError, lambda: widgets.rule_explorer(None, x[:1]), "got NoneType")


def test_explain_under_inference_mode():
    model, x = convnet(), x_image()
    with torch.inference_mode():
        message(InputError, lambda: lt.explain(model, x), "torch.inference_mode()", "outside")
        loaded = convnet()  # parameters made under inference mode
    text = message(InputError, lambda: lt.explain(loaded, x), "'0.weight'", "inference_mode")
    assert "shape" not in text  # not blamed on x


@pytest.mark.parametrize(
    "target, words",
    [
        (2**70, ["target [1180591620717411303424] out of range", "3 classes"]),
        (torch.tensor([0, 1], device="meta"), ["target is on the meta device"]),
    ],
    ids=["2**70", "meta"],
)
def test_explain_target_beyond_int64_or_on_the_meta_device(target, words):
    message(InputError, lambda: lt.explain(convnet(), x_image(), target=target), *words)


# ============================================================================ rule book


@pytest.mark.parametrize(
    "make",
    [
        lambda: Epsilon(-0.1),
        lambda: Gamma(0.25, epsilon=-0.1),
        lambda: AlphaBeta(2, 1, epsilon=-0.1),
        lambda: ZPlus(epsilon=-0.1),
        lambda: WSquare(epsilon=-0.1),
        lambda: Flat(epsilon=-0.1),
        lambda: ZBox(0.0, 1.0, epsilon=-0.1),
    ],
    ids=["Epsilon", "Gamma", "AlphaBeta", "ZPlus", "WSquare", "Flat", "ZBox"],
)
def test_rule_negative_epsilon(make):
    text = message(RuleError, make, "epsilon must be a finite number ≥ 0", "-0.1")
    assert isinstance(RuleError(text), ValueError)


def test_rule_relative_epsilon_zero_or_not_a_bool():
    message(
        RuleError,
        lambda: Epsilon(0.0, relative=True),
        "a relative epsilon must be > 0",
        "epsilon=0.0",
        "LRP0()",
    )
    message(RuleError, lambda: Epsilon(0.25, relative="yes"), "relative must be True or False")
    message(RuleError, lambda: Epsilon(-0.25, relative=True), "epsilon must be a finite number ≥ 0")


@pytest.mark.parametrize("alpha, beta", [(2, 2), (3, 1), (1, 0.5)])
def test_rule_alpha_minus_beta_not_one(alpha, beta):
    message(
        RuleError,
        lambda: AlphaBeta(alpha, beta),
        "alpha − beta must be 1",
        f"Pass beta={alpha - 1:g}",
    )


@pytest.mark.parametrize("alpha", [0.5, 0.0, -1.0])
def test_rule_alpha_below_one(alpha):
    message(RuleError, lambda: AlphaBeta(alpha), "alpha must be a finite number ≥ 1")


@pytest.mark.parametrize(
    "low, high",
    [
        (1.0, 0.0),
        (0.5, 0.5),
        (np.array([0.0, 0.0, 1.0]), np.array([1.0, 1.0, 1.0])),
        (torch.tensor([-2.0, -1.0]).view(1, 2, 1, 1), torch.tensor([2.0, -1.5]).view(1, 2, 1, 1)),
    ],
    ids=["reversed", "equal", "one channel equal", "tensor per channel"],
)
def test_rule_zbox_low_not_below_high(low, high):
    message(RuleError, lambda: ZBox(low, high), "low must be < high", "smallest and largest value")
    message(RuleError, lambda: composites.epsilon_gamma_box(low, high), "low must be < high")


@pytest.mark.parametrize(
    "rule, name", [(Gamma(1e39), "gamma"), (Epsilon(1e39), "epsilon")], ids=["Gamma", "Epsilon"]
)
def test_rule_parameter_too_large_for_the_dtype(rule, name):
    model, x = convnet().float(), x_image().float()
    message(
        RuleError,
        lambda: lt.explain(model, x, rule=rule),
        f"{name} = 1e+39 is beyond 1.8e+19",
        "torch.float32",
        "the composite's default",
        "double()",
    )
    exact = lt.explain(model.double(), x.double(), rule=rule)  # float64 takes it
    assert torch.isfinite(exact.relevance).all() and exact.ledger.holds()


def test_rule_zbox_bounds_of_the_wrong_shape():
    per_rgb_channel = composites.epsilon_gamma_box(torch.zeros(3, 1, 1), torch.ones(3, 1, 1))
    text = message(
        RuleError,
        lambda: lt.explain(convnet(), x_image(), composite=per_rgb_channel),
        "ZBox: low has shape (3, 1, 1)",
        "input of the layer",
        "(2, 1, 8, 8)",
    )
    assert "cannot run on x" not in text


# ============================================================================ composites


def test_composite_names_a_missing_layer():
    bad = composites.by_name({"features.0": Flat()}, default=Epsilon())
    model, x = convnet(), x_image()
    for call in (
        lambda: lt.explain(model, x, composite=bad),
        lambda: lt.Walkthrough(model).forward(x[0]).backward(rule=bad),
    ):
        message(CompositeError, call, "'features.0'", "does not have", "0, 3, 5, 7")
    message(
        CompositeError,
        lambda: lt.Walkthrough(model).forward(x[0]).backward(rule={"conv1": Flat()}),
        "'conv1'",
        "'0', '3', '5', '7'",
    )


def test_composite_without_rule_for_a_layer():
    only_first = composites.Composite(first=Flat())
    model, x = dense(), x_dense()
    message(
        CompositeError,
        lambda: lt.explain(model, x, composite=only_first),
        "no rule for layer '2'",
        "default",
    )
    message(
        CompositeError,
        lambda: lt.Walkthrough(model).forward(x[0]).backward(rule=only_first),
        "No rule for layer 2 (Linear)",
        "default",
    )


def test_composite_type_given_as_a_string():
    message(
        CompositeError,
        lambda: composites.by_type({"Linear": Epsilon()}),
        "'Linear'",
        "use the class nn.Linear",
    )


def test_composite_maps_a_layer_that_takes_no_rule():
    model, x = convnet(), x_image()
    message(
        CompositeError,
        lambda: composites.by_type({nn.ReLU: Epsilon()}, default=Epsilon()),
        "ReLU takes no rule",
        "element-wise activations",
    )
    by_pool = composites.by_name({"2": ZPlus()}, default=Epsilon())
    message(
        CompositeError,
        lambda: lt.explain(model, x, composite=by_pool),
        "layer '2' (MaxPool2d)",
        "takes no rule",
        "Layers that take a rule: 0, 3, 5, 7",
    )


def test_composite_type_the_model_lacks_warns():
    model, x = dense(), x_dense()
    convs = composites.by_type({nn.Conv2d: ZPlus()}, default=Epsilon(0.1))
    with pytest.warns(UserWarning, match="maps Conv2d to ZPlus.*has no such layer"):
        got = lt.explain(model, x, composite=convs)
    assert_close(got.relevance, lt.explain(model, x, rule=Epsilon(0.1)).relevance)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # presets are meant for any model: no warning
        lt.explain(model, x, composite=composites.epsilon_plus_flat())


# ============================================================================ ledger


@pytest.mark.parametrize("rule", [Epsilon(0.25), AlphaBeta(2, 1), ZPlus(), Flat()], ids=repr)
def test_ledger_of_a_float32_explanation(rule):
    digits, _ = zoo.mnist_samples()
    e = lt.explain(zoo.mnist_cnn(), digits[:4], rule=rule)
    assert e.ledger.holds(), e.ledger.check()
    assert e.ledger.check().startswith("Conservation holds")
    assert e.ledger.tolerance > 1e-6  # float32 books balance to its precision, not to 1e-10
    assert lt.explain(convnet(), x_image(), rule=rule).ledger.tolerance == 1e-10
    entry = e.ledger[-1]
    entry.relevance_in = entry.relevance_in * 0.99  # lose 1 % of the relevance: a violation
    assert not e.ledger.holds()
    assert e.ledger.check().startswith(f"Conservation is violated in layer {entry.layer}")


# ============================================================================ stepper


class _NotSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize(
    "model, kind, words",
    [
        (_NotSequential(), InputError, ("nn.Sequential", "_NotSequential")),
        (
            nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)),
            UnsupportedLayerError,
            ("Layer 1 (BatchNorm1d)", "Merge it into the layer before it"),
        ),
        (
            nn.Sequential(nn.LSTM(6, 4), nn.Linear(4, 3)),
            UnsupportedLayerError,
            ("Layer 0 (LSTM)", "lt.explain"),
        ),
        (
            nn.Sequential(nn.Linear(6, 3), nn.Softmax(1)),
            UnsupportedLayerError,
            ("Layer 1 (Softmax)", "leave the final softmax out"),
        ),
        ("a model", InputError, ("nn.Sequential", "(W, b, activation)")),
    ],
    ids=["custom module", "BatchNorm", "LSTM", "Softmax", "string"],
)
def test_walkthrough_of_a_model_it_cannot_walk(model, kind, words):
    message(kind, lambda: lt.Walkthrough(model), *words)


def test_walkthrough_wrong_input_shape():
    walk = lt.Walkthrough(convnet())
    message(
        InputError,
        lambda: walk.forward(torch.rand(8, 8)),
        "first layer 0 (Conv2d)",
        "3 dimension(s)",
        "got shape (8, 8)",
    )
    message(InputError, lambda: walk.forward(torch.rand(3, 8, 8)), "0 (Conv2d)", "1 input channels")
    message(
        InputError,
        lambda: walk.forward(x_image(n=2)),
        "one sample at a time",
        "x[k]",
        "lt.explain",
    )
    message(InputError, lambda: lt.Walkthrough(dense()).forward(torch.rand(5)), "6 inputs")


@pytest.mark.parametrize(
    "target, words",
    [(3, ("target 3 is out of range", "0 … 2")), (1.0, ("class index (int)",))],
)
def test_walkthrough_bad_target(target, words):
    walk = lt.Walkthrough(dense()).forward(x_dense()[0])
    message(InputError, lambda: walk.backward(target=target), *words)


def test_walkthrough_nan_input():
    x = x_dense()[0]
    x[2] = math.nan
    message(InputError, lambda: lt.Walkthrough(dense()).forward(x), "NaN")


def test_walkthrough_integer_input_is_converted_to_float64():
    model = dense()
    ints = torch.tensor([1, -2, 0, 3, 1, -1])
    got = lt.Walkthrough(model).forward(ints).backward(rule=Epsilon(0.1))
    assert got.relevance.dtype == np.float64
    fast = lt.explain(model, ints[None].double(), rule=Epsilon(0.1), target=got.target)
    assert_close(got.relevance, fast.relevance[0])


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_walkthrough_module_used_twice(rule):
    torch.manual_seed(0)
    shared = nn.Linear(5, 5)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU())
    model = model.append(nn.Linear(5, 3)).double().eval()
    unshared = nn.Sequential(*[copy.deepcopy(m) for m in model]).eval()
    x = x_dense()[0]
    walk = lt.Walkthrough(model).forward(x).backward(rule=rule)
    expected = lt.Walkthrough(unshared).forward(x).backward(rule=rule)
    assert [step.name for step in walk] == ["0", "1", "2", "3", "4", "5", "6"]
    assert walk["4"].rule == rule
    assert_close(walk.relevance, expected.relevance)
    assert_close(walk.relevance, lt.explain(model, x[None], rule=rule).relevance[0])


def test_walkthrough_inplace_relu():
    for make, x in ((dense, x_dense()[0]), (convnet, x_image()[0])):
        for rule in (Epsilon(0.1), AlphaBeta()):
            got = lt.Walkthrough(make(inplace=True)).forward(x).backward(rule=rule)
            expected = lt.Walkthrough(make()).forward(x).backward(rule=rule)
            np.testing.assert_array_equal(got.relevance, expected.relevance)


def test_walkthrough_dropout_in_train_mode_warns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.ReLU(), nn.Linear(5, 3)).double()
    x = x_dense()[0]
    with pytest.warns(UserWarning, match=r"Dropout '1' is in train mode; the walkthrough"):
        walk = lt.Walkthrough(model).forward(x).backward()
    assert model.training and model[1].training  # the flags are not touched
    np.testing.assert_allclose(walk.output, model.eval()(x).detach().numpy(), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lt.Walkthrough(model).forward(x).backward()  # in eval mode: no warning


def test_walkthrough_meta_device():
    message(
        InputError,
        lambda: lt.Walkthrough(dense().to("meta")),
        "'0.weight' is on the meta device",
        "load_state_dict",
    )
    walk = lt.Walkthrough(dense())
    message(InputError, lambda: walk.forward(x_dense()[0].to("meta")), "x is on the meta device")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_walkthrough_half_precision_model_is_walked_in_float64(dtype):
    model = dense().to(dtype)
    x = x_dense()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        walk = lt.Walkthrough(model).forward(x).backward(rule=AlphaBeta())
    exact = copy.deepcopy(model).double()  # the same (rounded) weights, in float64
    expected = lt.explain(exact, x[None], rule=AlphaBeta(), target=walk.target)
    assert walk.relevance.dtype == np.float64
    assert_close(walk.relevance, expected.relevance[0])


# ============================================================================ widgets


def test_widget_sliders_at_their_ends():
    model, x = convnet().float(), x_image(n=1).float()
    explorer = widgets.rule_explorer(model, x, live=False)
    assert explorer.epsilon.min == 0 and explorer.alpha.min == 1
    for rule, slider in [
        ("LRP-0", None),
        ("z⁺", None),
        ("ε", explorer.epsilon),
        ("γ", explorer.gamma),
        ("αβ", explorer.alpha),
    ]:
        explorer.rule_menu.value = rule
        for value in (slider.max, slider.min) if slider else (None,):
            if slider:
                slider.value = value
            for first in ("same", "flat", "w²", "z^B") if value == 0 else ("same",):
                explorer.first_menu.value = first  # ε = 0 with every first-layer rule
                assert explorer.error is None, (rule, value, first, explorer.error)
                assert torch.isfinite(explorer.explanation.relevance).all()
                assert explorer.image.value[:4] == b"\x89PNG"
    explorer.rule_menu.value, explorer.first_menu.value = "ε", "same"
    explorer.epsilon.value = 0.0
    assert explorer.rule == Epsilon(0.0)
    assert_close(
        explorer.explanation.relevance, lt.explain(model, x, rule=LRP0()).relevance.double()
    )

    stepper = widgets.stepper(model, x)
    for position in (stepper.slider.max, stepper.slider.min):
        stepper.slider.value = position
        assert stepper.step is stepper.walk[len(stepper.walk) - 1 - position]
        assert stepper.figure is not None
    inspector = widgets.neuron_inspector(model, x)
    for neuron in (inspector.neuron.max, inspector.neuron.min):
        inspector.neuron.value = neuron
        assert inspector.figure is not None


def test_widget_given_a_batch():
    model, x = convnet().float(), x_image(n=2).float()
    for make in (widgets.rule_explorer, widgets.rule_comparison):
        message(InputError, lambda make=make: make(model, x), "batch dimension of 1", "x[k:k+1]")
    message(InputError, lambda: widgets.stepper(model, x), "one sample at a time")


def test_widget_with_an_unsupported_layer():
    model = nn.Sequential(nn.LSTM(4, 3)).eval()
    for make in (widgets.rule_explorer, widgets.rule_comparison):
        message(
            UnsupportedLayerError,
            lambda make=make: make(model, torch.rand(1, 2, 4)),
            "'0' (LSTM",
            "recurrent",
        )
    message(UnsupportedLayerError, lambda: widgets.stepper(model, torch.rand(1, 2, 4)), "LSTM")


def test_widget_slider_set_to_nan():
    model, x = convnet().float(), x_image(n=1).float()
    explorer = widgets.rule_explorer(model, x, live=False, epsilon=0.5)
    explorer.epsilon.value = math.nan
    assert explorer.epsilon.value == 0.5 and explorer.error is None
    assert "ε = nan</b> is not a number" in explorer.status.value
    assert explorer.explanation.composite.default == Epsilon(0.5)  # the heatmap is not stale


def test_widget_names_do_not_clash():
    assert callable(widgets.rule_comparison) and callable(widgets.neuron_inspector)
    with pytest.raises(AttributeError, match="neuron_inspector"):
        _ = widgets.inspector
    with pytest.warns(DeprecationWarning, match="rule_comparison"):
        old = widgets.compare_rules
    assert old is widgets.rule_comparison
    assert widgets.rule_comparison is not lt.evaluate.compare_rules


# ============================================================================ zoo


@pytest.fixture
def weights_copy(tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(store.WEIGHTS_DIR, folder)
    return folder


def test_zoo_corrupted_weights_file(weights_copy, monkeypatch):
    path = weights_copy / "digits_cnn.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k))
    message(
        WeightsError,
        lambda: zoo.digits_cnn(weights_dir=weights_copy),
        "'digits_cnn' is corrupted",
        "SHA-256",
        "Reinstall",
    )
    assert loads == []  # refused before anything is unpickled
    assert issubclass(WeightsError, RuntimeError)


def test_zoo_missing_weights(weights_copy):
    (weights_copy / "mnist_mlp.pt").unlink()
    message(WeightsError, lambda: zoo.mnist_mlp(weights_dir=weights_copy), "missing", "Reinstall")
    message(WeightsError, lambda: store.load_state_dict("vgg16"), "No weights for 'vgg16'")


@pytest.mark.parametrize(
    "manifest",
    ["[]", '{"models": []}', '{"models": {"mnist_mlp": {"file": "mnist_mlp.pt"}}}'],
    ids=["list", "models a list", "no sha256"],
)
def test_zoo_malformed_manifest(weights_copy, manifest):
    (weights_copy / "manifest.json").write_text(manifest, encoding="utf-8")
    message(
        WeightsError, lambda: zoo.mnist_mlp(weights_dir=weights_copy), "is malformed", "Reinstall"
    )


# ============================================================================ checkers


def test_checker_function_that_raises():
    def contributions(x, W):
        return x @ W.T  # shapes do not fit

    result = checks.ex01_contributions(contributions)
    assert not result.passed and result.implemented
    text = result.message
    assert "Your function raised ValueError" in text
    assert "line" in text and "x @ W.T" in text  # where, in the student's code
    assert "x[:, None] * W" in text  # the hint for shape errors
    assert "Traceback" not in text


def test_checker_wrong_shape():
    result = checks.ex01_messages(lambda x, W, b, R_out: (x[:, None] * W).T)
    assert not result.passed
    text = result.message
    assert "with shape (4, 3) = (n_in, n_out), got shape (3, 4)" in text
    assert "Case 1 of" in text


def test_checker_returns_nan():
    def relevance_in(x, W, b, R_out):
        z = x[:, None] * W
        return (z / (z.sum(0) + b) * R_out).sum(1) * np.nan  # every entry NaN

    result = checks.ex01_relevance_in(relevance_in)
    assert not result.passed
    assert "Your answer contains NaN or inf" in result.message
    assert "0/0 := 0" in result.message


def test_checker_not_given_a_function():
    result = checks.ex02_stabilize(np.zeros(3))
    assert not result.passed
    assert "Expected a function, got ndarray" in result.message
    assert "Pass the function itself" in result.message


class _Frozen(nn.Module):
    """A frozen backbone: its forward cuts the path to x (no_grad, detach or .data)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.backbone = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        if self.how in ("no_grad", "inference_mode"):
            with getattr(torch, self.how)():
                h = self.backbone(x)
            return self.head(h)
        h = self.backbone(x)
        if self.how in ("detach", "data"):
            h = h.detach() if self.how == "detach" else h.data
        return self.head(h)


def test_explain_no_grad_inside_forward():
    """A no_grad block in the forward (a frozen backbone) does not cut relevance off: LRP
    explains what the code computes, whatever autograd was told. inference_mode makes
    tensors autograd cannot use at all: that is said."""
    model = _Frozen("no_grad").double().eval()
    plain = _Frozen("plain").double().eval()
    plain.load_state_dict(model.state_dict())
    expected = lt.explain(plain, x_dense(), rule=AlphaBeta())
    got = lt.explain(model, x_dense(), rule=AlphaBeta())
    assert_close(got.relevance, expected.relevance, 1e-14)
    inference = _Frozen("inference_mode").double().eval()
    message(
        UnsupportedLayerError,
        lambda: lt.explain(inference, x_dense()),
        "runs without autograd",
        "'backbone.0' (Linear",
        "torch.inference_mode()",
    )


@pytest.mark.parametrize("how", ["detach", "data"])
def test_explain_detach_inside_forward(how):
    """Relevance cannot pass a detached tensor: said, never an all-zero heatmap."""
    model = _Frozen(how).double().eval()
    message(
        UnsupportedLayerError,
        lambda: lt.explain(model, x_dense()),
        f"Tensor.{how}",
        "forward of the model (_Frozen)",
        "relevance cannot pass a detached tensor",
    )
    # a user's pre-hook that detaches is refused alike, naming the module it runs in
    plain = dense()
    handle = plain[2].register_forward_pre_hook(lambda module, args: (args[0].detach(),))
    message(UnsupportedLayerError, lambda: lt.explain(plain, x_dense()), "Tensor.detach")
    handle.remove()


def test_explain_batchnorm_with_batch_statistics():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    message(
        UnsupportedLayerError,
        lambda: lt.explain(model.eval(), x_image()),
        "'1' (BatchNorm2d",
        "statistics of the batch",
        "running statistics",
    )


def test_explain_global_forward_hook():
    """A global forward hook (register_module_forward_hook) that changes outputs: its
    operations are explained like the model's own, never silently passed by a gradient."""
    model, x = dense(), x_dense()
    expected = lt.explain(model, x, rule=Epsilon())

    def doubled(module, args, out):
        return 2 * out if isinstance(module, nn.Linear) else None

    handle = torch.nn.modules.module.register_module_forward_hook(doubled)
    try:
        with torch.no_grad():
            hooked = model(x)
        got = lt.explain(model, x, rule=Epsilon())
    finally:
        handle.remove()
    assert_close(got.output, hooked, 1e-15)  # the hooked model is what is explained
    labels = [entry.layer for entry in got.ledger]  # the hook runs in each Linear's call
    assert sum(label.endswith("#2 (Linear)") for label in labels) == 3, labels
    assert got.ledger.holds(1e-10)
    # the same as the factors written into the model as modules
    written = lt.explain(_doubled_linears(model), x, rule=Epsilon())
    assert_close(got.relevance, written.relevance, 1e-13)
    assert not torch.equal(got.relevance, expected.relevance)


class _Twice(nn.Module):
    def forward(self, x):
        return 2 * x


def _doubled_linears(model: nn.Sequential) -> nn.Sequential:
    """``model`` with ``_Twice()`` after each Linear (what the global hook does)."""
    layers = []
    for layer in model:
        layers.append(layer)
        if isinstance(layer, nn.Linear):
            layers.append(_Twice())
    return nn.Sequential(*layers).eval()


def test_explain_from_two_threads():
    """Two threads explaining one model: both succeed, each with its own result, and the
    model (in train mode here, which explain() switches) comes back as it was."""
    import threading

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3)).double()
    x = x_dense()
    with pytest.warns(UserWarning, match="train mode"):
        expected = lt.explain(model, x, rule=AlphaBeta()).relevance
    results, errors = [], []

    def work() -> None:
        try:
            for _ in range(10):
                results.append(lt.explain(model, x, rule=AlphaBeta()).relevance)
        except Exception as error:  # pragma: no cover - what the test looks for
            errors.append(error)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(results) == 20
    for r in results:
        assert_close(r, expected, 1e-14)
    assert all(m.training for m in model.modules())


# ============================================================================ command line


@pytest.mark.parametrize(
    "argv, words",
    [
        (["demo", "--device", "banana"], ["--device 'banana' is not a torch device"]),
        (["demo", "--rule", "nonsense"], ["Unknown --rule 'nonsense'"]),
        (["demo", "--out", "figure.xyz"], ["cannot write a figure of type 'xyz'"]),
        (["notebooks", "{file}/course"], ["Not a directory"]),
        (["exercises", "{file}"], ["is not a folder"]),
    ],
    ids=["device", "rule", "format", "under a file", "a file"],
)
def test_cli_error_is_one_line(argv, words, tmp_path, capsys):
    file = tmp_path / "file.txt"
    file.write_text("mine", encoding="utf-8")
    code = main([a.format(file=file) for a in argv])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and err.startswith("lrp-tutor: "), err
    for word in words:
        assert word in err
    assert file.read_text(encoding="utf-8") == "mine"


def test_exercises_build_keeps_edited_student_copies(tmp_path, capsys):
    handed_out = tmp_path / "student"
    course.copy_course("exercises", handed_out)
    edited = handed_out / "01_dense_messages.ipynb"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Task", "My Task"), "utf-8")
    mine = handed_out / "07_my_notes.ipynb"
    mine.write_text("{}", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in handed_out.iterdir()}
    args = ["exercises", "build", "--source", str(assignments.SOURCE_DIR), "--student"]
    assert main([*args, str(handed_out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "01_dense_messages.ipynb, 07_my_notes.ipynb" in err
    assert "--force" in err
    assert {p.name: p.read_bytes() for p in handed_out.iterdir()} == before
    assert main([*args, str(handed_out), "--force"]) == 0
    assert assignments.check_up_to_date(assignments.SOURCE_DIR, handed_out) == []


def test_course_copy_into_a_dangling_symlink(tmp_path):
    dest, outside = tmp_path / "course", tmp_path / "outside.ipynb"
    dest.mkdir()
    (dest / "01_conservation_by_hand.ipynb").symlink_to(outside)
    message(FileExistsError, lambda: course.copy_course("notebooks", dest), "already exist")
    assert not outside.exists() and [p.name for p in dest.iterdir()] == [
        "01_conservation_by_hand.ipynb"
    ]


# ============================================================================ the table


def test_troubleshooting_table_lists_every_case():
    """README.md's troubleshooting table names every test of this file once (and no other)."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    rows = re.findall(r"<!--\s*(test_\w+)\s*-->", readme.read_text(encoding="utf-8"))
    assert rows, "README.md has no troubleshooting table"
    module = sys.modules[__name__]
    tests = {
        name
        for name in vars(module)
        if name.startswith("test_") and name != "test_troubleshooting_table_lists_every_case"
    }
    assert len(rows) == len(set(rows)), "a case appears twice in the table"
    assert set(rows) == tests, (sorted(tests - set(rows)), sorted(set(rows) - tests))
