"""The didactic stepper: API, stages, convolution and pooling, errors, the user's model."""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from model_state import assert_unchanged, snapshot
from torch import nn

from lrp_tutor import composites
from lrp_tutor.errors import CompositeError, InputError, UnsupportedLayerError
from lrp_tutor.ledger import Ledger
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, ZPlus
from lrp_tutor.stepper import (
    Aggregation,
    Forward,
    LayerStep,
    Messages,
    Stabilization,
    Walkthrough,
)

matplotlib.use("Agg")


def mlp(bias: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5, bias=bias), nn.ReLU(), nn.Linear(5, 4, bias=bias), nn.ReLU(),
        nn.Linear(4, 3, bias=bias),
    )  # fmt: skip


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, dilation=1), nn.ReLU(),
    )  # fmt: skip
    return nn.Sequential(features, nn.Flatten(), nn.Sequential(nn.Linear(16, 6), nn.ReLU()),
                         nn.Linear(6, 3))  # fmt: skip


# --------------------------------------------------------------------------------------
# The public API.


def test_walkthrough_api_on_an_mlp():
    model = mlp()
    x = torch.randn(6)
    walk = Walkthrough(model).forward(x)
    assert walk.forward(x) is walk
    assert walk.backward() is walk
    logits = model(x).detach().double().numpy()
    np.testing.assert_allclose(walk.output, logits, rtol=1e-6)
    assert walk.target == int(np.argmax(walk.output))
    assert [s.name for s in walk.steps] == ["0", "1", "2", "3", "4"]
    assert walk["2"] is walk[2] and walk["2 (Linear)"] is walk[2]
    assert isinstance(walk.ledger, Ledger) and len(walk.ledger) == 5
    assert [e.layer for e in walk.ledger] == [
        "0 (Linear)", "1 (ReLU)", "2 (Linear)", "3 (ReLU)", "4 (Linear)",
    ]  # fmt: skip
    assert walk.ledger["1"].absorbed[0] == 0.0
    assert walk.relevance.shape == (6,) and walk.relevance.dtype == np.float64
    step = walk[0]
    assert isinstance(step, LayerStep)
    assert step.module is model[0]
    assert isinstance(step.forward, Forward) and isinstance(step.messages, Messages)
    assert isinstance(step.aggregation, Aggregation)
    assert isinstance(step.stabilization, Stabilization)
    assert step.forward is step.forward  # computed once, then kept
    assert step.forward.z_ij.shape == (6, 5) and step.messages.R_ij.shape == (6, 5)
    assert step.forward.w_ij.shape == (6, 5)
    np.testing.assert_allclose(step.forward.w_ij, model[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(step.relevance_in, walk.relevance)
    np.testing.assert_array_equal(walk[1].relevance_in, step.relevance_out)
    with pytest.raises(KeyError, match="No layer 'nope'"):
        walk["nope"]


def test_seed_target_and_init():
    model = mlp()
    x = torch.randn(6)
    walk = Walkthrough(model).forward(x)
    logits = walk.output
    walk.backward(target=1, rule=LRP0(), init="logit")
    np.testing.assert_array_equal(walk[-1].relevance_out, [0.0, logits[1], 0.0])
    total = walk.relevance.sum() + walk.ledger.absorbed[0]
    assert total == pytest.approx(logits[1], abs=1e-12)
    walk.backward(target=np.int64(2), init="one")
    np.testing.assert_array_equal(walk[-1].relevance_out, [0.0, 0.0, 1.0])
    assert walk.relevance.sum() + walk.ledger.absorbed[0] == pytest.approx(1.0, abs=1e-12)
    assert walk.backward(target=torch.tensor(0)).target == 0
    with pytest.raises(InputError, match="init"):
        walk.backward(init="softmax")
    with pytest.raises(InputError, match="out of range"):
        walk.backward(target=3)
    with pytest.raises(InputError, match="class index"):
        walk.backward(target=1.0)


def test_default_rule_is_uniform_epsilon():
    walk = Walkthrough(mlp()).forward(torch.randn(6))
    default = walk.backward().relevance.copy()
    assert all(s.rule == Epsilon(1e-6) for s in walk.steps if s.rule is not None)
    np.testing.assert_array_equal(default, walk.backward(rule=Epsilon(1e-6)).relevance)


def test_batch_dimension_is_kept_for_the_relevance():
    model = mlp()
    x = torch.randn(6)
    plain = Walkthrough(model).forward(x).backward()
    batched = Walkthrough(model).forward(x[None]).backward()
    assert batched.relevance.shape == (1, 6) and batched.output.shape == (1, 3)
    np.testing.assert_array_equal(batched.relevance[0], plain.relevance)
    numpy_input = Walkthrough(model).forward(x.numpy()).backward()
    np.testing.assert_array_equal(numpy_input.relevance, plain.relevance)
    with pytest.raises(InputError, match="one sample at a time"):
        Walkthrough(model).forward(torch.randn(2, 6))
    with pytest.raises(InputError, match="expects a vector of 6"):
        Walkthrough(model).forward(torch.randn(5))
    with pytest.raises(InputError, match="NaN"):
        Walkthrough(model).forward(torch.tensor([float("nan")] * 6))


def test_image_input_with_and_without_batch_dimension():
    model = cnn()
    x = torch.randn(2, 8, 8)
    walk = Walkthrough(model).forward(x).backward()
    assert walk.relevance.shape == (2, 8, 8)
    batched = Walkthrough(model).forward(x[None]).backward()
    assert batched.relevance.shape == (1, 2, 8, 8)
    np.testing.assert_allclose(batched.relevance[0], walk.relevance, rtol=0, atol=0)
    np.testing.assert_allclose(walk.output, model(x[None])[0].detach().numpy(), rtol=1e-5)


def test_list_form_matches_the_equivalent_sequential():
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(3, 2))
    x = rng.normal(size=4)
    walk = Walkthrough([(w1, b1, "relu"), (w2, None, None)]).forward(x).backward()
    assert [s.label for s in walk.steps] == ["0 (Linear)", "1 (ReLU)", "2 (Linear)"]
    seq = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False)).double()
    with torch.no_grad():
        seq[0].weight.copy_(torch.from_numpy(w1.T))
        seq[0].bias.copy_(torch.from_numpy(b1))
        seq[2].weight.copy_(torch.from_numpy(w2.T))
    reference = Walkthrough(seq).forward(x).backward()
    np.testing.assert_allclose(walk.relevance, reference.relevance, rtol=1e-13)
    np.testing.assert_allclose(walk.output, np.maximum(x @ w1 + b1, 0) @ w2, rtol=1e-13)
    # names work with mappings and composites the same way
    by_name = Walkthrough([(w1, b1, "relu"), (w2, None, None)]).forward(x)
    by_name.backward(rule={"0": Flat(), "2": LRP0()})
    assert by_name[0].rule == Flat() and by_name[2].rule == LRP0()
    first = Walkthrough([(w1, b1, "relu"), (w2, None, None)]).forward(x)
    assert first.backward(rule=composites.epsilon_plus_flat())[0].rule == Flat()


