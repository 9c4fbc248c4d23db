"""The relative stabiliser: ``Epsilon(ε, relative=True)`` adds ε·RMS_n(z)·sign(z_j).

RMS_n(z) = √(mean_j z_j²) over all output neurons j of the layer (its pre-activation, bias
included), for each sample n on its own (Montavon et al.'s tutorial: ``z + 0.25·RMS(z)``).
The stepper and the fast path are compared with each other and with a dense numpy oracle
written here from the formula alone (zennit has no relative ε to compare with). Agreement
over the random models of test_agreement (MLPs and CNNs, every layer) is there:
``Epsilon(0.25, relative=True)`` is one of its rules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrp_tutor import composites
from lrp_tutor.errors import RuleError
from lrp_tutor.fast import explain
from lrp_tutor.rules import LRP0, Epsilon, Gamma, rms, stabilize
from lrp_tutor.stepper import Walkthrough

f64 = torch.float64
RELATIVE = Epsilon(0.25, relative=True)


def mlp(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Linear(5, 7, bias=bias),
            nn.ReLU(),
            nn.Linear(7, 6, bias=bias),
            nn.ReLU(),
            nn.Linear(6, 3, bias=bias),
        )
        .double()
        .eval()
    )


def cnn(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(3, 4, 2, bias=bias),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 2 * 2, 3, bias=bias),
        )
        .double()
        .eval()
    )


MODELS = {"mlp": (mlp, (5,)), "cnn": (cnn, (2, 6, 6))}


# ------------------------------------------------------------------------------ the rule


def test_repr_name_equality_and_hash_tell_relative_from_absolute():
    assert repr(RELATIVE) == "Epsilon(epsilon=0.25, relative=True)"
    assert repr(Epsilon(0.25)) == "Epsilon(epsilon=0.25)"  # unchanged for absolute ε
    assert RELATIVE.name == "ε=0.25·RMS(z)"
    assert "RMS" in RELATIVE.formula and "RMS" not in Epsilon(0.25).formula
    assert RELATIVE == Epsilon(0.25, relative=True)
    assert RELATIVE != Epsilon(0.25)
    assert len({RELATIVE, Epsilon(0.25), Epsilon(0.25, relative=True)}) == 2
    assert RELATIVE.parts[0].relative and not Epsilon(0.25).parts[0].relative
    assert not LRP0().parts[0].relative and LRP0().params == {}


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"epsilon": 0.0, "relative": True}, ("relative epsilon must be > 0", "LRP0()")),
        ({"epsilon": -0.25, "relative": True}, ("epsilon must be a finite number ≥ 0",)),
        ({"epsilon": "0.25", "relative": True}, ("epsilon must be a real number",)),
        ({"epsilon": 0.25, "relative": "yes"}, ("relative must be True or False", "str")),
        ({"epsilon": 0.25, "relative": 1}, ("relative must be True or False",)),
    ],
)
def test_misuse_is_refused_naming_the_argument(kwargs, names):
    with pytest.raises(RuleError) as error:
        Epsilon(**kwargs)
    for text in names:
        assert text in str(error.value)


def test_rms_and_stabilize_on_numpy_and_torch():
    z = np.array([[3.0, -4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, -1.0]])
    expected = np.array([2.5, 0.0, 1.0])  # √((9 + 16)/4), 0, 1
    np.testing.assert_array_equal(rms(z, batched=True).ravel(), expected)
    torch.testing.assert_close(rms(torch.tensor(z), batched=True).ravel(), torch.tensor(expected))
    assert float(rms(z[0])) == 2.5 and float(rms(torch.tensor(z[0]))) == 2.5
    part = RELATIVE.parts[0]
    want = z + 0.25 * expected[:, None] * np.where(z >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(part.stabilize(z, batched=True), want)
    t = torch.tensor(z)
    out = torch.empty_like(t)
    got = part.stabilize(t, torch.where(t >= 0, 1.0, -1.0).double(), out, batched=True)
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got, torch.tensor(want), rtol=0, atol=0)
    # one sample: the RMS of all its values (here the first row alone)
    np.testing.assert_array_equal(part.stabilize(z[0]), want[0])
    # an absolute ε ignores the scale; stabilize with ε = 0 hands z back
    assert float(Epsilon(0.25).parts[0].epsilon_of(z)) == 0.25
    assert stabilize(z, 0.0) is z


# ------------------------------------------------------------------------------ the oracle


def oracle(weights, biases, x: np.ndarray, target: int, epsilon: float):
    """LRP-ε with ε·RMS(z) per layer for a ReLU MLP, written from the formula with numpy.

    Returns the input relevance and per layer (Σ R_out, Σ R_in, bias, stabiliser)."""
    activations = [x]
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = activations[-1] @ w.T + b
        activations.append(np.maximum(z, 0) if k < len(weights) - 1 else z)
    r = np.zeros_like(activations[-1])
    r[target] = activations[-1][target]
    rows = []
    for k in reversed(range(len(weights))):
        a, w, b = activations[k], weights[k], biases[k]
        z_ij = a[None, :] * w  # (out, in)
        z = z_ij.sum(1) + b
        eps = epsilon * np.sqrt(np.mean(z**2))
        den = z + eps * np.where(z >= 0, 1.0, -1.0)
        r_in = (z_ij / den[:, None] * r[:, None]).sum(0)
        rows.append(
            (r.sum(), r_in.sum(), (b / den * r).sum(), (eps * np.sign(den) / den * r).sum())
        )
        r = r_in
    return r, rows[::-1]


def test_both_paths_agree_with_the_numpy_oracle_on_an_mlp():
    model = mlp()
    torch.manual_seed(1)
    x = torch.randn(3, 5, dtype=f64)
    weights = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    biases = [m.bias.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    e = explain(model, x, rule=RELATIVE)
    for n in range(3):
        target = int(e.target[n])
        want, rows = oracle(weights, biases, x[n].numpy(), target, 0.25)
        walk = Walkthrough(model).forward(x[n]).backward(target, RELATIVE)
        np.testing.assert_allclose(e.relevance[n].numpy(), want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(walk.relevance, want, rtol=1e-10, atol=1e-12)
        fast_rows = [e.ledger[k] for k in range(len(e.ledger))]
        linear = [entry for entry in fast_rows if "Linear" in entry.layer]
        for entry, walk_entry, row in zip(
            linear, [w for w in walk.ledger if "Linear" in w.layer], rows, strict=True
        ):
            for ours in (
                [entry.relevance_out[n], entry.relevance_in[n], entry.bias[n], entry.stabilizer[n]],
                [walk_entry.relevance_out[0], walk_entry.relevance_in[0]]
                + [walk_entry.bias[0], walk_entry.stabilizer[0]],
            ):
                np.testing.assert_allclose(ours, row, rtol=1e-10, atol=1e-12)
        # the oracle tells relative from absolute ε (agreeing with it proves something)
        absolute = explain(model, x[n : n + 1], target=target, rule=Epsilon(0.25)).relevance
        assert not np.allclose(absolute[0].numpy(), want, rtol=1e-6)
    assert e.ledger.holds(1e-10)


@pytest.mark.parametrize("kind", MODELS)
def test_stepper_and_fast_path_agree_and_the_books_balance(kind):
    make, shape = MODELS[kind]
    model = make()
    torch.manual_seed(2)
    x = torch.randn(4, *shape, dtype=f64)
    e = explain(model, x, rule=RELATIVE, keep_layers=True)
    assert e.ledger.holds(1e-10)
    total_stabilizer = sum(entry.stabilizer for entry in e.ledger)
    assert np.all(np.abs(total_stabilizer) > 1e-3)  # ε takes a visible share here
    for n in range(4):
        walk = Walkthrough(model).forward(x[n]).backward(int(e.target[n]), RELATIVE)
        np.testing.assert_allclose(
            e.relevance[n].numpy(), walk.relevance, rtol=1e-10, atol=1e-12 * e.seed[n].abs().item()
        )
        for fast_entry, walk_entry in zip(e.ledger, walk.ledger, strict=True):
            np.testing.assert_allclose(
                fast_entry.stabilizer[n], walk_entry.stabilizer[0], rtol=1e-10, atol=1e-13
            )
        assert walk.ledger.holds(1e-10)


# ------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("kind", MODELS)
def test_an_explanation_does_not_depend_on_the_rest_of_the_batch(kind):
    make, shape = MODELS[kind]
    model = make()
    torch.manual_seed(3)
    x = torch.randn(5, *shape, dtype=f64)
    x[1:] *= torch.tensor([1e3, 1e-3, 50.0, 0.0], dtype=f64).reshape(-1, *[1] * len(shape))
    composite = composites.uniform(RELATIVE)
    together = explain(model, x, target=[0, 1, 2, 0, 1], composite=composite)
    for n in range(5):
        alone = explain(model, x[n : n + 1], target=[0, 1, 2, 0, 1][n], composite=composite)
        scale = max(alone.relevance.abs().max().item(), 1e-300)
        assert (together.relevance[n] - alone.relevance[0]).abs().max().item() <= 1e-12 * scale
        for entry_together, entry_alone in zip(together.ledger, alone.ledger, strict=True):
            np.testing.assert_allclose(
                entry_together.stabilizer[n], entry_alone.stabilizer[0], rtol=1e-12, atol=1e-300
            )


@pytest.mark.filterwarnings("ignore:The composite maps:UserWarning")  # the MLP has no pooling
@pytest.mark.parametrize("kind", MODELS)
def test_scaling_the_input_scales_the_relevance_on_a_bias_free_relu_net(kind):
    make, shape = MODELS[kind]
    model = make(bias=False)
    torch.manual_seed(4)
    x = torch.randn(2, *shape, dtype=f64)
    # every layer relative: average pooling would otherwise get POOLING_RULE, ε = 1e-6
    every = composites.Composite(default=RELATIVE, by_type={composites.POOLING: RELATIVE})
    base = explain(model, x, target=[0, 1], composite=every)
    for c in (2.0, 1e-3, 37.5):
        scaled = explain(model, c * x, target=[0, 1], composite=every)
        torch.testing.assert_close(scaled.relevance, c * base.relevance, rtol=1e-12, atol=0)
        walk = Walkthrough(model).forward(c * x[0]).backward(0, every)
        np.testing.assert_allclose(walk.relevance, c * base.relevance[0].numpy(), rtol=1e-10)
    # an absolute ε breaks the symmetry: the check would notice a non-relative ε
    absolute = [explain(model, c * x, target=[0, 1], rule=Epsilon(0.25)) for c in (1.0, 1e-3)]
    assert not torch.allclose(absolute[1].relevance, 1e-3 * absolute[0].relevance, rtol=1e-3)


def test_a_sample_whose_z_are_all_zero_sends_nothing_and_books_it():
    # x = 0 through a bias-free net: every z_j is 0, RMS = 0, so ε_eff = 0 and LRP-0's
    # 0/0 := 0 applies; the one-hot seed is absorbed by the stabiliser, never NaN
    model = mlp(bias=False)
    x = torch.zeros(2, 5, dtype=f64)
    x[1] = torch.linspace(-1, 1, 5, dtype=f64)
    e = explain(model, x, target=[0, 0], rule=RELATIVE, init="one")
    assert torch.isfinite(e.relevance).all()
    assert torch.all(e.relevance[0] == 0)
    top = e.ledger[len(e.ledger) - 1]
    assert top.stabilizer[0] == 1.0 and top.relevance_in[0] == 0.0
    assert e.ledger.holds(1e-10)
    alone = explain(model, x[1:], target=[0], rule=RELATIVE, init="one")
    torch.testing.assert_close(e.relevance[1:], alone.relevance, rtol=1e-12, atol=0)
    walk = Walkthrough(model).forward(x[0]).backward(0, RELATIVE, init="one")
    assert np.all(walk.relevance == 0) and walk.ledger.holds(1e-10)
    assert walk.steps[-1].stabilizer_absorbed.sum() == 1.0


def test_the_stepper_view_uses_the_whole_layer_rms():
    # a convolution's view shows one neuron; its ε is ε·RMS over all the layer's neurons
    model = cnn()
    torch.manual_seed(5)
    x = torch.randn(2, 6, 6, dtype=f64)
    walk = Walkthrough(model).forward(x).backward(0, RELATIVE)
    step = walk.steps[3]  # the second convolution
    z_all = model[:4](x[None])[0].detach().numpy()
    want = 0.25 * np.sqrt(np.mean(z_all**2))
    part = step.messages.parts[0]
    assert part.epsilon == pytest.approx(want, rel=1e-12)
    assert abs(want - 0.25 * np.sqrt(np.mean(part.z_j**2))) > 1e-6  # not the view's own RMS
    for j in [(0, 0, 0), (3, 1, 1)]:
        view = step.neuron(j)
        assert view.messages.parts[0].epsilon == pytest.approx(want, rel=1e-12)
        assert view.holds(1e-10)
    assert "relative ε: ε = 0.25·RMS(z) of the whole layer" in step.stabilization._repr_html_()
    assert step.stabilization.shift["z"] == pytest.approx(
        want * np.where(part.z_j >= 0, 1.0, -1.0), rel=1e-12
    )


def test_a_product_of_two_activations_takes_the_relative_epsilon_per_sample():
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.out(self.a(x) * self.b(x))

    torch.manual_seed(6)
    model = Gated().double().eval()
    x = torch.randn(3, 4, dtype=f64)
    x[2] *= 1e4
    e = explain(model, x, target=[0, 1, 2], rule=RELATIVE)
    assert e.ledger.holds(1e-10)
    for n in range(3):
        alone = explain(model, x[n : n + 1], target=[0, 1, 2][n], rule=RELATIVE)
        torch.testing.assert_close(e.relevance[n], alone.relevance[0], rtol=1e-12, atol=0)
    absolute = explain(model, x, target=[0, 1, 2], rule=Epsilon(0.25))
    assert not torch.allclose(absolute.relevance, e.relevance, rtol=1e-3)


# ------------------------------------------------------------------------------ where it is used


def test_montavon_vgg_uses_the_relative_epsilon_in_the_upper_convolutions():
    model = cnn()
    resolved = composites.montavon_vgg(model, -3.0, 3.0).resolve(model)
    assert resolved["3"] == Epsilon(0.25, relative=True)
    assert resolved["6"] == LRP0()
    old = composites.montavon_vgg(model, -3.0, 3.0, relative=False)
    assert old.resolve(model)["3"] == Epsilon(0.25)
    assert "relative=False" in repr(old)
    assert composites.montavon_vgg(model, -3.0, 3.0, epsilon=0.5).resolve(model)["3"] == Epsilon(
        0.5, relative=True
    )
    assert isinstance(resolved["0"], type(composites.epsilon_gamma_box(0, 1).first))
    assert not isinstance(resolved["3"], Gamma)
