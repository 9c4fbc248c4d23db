"""The rule book, checked by hand and by properties, through the stepper (numpy, float64).

The hand-computed tests use one tiny 3-2-1 network. The rule under test goes to the first
layer; the top layer (weights 1, bias 0) uses LRP-0, so that the hidden neurons arrive with
R_j = a_j = (4.5, 3). Every expected number is written out as arithmetic from the rule's
formula, never copied from the code's output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from lrp_tutor.errors import InputError, RuleError
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus
from lrp_tutor.stepper import Walkthrough

# --------------------------------------------------------------------------------------
# The tiny network.
#   x = (1, 2, −1)
#   W1 = [[1, −1], [2, 1], [1, −3]], b1 = (0.5, −1)
#   z_ij = x_i·w_ij:  column j=0: (1, 4, −1), column j=1: (−1, 2, 3)
#   z_j = (4 + 0.5, 4 − 1) = (4.5, 3)  → ReLU keeps both → y = 4.5 + 3 = 7.5
#   Top layer LRP-0 with w = 1, b = 0: R_j = a_j / 7.5 · 7.5 = (4.5, 3).

X = np.array([1.0, 2.0, -1.0])
W1 = np.array([[1.0, -1.0], [2.0, 1.0], [1.0, -3.0]])
B1 = np.array([0.5, -1.0])
W2 = np.array([[1.0], [1.0]])
B2 = np.array([0.0])
R_HIDDEN = np.array([4.5, 3.0])


def tiny_walk(rule) -> Walkthrough:
    walk = Walkthrough([(W1, B1, "relu"), (W2, B2, None)]).forward(X)
    return walk.backward(rule={"0": rule, "2": LRP0()})


def columns(col0, col1) -> np.ndarray:
    """The (3, 2) message matrix R_{i←j} from its two columns."""
    return np.array([col0, col1], dtype=np.float64).T


def assert_messages(walk: Walkthrough, expected: np.ndarray, bias: float, stabilizer: float):
    step = walk["0"]
    np.testing.assert_allclose(step.relevance_out, R_HIDDEN, rtol=1e-12)
    np.testing.assert_allclose(step.messages.R_ij, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(walk.relevance, expected.sum(axis=1), rtol=1e-12, atol=1e-12)
    entry = walk.ledger["0"]
    assert entry.bias[0] == pytest.approx(bias, abs=1e-12)
    assert entry.stabilizer[0] == pytest.approx(stabilizer, abs=1e-12)
    assert walk.ledger.holds(1e-12)


def test_network_forward_by_hand():
    walk = Walkthrough([(W1, B1, "relu"), (W2, B2, None)]).forward(X)
    np.testing.assert_allclose(walk.output, [7.5])
    step = walk.backward(rule=LRP0())["0"]
    np.testing.assert_allclose(step.forward.z_ij, columns([1, 4, -1], [-1, 2, 3]))
    np.testing.assert_allclose(step.forward.z_j, [4.5, 3.0])


def test_lrp0_by_hand():
    # R_{i←j} = z_ij / z_j · R_j = z_ij (since R_j = z_j); the biases keep b_j/z_j·R_j = b_j.
    expected = columns([1 / 4.5 * 4.5, 4 / 4.5 * 4.5, -1 / 4.5 * 4.5], [-1 / 3 * 3, 2 / 3 * 3, 3])
    assert_messages(tiny_walk(LRP0()), expected, bias=0.5 + (-1.0), stabilizer=0.0)
    np.testing.assert_allclose(tiny_walk(LRP0()).relevance, [1 - 1, 4 + 2, -1 + 3])


def test_epsilon_by_hand():
    # stab(4.5) = 4.5 + 0.5 = 5, stab(3) = 3 + 0.5 = 3.5
    expected = columns(
        [1 / 5 * 4.5, 4 / 5 * 4.5, -1 / 5 * 4.5], [-1 / 3.5 * 3, 2 / 3.5 * 3, 3 / 3.5 * 3]
    )
    bias = 0.5 / 5 * 4.5 + (-1) / 3.5 * 3
    stabilizer = 0.5 / 5 * 4.5 + 0.5 / 3.5 * 3
    assert_messages(tiny_walk(Epsilon(0.5)), expected, bias, stabilizer)


def test_gamma_by_hand():
    # ρ(w) = w + 0.5·w⁺: column 0 (1, 2, 1) → (1.5, 3, 1.5); column 1 (−1, 1, −3) → (−1, 1.5, −3)
    # ρ(b) = b + 0.5·b⁺: (0.5, −1) → (0.75, −1)
    # z_ij: (1·1.5, 2·3, −1·1.5) = (1.5, 6, −1.5), z_0 = 6 + 0.75 = 6.75
    #       (1·−1, 2·1.5, −1·−3) = (−1, 3, 3),     z_1 = 5 − 1 = 4
    expected = columns(
        [1.5 / 6.75 * 4.5, 6 / 6.75 * 4.5, -1.5 / 6.75 * 4.5], [-1 / 4 * 3, 3 / 4 * 3, 3 / 4 * 3]
    )
    bias = 0.75 / 6.75 * 4.5 + (-1) / 4 * 3
    assert_messages(tiny_walk(Gamma(0.5, epsilon=0.0)), expected, bias, stabilizer=0.0)


def test_alpha_beta_by_hand():
    # z⁺_ij = (x_i w_ij)⁺: column 0 (1, 4, 0), b⁺ = 0.5 → z⁺_0 = 5.5
    #                      column 1 (0, 2, 3), b⁺ = 0   → z⁺_1 = 5
    # z⁻_ij = (x_i w_ij)⁻: column 0 (0, 0, −1), b⁻ = 0  → z⁻_0 = −1
    #                      column 1 (−1, 0, 0), b⁻ = −1 → z⁻_1 = −2
    # R_{i←j} = (2·z⁺_ij/z⁺_j − 1·z⁻_ij/z⁻_j)·R_j
    expected = columns(
        [2 * 1 / 5.5 * 4.5, 2 * 4 / 5.5 * 4.5, -1 * (-1) / (-1) * 4.5],
        [-1 * (-1) / (-2) * 3, 2 * 2 / 5 * 3, 2 * 3 / 5 * 3],
    )
    bias = 2 * 0.5 / 5.5 * 4.5 + (-1) * (-1) / (-2) * 3
    assert_messages(tiny_walk(AlphaBeta(2, 1, epsilon=0.0)), expected, bias, stabilizer=0.0)


def test_zplus_by_hand():
    # only the positive part: z⁺ as in the αβ test, coefficient 1
    expected = columns([1 / 5.5 * 4.5, 4 / 5.5 * 4.5, 0], [0, 2 / 5 * 3, 3 / 5 * 3])
    assert_messages(tiny_walk(ZPlus(epsilon=0.0)), expected, bias=0.5 / 5.5 * 4.5, stabilizer=0)


def test_wsquare_by_hand():
    # w²: column 0 (1, 4, 1), Σ = 6; column 1 (1, 1, 9), Σ = 11; no bias
    expected = columns(
        [1 / 6 * 4.5, 4 / 6 * 4.5, 1 / 6 * 4.5], [1 / 11 * 3, 1 / 11 * 3, 9 / 11 * 3]
    )
    assert_messages(tiny_walk(WSquare(epsilon=0.0)), expected, bias=0.0, stabilizer=0.0)


def test_flat_by_hand():
    # every input gets R_j / 3 from each neuron
    expected = columns([4.5 / 3] * 3, [3 / 3] * 3)
    assert_messages(tiny_walk(Flat(epsilon=0.0)), expected, bias=0.0, stabilizer=0.0)
    np.testing.assert_allclose(tiny_walk(Flat(epsilon=0.0)).relevance, [2.5, 2.5, 2.5])


def test_zbox_by_hand():
    # low = −1, high = 2: z_ij = x_i w_ij − (−1)·w⁺_ij − 2·w⁻_ij, no bias
    # column 0, w = (1, 2, 1):  (1 + 1, 4 + 2, −1 + 1) = (2, 6, 0),  z_0 = 8
    # column 1, w = (−1, 1, −3): (−1 + 2, 2 + 1, 3 + 6) = (1, 3, 9), z_1 = 13
    expected = columns([2 / 8 * 4.5, 6 / 8 * 4.5, 0], [1 / 13 * 3, 3 / 13 * 3, 9 / 13 * 3])
    assert_messages(tiny_walk(ZBox(-1.0, 2.0, epsilon=0.0)), expected, bias=0.0, stabilizer=0.0)


def test_zbox_with_per_input_bounds():
    # bounds per input, shaped like a batch of one: low = (−1, −1, −2), high = 2
    # column 0: (1 + 1, 4 + 2, −1 + 2) = (2, 6, 1), z_0 = 9
    low = np.array([[-1.0, -1.0, -2.0]])
    walk = tiny_walk(ZBox(low, 2.0, epsilon=0.0))
    np.testing.assert_allclose(
        walk["0"].messages.R_ij[:, 0], [2 / 9 * 4.5, 6 / 9 * 4.5, 1 / 9 * 4.5]
    )


def test_pass_by_hand():
    # Pass on a square layer: R_i = R_j, nothing absorbed.
    # x = (1, 2), W = [[1, 1], [1, −1]], b = (1, 0): z = (3 + 1, −1) → ReLU → (4, 0); top w = 1
    w = np.array([[1.0, 1.0], [1.0, -1.0]])
    walk = Walkthrough([(w, [1.0, 0.0], "relu"), (np.ones((2, 1)), None, None)])
    walk.forward([1.0, 2.0]).backward(rule={"0": Pass(), "2": LRP0()})
    np.testing.assert_allclose(walk.relevance, [4.0, 0.0])
    np.testing.assert_allclose(walk["0"].messages.R_ij, [[4.0, 0.0], [0.0, 0.0]])
    assert walk.ledger["0"].absorbed[0] == 0


def test_pass_needs_as_many_inputs_as_outputs():
    with pytest.raises(InputError, match=r"0 \(Linear\).*Pass"):
        tiny_walk(Pass())


def test_lrp0_is_epsilon_zero():
    np.testing.assert_array_equal(tiny_walk(LRP0()).relevance, tiny_walk(Epsilon(0.0)).relevance)


# --------------------------------------------------------------------------------------
# Parameter validation.


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Epsilon(-0.1), "epsilon"),
        (lambda: Epsilon("0.1"), "real number"),
        (lambda: Epsilon(float("nan")), "finite"),
        (lambda: Epsilon(True), "real number"),
        (lambda: Gamma(-1.0), "gamma"),
        (lambda: Gamma(None), "real number"),
        (lambda: AlphaBeta(2, 2), "alpha − beta must be 1"),
        (lambda: AlphaBeta(1, 0.5), "alpha − beta must be 1"),
        (lambda: AlphaBeta("2"), "real number"),
        (lambda: ZBox(1.0, 1.0), "low must be < high"),
        (lambda: ZBox(2.0, 1.0), "low must be < high"),
        (lambda: ZBox(np.array([0.0, 3.0]), np.array([1.0, 2.0])), "low must be < high"),
        (lambda: ZBox("a", 1.0), "number or an array"),
        (lambda: ZBox(0.0, float("inf")), "finite"),
        (lambda: ZPlus(epsilon=-1), "epsilon"),
        (lambda: WSquare(epsilon=[1]), "real number"),
        (lambda: Flat(epsilon=-1e-3), "epsilon"),
    ],
)
def test_rule_parameters_are_validated(make, message):
    with pytest.raises(RuleError, match=message):
        make()


def test_rule_errors_are_value_errors():
    with pytest.raises(ValueError):
        Epsilon(-1)


# --------------------------------------------------------------------------------------
# Properties on random small networks.

ALL_RULES = [
    LRP0(),
    Epsilon(0.1),
    Gamma(0.25),
    AlphaBeta(2, 1),
    AlphaBeta(1, 0),
    ZPlus(),
    WSquare(),
    Flat(),
    ZBox(-2.0, 2.0),
]
RULE_IDS = [repr(r) for r in ALL_RULES]

sizes = st.lists(st.integers(1, 6), min_size=2, max_size=4)
seeds = st.integers(0, 2**32 - 1)


def random_layers(seed: int, widths: list[int], bias: bool = True) -> list:
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        w = rng.normal(size=(n_in, n_out))
        b = rng.normal(size=n_out) if bias else None
        layers.append((w, b, "relu" if k < len(widths) - 2 else None))
    return layers


def torch_gradient_times_input(layers: list, x: np.ndarray, target: int) -> np.ndarray:
    """The independent reference: d f_c / dx · x with torch autograd in float64."""
    h = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    a = h
    for w, b, activation in layers:
        a = a @ torch.from_numpy(w)
        if b is not None:
            a = a + torch.from_numpy(b)
        if activation == "relu":
            a = torch.relu(a)
    a[target].backward()
    return (h.grad * h).detach().numpy()


@settings(max_examples=40, deadline=None)
@given(seed=seeds, widths=sizes)
def test_lrp0_on_bias_free_relu_nets_is_gradient_times_input(seed, widths):
    layers = random_layers(seed, [*widths, 3], bias=False)
    x = np.random.default_rng(seed + 1).normal(size=widths[0])
    walk = Walkthrough(layers).forward(x).backward(rule=LRP0())
    reference = torch_gradient_times_input(layers, x, walk.target)
    scale = max(1.0, float(np.max(np.abs(reference))))
    np.testing.assert_allclose(walk.relevance, reference, rtol=0, atol=1e-10 * scale)
    # conserves exactly: every layer passes on what it received (dead neurons send 0/0 := 0
    # and absorb their R_j, which is then 0 as well)
    for entry in walk.ledger:
        assert entry.bias[0] == 0
        assert abs(entry.residual[0]) <= 1e-10 * max(1.0, abs(entry.relevance_out[0]))
    assert walk.relevance.sum() == pytest.approx(walk.output[walk.target], rel=1e-10, abs=1e-10)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, widths=sizes)
def test_epsilon_tends_to_lrp0(seed, widths):
    layers = random_layers(seed, [*widths, 3])
    x = np.random.default_rng(seed + 1).normal(size=widths[0])
    walk = Walkthrough(layers).forward(x)
    exact = walk.backward(rule=LRP0())
    denominators = np.concatenate([s.forward.z_j for s in exact.steps if s.rule is not None])
    assume(np.min(np.abs(denominators)) > 1e-2)
    reference = exact.relevance.copy()
    gaps = [
        np.max(np.abs(walk.backward(rule=Epsilon(eps)).relevance - reference))
        for eps in (1e-2, 1e-5, 1e-8)
    ]
    scale = max(1.0, float(np.max(np.abs(reference))))
    assert gaps[2] <= 1e-4 * scale
    assert gaps[2] <= gaps[1] + 1e-12 * scale and gaps[1] <= gaps[0] + 1e-12 * scale


@settings(max_examples=30, deadline=None)
@given(seed=seeds, widths=sizes)
def test_alpha1_beta0_equals_zplus_on_nonnegative_inputs(seed, widths):
    layers = random_layers(seed, [*widths, 3])
    x = np.random.default_rng(seed + 1).random(size=widths[0])  # x ≥ 0
    walk = Walkthrough(layers).forward(x)
    ab = walk.backward(rule=AlphaBeta(1, 0)).relevance.copy()
    zplus_walk = walk.backward(rule=ZPlus())
    np.testing.assert_allclose(ab, zplus_walk.relevance, rtol=1e-12, atol=1e-12)
    # and on non-negative inputs z⁺_ij = x_i·w⁺_ij (Montavon et al. 2019, eq. 10.6)
    first = zplus_walk[0]
    w, b = layers[0][0], layers[0][1]
    z_plus = x[:, None] * np.clip(w, 0, None)
    denominator = z_plus.sum(axis=0) + np.clip(b, 0, None) + 1e-6
    expected = z_plus / denominator * first.relevance_out
    np.testing.assert_allclose(first.messages.R_ij, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@settings(max_examples=10, deadline=None)
@given(seed=seeds, widths=sizes)
def test_message_columns_sum_to_relevance_minus_absorbed(rule, seed, widths):
    layers = random_layers(seed, [*widths, 3])
    x = np.random.default_rng(seed + 1).normal(size=widths[0])
    walk = Walkthrough(layers).forward(x).backward(rule=rule)
    for step in walk.steps:
        m = step.messages
        np.testing.assert_allclose(
            m.R_ij.sum(axis=0), m.R_j - m.absorbed, rtol=0, atol=1e-10 * max(1, np.abs(m.R_j).max())
        )
        # the layer's books: every neuron's absorbed relevance adds up to the ledger's
        entry = walk.ledger[step.name]
        assert entry.absorbed[0] == pytest.approx(m.absorbed.sum(), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, widths=sizes, eps=st.floats(0.0, 1.0))
def test_epsilon_absorption_matches_its_formula(seed, widths, eps):
    # what the bias and ε keep, written out: (b_j + ε·sign(z_j)) / (z_j + ε·sign(z_j)) · R_j
    layers = random_layers(seed, [*widths, 3])
    x = np.random.default_rng(seed + 1).normal(size=widths[0])
    step = Walkthrough(layers).forward(x).backward(rule=Epsilon(eps))[0]
    z = x @ layers[0][0] + layers[0][1]
    sign = np.where(z >= 0, 1.0, -1.0)
    denominator = z + eps * sign
    r_j = step.relevance_out
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.where(denominator == 0, 0, layers[0][1] / denominator * r_j)
        stab = np.where(denominator == 0, r_j, eps * sign / denominator * r_j)
    np.testing.assert_allclose(step.messages.bias_absorbed, bias, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(step.messages.stabilizer_absorbed, stab, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
def test_no_nan_when_z_j_is_zero(rule):
    # x = (1, 1): hidden z = (1 − 1 + 0, 1 + 1 + 0) = (0, 2); at x = 0 every z_j is 0
    layers = [
        (np.array([[1.0, 1.0], [-1.0, 1.0]]), np.zeros(2), "relu"),
        (np.ones((2, 2)), None, None),
    ]
    for x in ([1.0, 1.0], [0.0, 0.0]):
        walk = Walkthrough(layers).forward(x).backward(target=0, rule=rule, init="one")
        assert np.all(np.isfinite(walk.relevance))
        for step in walk.steps:
            assert np.all(np.isfinite(step.messages.R_ij))
            assert np.all(np.isfinite(step.stabilization.R_ij_lrp0))
        assert walk.ledger.holds(1e-10), walk.ledger


def test_lrp0_neuron_with_zero_denominator_sends_nothing():
    layers = [
        (np.array([[1.0, 1.0], [-1.0, 1.0]]), np.zeros(2), None),
        (np.ones((2, 1)), None, None),
    ]
    walk = Walkthrough(layers).forward([1.0, 1.0]).backward(rule=LRP0(), init="one")
    # top: z = 0 + 2, R_h = (0/2, 2/2) = (0, 1); layer 0: neuron 0 has z = 0, R_0 = 0
    step = walk[0]
    np.testing.assert_array_equal(step.messages.R_ij[:, 0], [0.0, 0.0])
    np.testing.assert_allclose(walk.relevance, [0.5, 0.5])
    # a neuron with z_j = 0 but R_j ≠ 0 books all of R_j under the stabiliser
    top = Walkthrough([(np.array([[1.0], [-1.0]]), None, None)]).forward([1.0, 1.0])
    top.backward(rule=LRP0(), init="one")
    assert top.ledger[0].stabilizer[0] == 1.0
    np.testing.assert_array_equal(top.relevance, [0.0, 0.0])


@pytest.mark.parametrize("rule", ALL_RULES, ids=RULE_IDS)
@settings(max_examples=15, deadline=None)
@given(seed=seeds, widths=sizes)
def test_ledger_balances_for_every_rule(rule, seed, widths):
    layers = random_layers(seed, [*widths, 4])
    x = np.random.default_rng(seed + 1).normal(size=widths[0])
    walk = Walkthrough(layers).forward(x).backward(rule=rule)
    assert len(walk.ledger) == len(walk.steps)
    for entry in walk.ledger:
        scale = max(1.0, abs(entry.relevance_out[0]))
        assert abs(entry.residual[0]) <= 1e-10 * scale
    # and the whole chain: the seed equals what reached the input plus all absorbed
    seed_value = walk.output[walk.target]
    total = walk.relevance.sum() + walk.ledger.absorbed[0]
    assert total == pytest.approx(seed_value, rel=1e-10, abs=1e-10)


def test_conv_layers_work_with_every_rule():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)
    ).double()
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    for rule in ALL_RULES:
        walk = Walkthrough(model).forward(x).backward(rule=rule)
        assert walk.ledger.holds(1e-10), (rule, walk.ledger)
        assert all(step.holds() for step in walk.steps), rule