def test_list_form_activations():
    w = np.array([[1.0, -2.0]])
    for activation, expected in [
        (np.tanh, np.tanh([0.5, -1.0])),
        (torch.sigmoid, 1 / (1 + np.exp(-np.array([0.5, -1.0])))),
        (nn.LeakyReLU(0.1), [0.5, -0.1]),
        ("tanh", np.tanh([0.5, -1.0])),
    ]:
        walk = Walkthrough([(w, None, activation), (np.ones((2, 1)), None, None)])
        walk.forward([0.5]).backward()
        np.testing.assert_allclose(walk[1].a, expected, rtol=1e-12)
        np.testing.assert_array_equal(walk[1].relevance_in, walk[1].relevance_out)
    with pytest.raises(InputError, match="unknown activation 'swish'"):
        Walkthrough([(w, None, "swish")])
    with pytest.raises(InputError, match="b must have shape"):
        Walkthrough([(w, [1.0], None)])
    with pytest.raises(InputError, match="2-D"):
        Walkthrough([(np.ones(3), None, None)])


def test_rules_by_mapping_and_composite():
    model = mlp()
    walk = Walkthrough(model).forward(torch.randn(6))
    walk.backward(rule={"0": Flat(), "2": Gamma(0.5), "4": LRP0()})
    assert [s.rule for s in walk.steps] == [Flat(), None, Gamma(0.5), None, LRP0()]
    walk.backward(rule=composites.by_type({nn.Linear: ZPlus()}))
    assert walk[4].rule == ZPlus()
    with pytest.raises(CompositeError, match="No rule for layer 4 \\(Linear\\)"):
        walk.backward(rule={"0": Flat(), "2": LRP0()})
    with pytest.raises(CompositeError, match="'9'"):
        walk.backward(rule={"9": LRP0()})
    with pytest.raises(CompositeError, match="1 \\(ReLU\\).*takes none"):
        walk.backward(rule={"0": LRP0(), "1": LRP0(), "2": LRP0(), "4": LRP0()})
    with pytest.raises(CompositeError, match="parentheses"):
        walk.backward(rule=Epsilon)
    with pytest.raises(CompositeError, match="must be a Rule"):
        walk.backward(rule="epsilon")


def test_backward_before_forward_and_forward_resets():
    walk = Walkthrough(mlp())
    with pytest.raises(InputError, match="forward"):
        walk.backward()
    walk.forward(torch.randn(6)).backward()
    walk.forward(torch.randn(6))
    assert walk.steps == [] and walk.relevance is None
    with pytest.raises(InputError, match="backward"):
        walk[0]


# --------------------------------------------------------------------------------------
# Stages.


def test_stages_conserve_and_say_so():
    walk = Walkthrough(mlp()).forward(torch.randn(6)).backward(rule=Epsilon(0.01))
    for step in walk.steps:
        assert step.holds()
        m = step.messages
        np.testing.assert_allclose(m.R_ij.sum(0) + m.absorbed, m.R_j, atol=1e-12)
        assert "for all" in m.check() and "worst difference" in m.check()
        assert "Σ_i R_i + bias + ε = Σ_j R_j" in step.aggregation.check()
    step = walk[2]
    assert step.messages.check().startswith("Σ_i R_{i←j} + absorbed = R_j for all 4 neuron(s)")
    agg = step.aggregation
    np.testing.assert_allclose(agg.R_i_from_messages, agg.R_i, atol=1e-12)
    assert agg.sum_out == pytest.approx(agg.sum_in + agg.bias + agg.stabilizer, abs=1e-12)
    stab = step.stabilization
    z = step.forward.z_j
    np.testing.assert_allclose(stab.denominators["z"], z + 0.01 * np.where(z >= 0, 1, -1))
    np.testing.assert_allclose(stab.shift["z"], 0.01 * np.where(z >= 0, 1, -1), atol=1e-15)
    lrp0 = step.forward.z_ij / z * step.messages.R_j
    np.testing.assert_allclose(stab.R_ij_lrp0, lrp0, rtol=1e-12, atol=1e-15)
    assert "moves the 4 denominator(s)" in stab.check()


def test_check_reports_a_violation():
    walk = Walkthrough(mlp()).forward(torch.randn(6)).backward(rule=LRP0())
    messages = walk[0].messages
    messages.residual = messages.residual + 1e-3  # pretend a message went missing
    assert not messages.holds()
    assert messages.check().startswith("Conservation fails at neuron")


def test_alpha_beta_parts_in_the_messages():
    walk = Walkthrough(mlp()).forward(torch.randn(6)).backward(rule=AlphaBeta(2, 1))
    m = walk[0].messages
    assert [p.label for p in m.parts] == ["z⁺", "z⁻"]
    assert [p.coefficient for p in m.parts] == [2.0, -1.0]
    assert np.all(m.parts[0].z_ij >= 0) and np.all(m.parts[1].z_ij <= 0)
    np.testing.assert_allclose(m.parts[0].R_ij + m.parts[1].R_ij, m.R_ij)
    assert set(walk[0].stabilization.denominators) == {"z⁺", "z⁻"}


def test_reprs_and_html_are_short_and_deterministic():
    walk = Walkthrough(cnn()).forward(torch.randn(2, 8, 8)).backward()
    for step in walk.steps:
        text = [repr(step)] + [repr(s) for s in step.stages]
        html = [step._repr_html_()] + [s._repr_html_() for s in step.stages]
        for t in text + html:
            assert "0x" not in t
        for t in text:
            assert "\n" not in t and len(t) < 400
        assert "Σ_i R_{i←j} + absorbed = R_j" in step.messages._repr_html_()
    assert "Conservation holds" in repr(walk)
    assert "<table>" in walk._repr_html_()


def test_html_shows_the_formula_with_numbers():
    layers = [(np.array([[1.0], [2.0]]), np.array([0.5]), None)]
    walk = Walkthrough(layers).forward([3.0, 1.0]).backward(rule=LRP0())
    forward_html = walk[0].forward._repr_html_()
    assert "3·1 + 1·2 + 0.5 = 5.5" in forward_html
    messages_html = walk[0].messages._repr_html_()
    assert "3/5.5·5.5" in messages_html and "2/5.5·5.5" in messages_html


def test_plots_draw_every_stage():
    viz = pytest.importorskip("lrp_tutor.viz")
    if not all(hasattr(viz, name) for name in ("messages", "bars", "stabilization")):
        pytest.skip("lrp_tutor.viz is not complete yet")
    import matplotlib.pyplot as plt

    walk = Walkthrough(cnn()).forward(torch.randn(2, 8, 8)).backward(rule=AlphaBeta(2, 1))
    for step in (walk[0], walk[2], walk[-1]):
        for stage in step.stages:
            figure = stage.plot()
            assert figure.axes
            plt.close(figure)


# --------------------------------------------------------------------------------------
# Convolutions and pooling against independent float64 torch computations.


def reference_lrp(forward, x: torch.Tensor, r_out: torch.Tensor, bias, epsilon: float):
    """ε-LRP of one linear map as gradient × input: z = f(x); s = R / stab(z);
    R_in = x ⊙ ∂(Σ (z − b)·s)/∂x, with torch autograd in float64."""
    x = x.clone().requires_grad_(True)
    z = forward(x)
    one = torch.ones_like(z.detach())  # float64, so that ε is not rounded to float32
    denominator = z.detach() + epsilon * torch.where(z.detach() >= 0, one, -one)
    s = torch.where(denominator == 0, 0.0, r_out / torch.where(denominator == 0, 1.0, denominator))
    (grad,) = torch.autograd.grad((z * s).sum(), x)
    return (x * grad).detach().numpy()


CONVS = [
    dict(in_channels=2, out_channels=3, kernel_size=3),
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    dict(in_channels=2, out_channels=4, kernel_size=(3, 2), dilation=2, padding=(2, 1)),
    dict(in_channels=4, out_channels=2, kernel_size=3, groups=2, padding="same"),
    dict(in_channels=2, out_channels=3, kernel_size=4, padding="same", bias=False),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("config", CONVS, ids=[str(c) for c in CONVS])
def test_conv_aggregation_equals_torch_autograd(config, epsilon):
    torch.manual_seed(1)
    conv = nn.Conv2d(**config).double()
    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(config["in_channels"], 7, 6, dtype=torch.float64)
    walk = Walkthrough(model).forward(x)
    n_out = walk.output.size
    target = n_out // 2
    walk.backward(target=target, rule=Epsilon(epsilon))
    step = walk[0]
    r_out = torch.from_numpy(step.relevance_out)
    expected = reference_lrp(conv, x[None], r_out[None], conv.bias, epsilon)[0]
    np.testing.assert_allclose(step.relevance_in, expected, rtol=1e-10, atol=1e-13)
    # a denser test: many non-zero R_j, from a second conv on top
    top = nn.Conv2d(config["out_channels"], 2, 2).double()
    walk = Walkthrough(nn.Sequential(conv, top, nn.Flatten())).forward(x)
    walk.backward(target=1, rule=Epsilon(epsilon))
    r_out = torch.from_numpy(walk[0].relevance_out)
    assert np.count_nonzero(walk[0].relevance_out) > 4
    expected = reference_lrp(conv, x[None], r_out[None], conv.bias, epsilon)[0]
    np.testing.assert_allclose(walk[0].relevance_in, expected, rtol=1e-10, atol=1e-13)
    assert walk.ledger.holds()


def test_conv1d_aggregation_equals_torch_autograd():
    torch.manual_seed(2)
    conv = nn.Conv1d(3, 2, 3, stride=2, padding=1).double()
    top = nn.Conv1d(2, 2, 2).double()
    x = torch.randn(3, 9, dtype=torch.float64)
    walk = Walkthrough(nn.Sequential(conv, top, nn.Flatten())).forward(x).backward(rule=LRP0())
    r_out = torch.from_numpy(walk[0].relevance_out)
    expected = reference_lrp(conv, x[None], r_out[None], conv.bias, 0.0)[0]
    np.testing.assert_allclose(walk[0].relevance_in, expected, rtol=1e-10, atol=1e-13)
    assert walk.relevance.shape == (3, 9)


@pytest.mark.parametrize(
    "pool",
    [nn.AvgPool2d(2), nn.AvgPool2d(3, stride=2, padding=1), nn.AdaptiveAvgPool2d((2, 3))],
    ids=["avg2", "avg3s2p1", "adaptive"],
)
def test_average_pooling_is_a_linear_map_with_fixed_weights(pool):
    torch.manual_seed(3)
    x = torch.rand(2, 6, 6, dtype=torch.float64)
    top = nn.Conv2d(2, 2, 1).double()
    walk = Walkthrough(nn.Sequential(pool, top, nn.Flatten())).forward(x).backward()
    step = walk[0]
    assert step.rule == composites.POOLING_RULE
    r_out = torch.from_numpy(step.relevance_out)
    expected = reference_lrp(pool, x[None], r_out[None], None, 1e-6)[0]
    np.testing.assert_allclose(step.relevance_in, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(step.a, pool(x[None])[0].numpy(), rtol=1e-12)


def test_one_dimensional_pooling_against_torch():
    torch.manual_seed(7)
    x = torch.rand(2, 9, dtype=torch.float64)
    top = nn.Conv1d(2, 2, 1).double()
    for pool in (nn.AvgPool1d(3, stride=2, padding=1), nn.AdaptiveAvgPool1d(3)):
        walk = Walkthrough(nn.Sequential(pool, top, nn.Flatten())).forward(x).backward()
        r_out = torch.from_numpy(walk[0].relevance_out)
        expected = reference_lrp(pool, x[None], r_out[None], None, 1e-6)[0]
        np.testing.assert_allclose(walk[0].relevance_in, expected, rtol=1e-10, atol=1e-13)
    pool = nn.MaxPool1d(3, stride=2, padding=1)
    walk = Walkthrough(nn.Sequential(pool, top, nn.Flatten())).forward(x).backward()
    xg = x[None].clone().requires_grad_(True)
    r_out = torch.from_numpy(walk[0].relevance_out)
    (grad,) = torch.autograd.grad((pool(xg) * r_out[None]).sum(), xg)
    np.testing.assert_allclose(walk[0].relevance_in, grad[0].numpy(), rtol=1e-12)
    np.testing.assert_array_equal(walk[0].a, pool(x[None])[0].numpy())


def test_zplus_on_a_convolution_against_torch():
    # z⁺ = conv(x⁺, W⁺) + conv(x⁻, W⁻) + b⁺; R_in = x⁺ ⊙ ∂(conv(x⁺,W⁺)·s) + x⁻ ⊙ ∂(conv(x⁻,W⁻)·s)
    torch.manual_seed(8)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    top = nn.Conv2d(3, 2, 2).double()
    x = torch.randn(2, 5, 5, dtype=torch.float64)
    walk = Walkthrough(nn.Sequential(conv, top, nn.Flatten())).forward(x)
    walk.backward(target=3, rule=ZPlus())
    w, b = conv.weight.detach(), conv.bias.detach()
    xp = x.clamp(min=0)[None].requires_grad_(True)
    xn = x.clamp(max=0)[None].requires_grad_(True)
    z = F.conv2d(xp, w.clamp(min=0), padding=1) + F.conv2d(xn, w.clamp(max=0), padding=1)
    z = z + b.clamp(min=0)[:, None, None]
    s = torch.from_numpy(walk[0].relevance_out)[None] / (z.detach() + 1e-6 * torch.ones_like(z))
    gp, gn = torch.autograd.grad((z * s).sum(), (xp, xn))
    expected = (xp * gp + xn * gn)[0].detach().numpy()
    np.testing.assert_allclose(walk[0].relevance_in, expected, rtol=1e-10, atol=1e-13)


def test_zbox_with_per_channel_bounds_on_a_convolution():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    x = torch.rand(2, 4, 4)
    low = torch.tensor([0.0, -1.0]).reshape(1, 2, 1, 1)
    high = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1)
    walk = Walkthrough(model).forward(x)
    walk.backward(rule=composites.epsilon_gamma_box(low, high))
    assert walk.ledger.holds() and all(step.holds() for step in walk.steps)
    same = Walkthrough(model).forward(x).backward(rule=composites.epsilon_gamma_box(0.0, 1.0))
    low1 = torch.zeros(1, 2, 1, 1)
    high1 = torch.ones(1, 2, 1, 1)
    per_channel = Walkthrough(model).forward(x)
    per_channel.backward(rule=composites.epsilon_gamma_box(low1, high1))
    np.testing.assert_allclose(per_channel.relevance, same.relevance, rtol=1e-12)
    # the view of one neuron uses the bounds of each input's own channel: padding counts 0
    step = walk[0].neuron((0, 0, 0))
    terms = step.messages.parts[0].z_ij[:, 0].reshape(2, 3, 3)
    w = model[0].weight.detach().double()[0].numpy()
    xi = step.forward.x_i.reshape(2, 3, 3)
    real = step.view.inputs.reshape(2, 3, 3) >= 0
    lo, hi = np.array([0.0, -1.0])[:, None, None], np.array([1.0, 2.0])[:, None, None]
    expected = (xi * w - lo * np.clip(w, 0, None) - hi * np.clip(w, None, 0)) * real
    np.testing.assert_allclose(terms, expected, rtol=1e-12, atol=1e-15)


def test_receptive_field_of_one_neuron():
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.randn(2, 5, 5, dtype=torch.float64)
    walk = Walkthrough(nn.Sequential(conv, nn.Flatten())).forward(x).backward()
    z = conv(x[None])[0].detach().numpy()
    for neuron in [(0, 0, 0), (1, 1, 2), (2, 2, 2)]:
        step = walk[0].neuron(neuron)
        assert step.focus == [neuron]
        fwd = step.forward
        assert fwd.z_ij.shape == (2 * 3 * 3, 1)
        c = neuron[0]
        assert fwd.z_ij.sum() == pytest.approx(z[neuron] - conv.bias[c].item(), abs=1e-12)
        assert fwd.z_j[0] == pytest.approx(z[neuron], abs=1e-12)
        np.testing.assert_array_equal(fwd.w_ij[:, 0], conv.weight[c].detach().numpy().ravel())
        assert step.messages.holds()
        # the whole-layer relevance does not depend on the view
        np.testing.assert_array_equal(step.relevance_in, walk[0].relevance_in)
    corner = walk[0].neuron((0, 0, 0)).view
    padded = corner.inputs.reshape(2, 3, 3) < 0
    assert padded[:, 0, :].all() and padded[:, :, 0].all() and not padded[:, 1:, 1:].any()
    assert np.all(walk[0].neuron((0, 0, 0)).forward.x_i[corner.inputs < 0] == 0)
    assert walk[0].neuron(5).focus == [(0, 1, 2)]
    with pytest.raises(InputError, match="does not exist"):
        walk[0].neuron((3, 0, 0))


def test_default_view_of_a_convolution_is_its_most_relevant_neuron():
    walk = Walkthrough(cnn()).forward(torch.randn(2, 8, 8)).backward()
    step = walk[0]
    flat = int(np.argmax(np.abs(step.relevance_out)))
    assert step.focus == [tuple(int(k) for k in np.unravel_index(flat, step.a.shape))]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
)
def test_maxpool_sends_relevance_to_the_winner_as_torch_gradient(
    seed, kernel, stride, padding, dilation
):
    padding = min(padding, kernel // 2)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 3, size=(2, 7, 7)).astype(np.float64))  # many ties
    pool = nn.MaxPool2d(kernel, stride, padding, dilation)
    walk = Walkthrough(nn.Sequential(pool, nn.Flatten(), nn.Linear(pool(x[None]).numel(), 2)))
    walk.forward(x).backward(target=0)
    step = walk[0]
    r_out = torch.from_numpy(step.relevance_out)
    xg = x[None].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((pool(xg) * r_out[None]).sum(), xg)
    np.testing.assert_allclose(step.relevance_in, grad[0].numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(step.a, pool(x[None])[0].numpy())
    # one neuron's view: w_ij = 1 at the winner only, whose x_i is the maximum
    neuron = step.neuron(0)
    assert neuron.forward.w_ij.sum() == 1
    assert neuron.forward.z_j[0] == step.a.reshape(-1)[0]
    assert neuron.messages.R_ij.sum() == step.relevance_out.reshape(-1)[0]


def test_flat_counts_padding_as_zero():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    x = torch.rand(1, 4, 4, dtype=torch.float64)
    walk = Walkthrough(nn.Sequential(conv, nn.Flatten())).forward(x)
    walk.backward(target=0, rule=Flat(epsilon=0.0), init="one")
    # output (0,0,0) sees the 2×2 real corner of the input: each gets 1/4
    expected = np.zeros((1, 4, 4))
    expected[0, :2, :2] = 1 / 4
    np.testing.assert_allclose(walk.relevance, expected, rtol=1e-14)
    view = walk[0].neuron(0)
    assert view.messages.parts[0].z_j[0] == 4.0
    # dense case against torch: N_j = conv(ones), R_in = ones ⊙ convᵀ(R / N)
    walk.backward(target=5, rule=Flat(epsilon=0.0), init="one")
    walk2 = Walkthrough(nn.Sequential(conv, nn.Conv2d(1, 1, 2).double(), nn.Flatten()))
    walk2.forward(x).backward(target=4, rule=Flat(epsilon=0.0))
    r_out = torch.from_numpy(walk2[0].relevance_out)[None]
    ones = torch.ones(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    count = F.conv2d(ones, torch.ones(1, 1, 3, 3, dtype=torch.float64), padding=1)
    s = r_out / count.detach()
    (grad,) = torch.autograd.grad((count * s).sum(), ones)
    np.testing.assert_allclose(walk2[0].relevance_in, grad[0].numpy(), rtol=1e-12)


def test_conv_net_lrp0_without_bias_is_gradient_times_input():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 2, 3, bias=False), nn.ReLU(), nn.AvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 3, bias=False),
    ).double()  # fmt: skip
    x = torch.randn(1, 8, 8, dtype=torch.float64)
    walk = Walkthrough(model).forward(x).backward(rule={"0": LRP0(), "3": LRP0(), "7": LRP0(),
                                                        "5": LRP0()})  # fmt: skip
    xg = x[None].clone().requires_grad_(True)
    model(xg)[0, walk.target].backward()
    expected = (xg.grad * xg)[0].detach().numpy()
    np.testing.assert_allclose(walk.relevance, expected, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------------------
# Errors and the user's model.


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.BatchNorm1d(6), "3 \\(BatchNorm1d\\).*Merge it"),
        (nn.Softmax(dim=-1), "3 \\(Softmax\\).*logits"),
        (nn.LSTM(6, 6), "3 \\(LSTM\\)"),
        (nn.Sequential(nn.Linear(6, 6)).__class__.__mro__[0](), None),
    ],
)
def test_unsupported_layers_are_named(layer, message):
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6), layer)
    if message is None:  # an empty nested Sequential is fine: it has no layers
        Walkthrough(model)
        return
    with pytest.raises(UnsupportedLayerError, match=message):
        Walkthrough(model)


def test_unsupported_configurations():
    with pytest.raises(UnsupportedLayerError, match="padding_mode"):
        Walkthrough(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")))
    walk = Walkthrough(nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten()))
    with pytest.raises(UnsupportedLayerError, match="multiple of the output size"):
        walk.forward(torch.rand(1, 5, 5))
    walk = Walkthrough(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten()))
    with pytest.raises(UnsupportedLayerError, match="ceil_mode"):
        walk.forward(torch.rand(1, 5, 5))
    walk.forward(torch.rand(1, 4, 4))  # ceil_mode makes no difference here
    with pytest.raises(InputError, match="nn.Sequential"):
        Walkthrough(nn.Linear(2, 2))
    with pytest.raises(InputError, match="2 input channels"):
        Walkthrough(nn.Sequential(nn.Conv2d(2, 1, 1))).forward(torch.rand(3, 4, 4))


def test_the_users_model_and_input_are_untouched():
    model = cnn()
    model[0][0].register_forward_hook(lambda *args: None)
    model[3].weight.requires_grad_(False)
    model.train()
    model[0][1].inplace = True
    before = snapshot(model)
    x = torch.randn(2, 8, 8)
    x_before = x.clone()
    walk = Walkthrough(model).forward(x).backward(rule=AlphaBeta(2, 1))
    walk[0].messages, walk[0].stabilization  # noqa: B018
    assert_unchanged(before, snapshot(model))
    assert torch.equal(x, x_before)
    with pytest.raises(InputError):
        walk.backward(target=99)
    assert_unchanged(before, snapshot(model))
    broken = nn.Sequential(copy.deepcopy(model), nn.BatchNorm1d(3))
    before = snapshot(broken)
    with pytest.raises(UnsupportedLayerError):
        Walkthrough(broken)
    assert_unchanged(before, snapshot(broken))


def test_user_hooks_are_not_called():
    model = mlp()
    calls = []
    model[1].register_forward_hook(lambda *args: calls.append(1))
    Walkthrough(model).forward(torch.randn(6)).backward()
    assert calls == []


def test_dropout_flatten_and_activations_pass_relevance():
    torch.manual_seed(6)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.5), nn.LeakyReLU(0.1),
        nn.Identity(), nn.Linear(5, 2),
    ).train()  # fmt: skip
    x = torch.randn(2, 3)
    with pytest.warns(UserWarning, match="Dropout '3' is in train mode"):
        walk = Walkthrough(model).forward(x).backward()
    assert walk.relevance.shape == (2, 3)
    for k in (2, 3, 4, 5):
        np.testing.assert_array_equal(walk[k].relevance_in, walk[k].relevance_out)
        assert walk.ledger[k].absorbed[0] == 0
    eval_out = model.eval()(x[None]).detach().numpy()[0]
    np.testing.assert_allclose(walk.output, eval_out, rtol=1e-5)
    np.testing.assert_array_equal(walk[0].relevance_in, walk[1].relevance_in.reshape(2, 3))


def test_weights_are_copied_once_to_float64():
    model = nn.Sequential(nn.Linear(3, 2)).double()
    walk = Walkthrough(model)
    with torch.no_grad():
        model[0].weight += 1.0  # a later change to the model does not reach the walkthrough
    walk.forward(np.ones(3)).backward()
    assert walk[0].forward.w_ij.dtype == np.float64
    np.testing.assert_allclose(walk[0].forward.w_ij, model[0].weight.detach().numpy().T - 1.0)
    half = Walkthrough(nn.Sequential(nn.Linear(3, 2)).to(torch.bfloat16))
    assert half.forward(np.ones(3)).backward().relevance.dtype == np.float64


def test_a_module_used_twice_is_walked_twice():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 2), relu)
    x = torch.tensor([1.0, -2.0, 0.5])
    walk = Walkthrough(model).forward(x).backward()
    assert [s.name for s in walk.steps] == ["0", "1", "2", "3"]
    np.testing.assert_allclose(walk.output, model(x).detach().numpy(), rtol=1e-6)
