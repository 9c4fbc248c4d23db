"""The fast path: explain() on batches — API, conventions, layers, errors."""

from __future__ import annotations

import warnings
import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrp_tutor.fast.maps as maps
from lrp_tutor import composites
from lrp_tutor.composites import POOLING, Composite, uniform
from lrp_tutor.errors import CompositeError, InputError, RuleError, UnsupportedLayerError
from lrp_tutor.fast import Concat, Explanation, Sum, explain
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Pass, WSquare, ZBox, ZPlus

f64 = torch.float64


def mlp(bias: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Linear(6, 8, bias=bias),
            nn.ReLU(),
            nn.Linear(8, 5, bias=bias),
            nn.ReLU(),
            nn.Linear(5, 3, bias=bias),
        )
        .double()
        .eval()
    )


def cnn(bias: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 5, 3, bias=bias),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(5, 3, bias=bias),
        )
        .double()
        .eval()
    )


def logit(e: Explanation) -> torch.Tensor:
    return e.output.gather(1, e.target[:, None])[:, 0]


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    out = model(x)
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
    return g * x


# ------------------------------------------------------------------------------ the API


def test_relevance_has_shape_dtype_and_device_of_x():
    model = mlp().float()
    x = torch.randn(4, 6)
    e = explain(model, x)
    assert isinstance(e, Explanation)
    assert e.relevance.shape == x.shape and e.relevance.dtype == x.dtype
    assert e.relevance.device == x.device
    assert e.output.shape == (4, 3) and not e.output.requires_grad
    assert e.target.dtype == torch.long and e.target.shape == (4,)
    assert torch.equal(e.output, model(x).detach())


def test_computes_in_the_models_dtype():
    model = mlp()  # float64
    x = torch.randn(3, 6)
    e32 = explain(model, x)
    e64 = explain(model, x.double())
    assert e32.relevance.dtype == torch.float32
    assert torch.equal(e32.relevance, e64.relevance.float())
    assert e32.output.dtype == f64


def test_default_rule_is_epsilon():
    model, x = mlp(), torch.randn(3, 6, dtype=f64)
    default = explain(model, x).relevance
    assert torch.equal(default, explain(model, x, rule=Epsilon()).relevance)
    assert torch.equal(default, explain(model, x, composite=uniform(Epsilon())).relevance)
    assert not torch.equal(default, explain(model, x, rule=Epsilon(0.5)).relevance)


@pytest.mark.parametrize(
    "target, expected",
    [
        (2, [2, 2, 2]),
        (np.int64(1), [1, 1, 1]),
        (torch.tensor(0), [0, 0, 0]),
        ([0, 2, 1], [0, 2, 1]),
        ((1, 1, 0), [1, 1, 0]),
        (np.array([2, 0, 1]), [2, 0, 1]),
        (torch.tensor([1, 0, 2]), [1, 0, 2]),
        (torch.tensor([1, 0, 2], dtype=torch.int32), [1, 0, 2]),
    ],
)
def test_target_forms(target, expected):
    model, x = mlp(), torch.randn(3, 6, dtype=f64)
    e = explain(model, x, target=target)
    assert e.target.tolist() == expected
    for k, c in enumerate(expected):  # each sample is explained for its own class
        single = explain(model, x[k : k + 1], target=c)
        torch.testing.assert_close(e.relevance[k], single.relevance[0], rtol=1e-12, atol=1e-14)


def test_default_target_is_the_predicted_class():
    model, x = mlp(), torch.randn(5, 6, dtype=f64)
    e = explain(model, x)
    assert torch.equal(e.target, model(x).argmax(1))


def test_init_logit_and_one():
    model, x = mlp(), torch.randn(3, 6, dtype=f64)
    by_logit = explain(model, x, init="logit")
    by_one = explain(model, x, init="one")
    # LRP is linear in the seed: R(logit seed) = f_c(x) · R(one-hot seed)
    torch.testing.assert_close(by_logit.relevance, by_one.relevance * logit(by_one)[:, None])
    torch.testing.assert_close(by_one.seed, torch.ones(3, dtype=f64))
    torch.testing.assert_close(by_logit.seed, logit(by_logit))


@pytest.mark.parametrize(
    "target, words",
    [
        (3, "out of range"),
        (-1, "out of range"),
        ([0, 1, 7], "[7]"),
        (1.0, "int"),
        (torch.tensor([1.0, 0.0, 1.0]), "integer"),
        (True, "class index"),
        ([0, 1], "3 samples"),
        (torch.tensor([[0], [1], [2]]), "shape (N,)"),
        ("a", "target"),
        (object(), "target"),
    ],
)
def test_bad_targets(target, words):
    with pytest.raises(InputError, match="target") as info:
        explain(mlp(), torch.randn(3, 6, dtype=f64), target=target)
    assert words in str(info.value)


def test_rule_and_composite_together_are_refused():
    with pytest.raises(InputError, match="not both"):
        explain(mlp(), torch.randn(2, 6), rule=Epsilon(), composite=uniform(ZPlus()))


def test_bad_rule_or_composite():
    with pytest.raises(CompositeError, match="parentheses"):
        explain(mlp(), torch.randn(2, 6), rule=Epsilon)
    with pytest.raises(CompositeError, match="Composite"):
        explain(mlp(), torch.randn(2, 6), composite=Epsilon())
    with pytest.raises(InputError, match="init"):
        explain(mlp(), torch.randn(2, 6), init="softmax")


@pytest.mark.parametrize(
    "x, words",
    [
        (torch.tensor([[1, 2, 3, 4, 5, 6]]), "floating-point"),
        (torch.ones(1, 6, dtype=torch.bool), "floating-point"),
        (torch.tensor([[0.0, 1.0, float("nan"), 0.0, 0.0, 0.0]]), "NaN"),
        (torch.tensor([[0.0, 1.0, float("inf"), 0.0, 0.0, 0.0]]), "infinite"),
        (torch.ones(6), "unsqueeze"),
        (torch.ones(0, 6), "empty"),
        (np.ones((1, 6)), "torch.Tensor"),
        (torch.ones(2, 7), "'0' (Linear(in_features=6"),
        (torch.ones(2, 3, 6, 2), "shape (2, 3, 6, 2)"),
    ],
)
def test_bad_inputs(x, words):
    with pytest.raises(InputError) as info:
        explain(mlp(), x)
    assert words in str(info.value)


def test_model_must_return_logits():
    class Tuple(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x), x

    with pytest.raises(InputError, match="tensor of logits"):
        explain(Tuple().eval(), torch.ones(1, 3))
    with pytest.raises(InputError, match=r"shape \(N, classes\)"):
        explain(nn.Sequential(nn.Linear(3, 2), nn.Flatten(0)).eval(), torch.ones(2, 3))


# ------------------------------------------------------------------------------ conservation


def leaky(kind: str, seed: int) -> nn.Module:
    """Bias-free networks whose every neuron has inputs of both signs on both weight signs
    (LeakyReLU, fan-in ≥ 24), so that z⁺ and z⁻ never vanish and no rule drops relevance."""
    torch.manual_seed(seed)
    act = nn.LeakyReLU(0.1)
    if kind == "mlp":
        layers = [nn.Linear(24, 32, bias=False), act, nn.Linear(32, 32, bias=False), act]
        layers += [nn.Linear(32, 3, bias=False)]
    else:
        layers = [nn.Conv2d(3, 8, 3, bias=False), act, nn.MaxPool2d(2)]
        layers += [nn.Conv2d(8, 16, 3, bias=False), act, nn.AvgPool2d(2), nn.Flatten()]
        layers += [nn.Linear(16, 3, bias=False)]
    return nn.Sequential(*layers).double().eval()


SMALL = 1e-9  # a stabiliser too small to absorb anything measurable
CONSERVING = [LRP0(), Epsilon(SMALL), ZPlus(SMALL), AlphaBeta(2, 1, SMALL), Gamma(0.25, SMALL)]


@pytest.mark.parametrize("rule", CONSERVING, ids=repr)
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conservation_without_biases(rule, kind, seed):
    model = leaky(kind, seed)
    x = torch.randn(4, 24, dtype=f64) if kind == "mlp" else torch.randn(4, 3, 10, 10, dtype=f64)
    composite = Composite(default=rule, by_type={POOLING: Epsilon(SMALL)})
    e = explain(model, x, composite=composite)
    torch.testing.assert_close(e.total, logit(e), rtol=1e-6, atol=0)  # Σ_i R_i = f_c(x)
    assert np.all(np.array([entry.bias for entry in e.ledger]) == 0)


@pytest.mark.parametrize("rule", [LRP0(), Epsilon(), ZPlus(), AlphaBeta(2, 1), Gamma(0.25)])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_conservation_with_default_stabilisers(rule, kind):
    model = leaky(kind, 7)
    x = torch.randn(4, 24, dtype=f64) if kind == "mlp" else torch.randn(4, 3, 10, 10, dtype=f64)
    e = explain(model, x, rule=rule)
    # what ε (1e-6) takes is small, and the ledger says exactly how much
    torch.testing.assert_close(e.total, logit(e), rtol=1e-4, atol=1e-4)
    absorbed = torch.from_numpy(e.ledger.absorbed)
    torch.testing.assert_close(e.total + absorbed, logit(e), rtol=1e-10, atol=1e-12)
    assert e.ledger.holds(1e-10)


@pytest.mark.parametrize("rule", [LRP0(), Epsilon(0.01), ZPlus(), AlphaBeta(3, 2), Gamma(1.0)])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_ledger_accounts_for_the_biases(rule, make):
    model = make(bias=True, seed=5)
    x = torch.randn(3, 6, dtype=f64) if make is mlp else torch.randn(3, 2, 8, 8, dtype=f64)
    e = explain(model, x, rule=rule)
    assert e.ledger.holds(1e-10), e.ledger.check()
    absorbed = torch.from_numpy(e.ledger.absorbed)
    torch.testing.assert_close(e.total + absorbed, logit(e), rtol=1e-10, atol=1e-12)
    assert any(np.any(entry.bias != 0) for entry in e.ledger)
    # the books chain: what a layer passes on is what the layer below receives
    for below, above in zip(e.ledger, e.ledger[1:], strict=False):
        np.testing.assert_allclose(below.relevance_out, above.relevance_in, rtol=1e-12)
    np.testing.assert_allclose(e.ledger[-1].relevance_out, logit(e).numpy(), rtol=1e-12)
    np.testing.assert_allclose(e.ledger[0].relevance_in, e.total.numpy(), rtol=1e-10)


def test_ledger_names_follow_the_model():
    e = explain(cnn(), torch.randn(1, 2, 8, 8, dtype=f64))
    names = [entry.layer for entry in e.ledger]
    assert names == [
        "0 (Conv2d)",
        "1 (ReLU)",
        "2 (MaxPool2d)",
        "3 (Conv2d)",
        "4 (ReLU)",
        "5 (AvgPool2d)",
        "6 (Flatten)",
        "7 (Linear)",
    ]
    assert e.ledger["3"].layer == "3 (Conv2d)"


def test_lrp0_is_gradient_times_input_on_bias_free_relu_networks():
    # a classic identity, independent of the rule book: LRP-0 = x ⊙ ∂f_c/∂x
    for make, shape in [(mlp, (4, 6)), (cnn, (4, 2, 8, 8))]:
        model = make(bias=False, seed=11)
        x = torch.randn(*shape, dtype=f64)
        composite = Composite(default=LRP0(), by_type={POOLING: LRP0()})
        e = explain(model, x, composite=composite)
        expected = gradient_x_input(model, x, e.target)
        torch.testing.assert_close(e.relevance, expected, rtol=1e-10, atol=1e-12)


LAYER_ZOO = [
    (
        nn.Sequential(
            nn.Conv1d(2, 3, 3, padding=2, dilation=2, bias=False),
            nn.LeakyReLU(0.1),
            nn.MaxPool1d(2),
            nn.Conv1d(3, 4, 2, stride=2, bias=False),
            nn.Tanh(),
            nn.AvgPool1d(2),
            nn.Flatten(),
            nn.Linear(8, 3, bias=False),
        ),
        (3, 2, 16),
    ),
    (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, groups=2, bias=False),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
            nn.Conv2d(4, 4, 3, padding="same", bias=False),
            nn.ELU(),
            nn.AdaptiveAvgPool2d((3, 2)),
            nn.Dropout(0.5),
            nn.Flatten(),
            nn.Identity(),
            nn.Linear(24, 3, bias=False),
        ),
        (2, 2, 9, 9),
    ),
    (
        nn.Sequential(
            nn.Conv1d(1, 2, 3, bias=False),
            nn.Sigmoid(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
            nn.Dropout(),
            nn.Linear(8, 4, bias=False),
            nn.GELU(),
            nn.Linear(4, 2, bias=False),
        ),
        (2, 1, 11),
    ),
]


@pytest.mark.parametrize("model, shape", LAYER_ZOO)
def test_layer_zoo_conserves_and_matches_gradient_times_input_for_linear_parts(model, shape):
    model = model.double().eval()
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=f64)
    for rule in [Epsilon(), ZPlus(), AlphaBeta(), Gamma(), Flat(), WSquare(), ZBox(-4.0, 4.0)]:
        e = explain(model, x, rule=rule, keep_layers=True)
        assert e.ledger.holds(1e-10), (rule, e.ledger.check())
        # every layer that computes something (nn.Identity performs no operation)
        computing = [n for n, m in model.named_children() if not isinstance(m, nn.Identity)]
        assert list(e.layers) == computing
        for entry in e.ledger:  # relevance at a layer's input sums to what it passed on
            name = entry.layer.split(" (")[0]
            np.testing.assert_allclose(
                e.layers[name].sum(tuple(range(1, e.layers[name].ndim))).numpy(),
                entry.relevance_in,
                rtol=1e-10,
                atol=1e-12,
            )


def test_activations_pass_relevance_unchanged():
    # flat at the top layer gives every hidden unit relevance, also the inactive ones;
    # the ReLU must pass all of it on (a gradient would drop what sits on z < 0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    x = torch.randn(2, 3, dtype=f64)
    composite = composites.by_name({"0": Epsilon(), "2": Flat(0.0)})
    e = explain(model, x, composite=composite, keep_layers=True)
    torch.testing.assert_close(e.layers["1"], e.layers["2"])
    torch.testing.assert_close(
        e.layers["2"], logit(e)[:, None].expand(2, 4) / 4, rtol=1e-12, atol=0
    )


def test_maxpool_sends_relevance_to_the_winner_even_with_ties():
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2, bias=False)).double()
    model.eval()
    x = torch.tensor([[[[1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 2.0]] * 2]], dtype=f64)
    e = explain(model, x, rule=LRP0(), keep_layers=True)
    r_out = e.layers["1"].reshape(1, 1, 2, 2)
    # the winners are where torch's max-pool gradient goes (the first maximum of a window)
    xg = x.clone().requires_grad_(True)
    (mask,) = torch.autograd.grad(F.max_pool2d(xg, 2), xg, torch.ones(1, 1, 2, 2, dtype=f64))
    assert int(mask.sum()) == 4
    expected = F.interpolate(r_out, scale_factor=2, mode="nearest") * mask
    torch.testing.assert_close(e.relevance, expected, rtol=0, atol=0)


def test_alpha_beta_output_is_the_models_output():
    # αβ computes the layer's output as z⁺ + z⁻ instead of letting the layer run
    model, x = cnn(), torch.randn(3, 2, 8, 8, dtype=f64)
    e = explain(model, x, rule=AlphaBeta(2, 1))
    torch.testing.assert_close(e.output, model(x), rtol=1e-12, atol=1e-12)
    assert e.ledger.holds(1e-10)


def test_large_dense_weights_are_modified_in_chunks(monkeypatch):
    model, x = mlp(), torch.randn(3, 6, dtype=f64)
    whole = explain(model, x, rule=ZPlus())
    monkeypatch.setattr(maps, "CHUNK", 7)  # every modified weight in pieces of a row or two
    chunked = explain(model, x, rule=ZPlus())
    torch.testing.assert_close(chunked.relevance, whole.relevance, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("rule", [ZPlus(), AlphaBeta(2, 1)], ids=repr)
def test_transient_modified_weights_share_one_buffer(monkeypatch, rule):
    # one sample: every weight is larger than its activations, so each ρ(W) is written into
    # the explanation's Scratch, one buffer per modifier for all layers, forward and backward;
    # a batch of 40 keeps each layer's own ρ(W) instead: the relevance must not differ
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 30), nn.ReLU(), nn.Linear(30, 5), nn.ReLU(), nn.Linear(5, 3))
    model = model.double().eval()
    x = torch.rand(40, 6, dtype=f64)
    taken: list[tuple[object, int]] = []
    take = maps.Scratch.take

    def spy(self, key, like):
        out = take(self, key, like)
        if callable(key):  # a modifier ρ (the backward's temporaries have names)
            taken.append((key, out.untyped_storage().data_ptr()))
        return out

    monkeypatch.setattr(maps.Scratch, "take", spy)
    batched = explain(model, x, rule=rule).relevance
    assert taken == []  # activations larger than every weight: nothing transient
    for k in range(len(x)):
        taken.clear()
        single = explain(model, x[k : k + 1], rule=rule).relevance
        torch.testing.assert_close(single[0], batched[k], rtol=1e-12, atol=1e-15)
        modifiers = {rho for rho, _ in taken}
        assert len(taken) == 2 * 3 * len(modifiers)  # 3 layers, forward and backward
        assert len(set(taken)) == len(modifiers)  # one buffer per modifier


@pytest.mark.parametrize(
    "composite",
    [composites.uniform(Epsilon(0.1)), composites.epsilon_alpha2_beta1()],
    ids=["epsilon", "alpha2beta1"],
)
def test_backward_temporaries_reuse_scratch_buffers(monkeypatch, composite):
    # each backward's signs and ratios go into the explanation's Scratch: a buffer per name,
    # grown to the largest layer, never two layers' at once. Against fresh memory filled with
    # NaN (every value must be written before it is read), the relevance is the same.
    torch.manual_seed(4)
    model = (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 3, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3 * 4 * 4, 5),
        )
        .double()
        .eval()
    )
    x = torch.randn(3, 2, 6, 6, dtype=f64)
    taken: dict[object, set[int]] = {}
    take = maps.Scratch.take

    def spy(self, key, like):
        out = take(self, key, like)
        if not callable(key):
            taken.setdefault(key, set()).add(out.untyped_storage().data_ptr())
        return out

    monkeypatch.setattr(maps.Scratch, "take", spy)
    reused = explain(model, x, composite=composite)
    assert "sign" in taken and ("ratio", 0) in taken
    # the layers' outputs grow from the top (5, then 48) to 144 entries, twice (144, 144):
    # three sizes, so at most three buffers per name, not one per layer
    assert all(len(ptrs) <= 3 for ptrs in taken.values()), taken
    monkeypatch.setattr(
        maps.Scratch, "take", lambda self, key, like: torch.full_like(like, float("nan"))
    )
    fresh = explain(model, x, composite=composite)
    torch.testing.assert_close(reused.relevance, fresh.relevance, rtol=0, atol=0)
    assert reused.ledger.holds(1e-10)
    torch.testing.assert_close(
        torch.from_numpy(reused.ledger.absorbed),
        torch.from_numpy(fresh.ledger.absorbed),
        rtol=0,
        atol=0,
    )


def test_an_in_place_activation_input_is_let_go_once_copied():
    # under αβ the layer below keeps z⁺ and z⁻, not its output: the in-place ReLU works on a
    # copy, and the output itself must be freed then, not held to the end of the forward
    model = (
        nn.Sequential(
            nn.Conv2d(2, 3, 3),
            nn.ReLU(inplace=True),
            nn.Conv2d(3, 3, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(12, 2),
        )
        .double()
        .eval()
    )
    seen: dict[str, object] = {}
    looks = [
        model[1].register_forward_pre_hook(lambda m, args: seen.update(z=weakref.ref(args[0]))),
        model[2].register_forward_pre_hook(
            lambda m, args: seen.update(alive=seen["z"]() is not None)
        ),
    ]
    e = explain(model, torch.randn(2, 2, 6, 6, dtype=f64), rule=AlphaBeta(2, 1))
    for handle in looks:
        handle.remove()
    assert seen["alive"] is False
    assert e.ledger.holds(1e-10)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize(
    "composite",
    [composites.uniform(AlphaBeta(2, 1)), composites.epsilon_gamma_box(-3.0, 3.0)],
    ids=["alpha2beta1", "epsilon_gamma_box"],
)
def test_relevance_holds_only_its_own_memory(composite, batch):
    # signed pixels: the first layer's products of x⁺ and x⁻ (z^B: x, l, h) run as one
    # convolution; R at its input must not be a slice that keeps the whole product alive
    torch.manual_seed(5)
    model = (
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        .double()
        .eval()
    )
    x = torch.randn(batch, 3, 8, 8, dtype=f64)
    e = explain(model, x, composite=composite, keep_layers=True)
    for name, r in {"input": e.relevance, **e.layers}.items():
        assert r.untyped_storage().nbytes() == r.numel() * r.element_size(), name
    assert e.ledger.holds(1e-10)


@pytest.mark.parametrize("rule", [Flat(), WSquare()], ids=repr)
def test_flat_relevance_is_a_tensor_of_its_own(rule):
    # under the flat rule every input of a dense layer gets the same c_i = Σ_j s_j: R must
    # still be a tensor of its own (a broadcast view would refuse the user's in-place ops)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    e = explain(model, torch.randn(2, 4, dtype=f64), rule=rule, keep_layers=True)
    for name, r in {"input": e.relevance, **e.layers}.items():
        assert r.is_contiguous(), name
        assert r.untyped_storage().nbytes() == r.numel() * r.element_size(), name
    e.relevance.clamp_(min=0)  # a user's in-place edit


def test_each_relevance_tensor_is_summed_once_for_the_ledger(monkeypatch):
    # Linear → ReLU → Linear: the seed, R at the ReLU's output (= the ReLU's input) and R at
    # the input: three sums for six ledger entries
    import lrp_tutor.fast.bookings as bookings

    calls = []
    real = bookings.per_sample_sum
    monkeypatch.setattr(
        bookings, "per_sample_sum", lambda t, batch=None: calls.append(t) or real(t, batch)
    )
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double().eval()
    e = explain(model, torch.randn(3, 4, dtype=f64), rule=Epsilon(0.1))
    assert len(calls) == 3
    assert e.ledger.holds(1e-10)
    assert e.ledger[1].relevance_in.tolist() == e.ledger[1].relevance_out.tolist()
    torch.testing.assert_close(
        torch.from_numpy(e.ledger[0].relevance_in), e.relevance.sum(1), rtol=1e-12, atol=0
    )


def test_pass_rule():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    x = torch.randn(2, 3, dtype=f64)
    e = explain(
        model, x, composite=composites.by_name({"0": Pass(), "2": LRP0()}), keep_layers=True
    )
    torch.testing.assert_close(e.relevance, e.layers["1"])
    with pytest.raises(RuleError, match="'2'"):
        explain(model, x, rule=Pass())


def test_a_weighted_layer_without_a_rule_is_named():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2)).eval()
    composite = Composite(by_type={nn.Conv1d: ZPlus()})
    with pytest.raises(CompositeError, match="'2'"):
        explain(model, torch.randn(1, 1, 4), composite=composite)


def test_repeated_module_calls_get_numbered():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.act(self.fc(self.act(self.fc(x)))))

    e = explain(Twice().double().eval(), torch.randn(2, 4, dtype=f64), keep_layers=True)
    names = [entry.layer for entry in e.ledger]
    assert names == ["fc (Linear)", "act (ReLU)", "fc#2 (Linear)", "act#2 (ReLU)", "out (Linear)"]
    assert set(e.layers) == {"fc", "act", "fc#2", "act#2", "out"}
    assert e.ledger.holds(1e-10)


def test_keep_layers_is_off_by_default():
    assert explain(mlp(), torch.randn(1, 6)).layers == {}


# ------------------------------------------------------------------------------ Sum and Concat


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(4, 4)
        self.add = Sum()
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.act(self.add(self.fc2(self.act(self.fc1(x))), x)))


def test_sum_splits_relevance_in_proportion():
    class Split(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add = Sum()

        def forward(self, x):
            return self.add(x[:, :2], x[:, 2:])

    x = torch.tensor([[1.0, -2.0, 3.0, 4.0]], dtype=f64)
    e = explain(Split().eval(), x, target=0, composite=Composite(by_type={Sum: LRP0()}))
    # z_0 = 1 + 3 = 4 → R = 4 splits 1 : 3; class 1 gets nothing
    torch.testing.assert_close(e.relevance, torch.tensor([[1.0, 0.0, 3.0, 0.0]], dtype=f64))
    default = explain(Split().eval(), x, target=0)  # composites.SUM_RULE: ε = 1e-6
    torch.testing.assert_close(default.relevance, e.relevance * 4 / (4 + 1e-6))


def test_residual_model_with_sum():
    torch.manual_seed(2)
    model = Residual().double().eval()
    x = torch.randn(5, 4, dtype=f64)
    for rule in [Epsilon(), ZPlus(), AlphaBeta(), Flat()]:
        e = explain(model, x, rule=rule, keep_layers=True)
        assert e.ledger.holds(1e-10)
        assert "add (Sum)" in [entry.layer for entry in e.ledger]
        r_main, r_skip = e.layers["add"]
        assert r_main.shape == r_skip.shape == (5, 4)
    # the Sum's rule comes from the composite (by type), else composites.SUM_RULE
    flat_sum = Composite(default=LRP0(), by_type={Sum: Flat()})
    e = explain(model, x, composite=flat_sum, keep_layers=True, target=0)
    r_main, r_skip = e.layers["add"]
    torch.testing.assert_close(r_main, r_skip)  # flat: equal shares


def test_sum_of_different_shapes_broadcasts():
    """A summand broadcast to the sum's shape gets the relevance of every entry it fed."""

    class Broadcast(nn.Module):
        def __init__(self, expand: bool) -> None:
            super().__init__()
            self.add, self.expand = Sum(), expand

        def forward(self, x):
            b = x[:, :1].expand(-1, 3) if self.expand else x[:, :1]
            return self.add(x, b)

    x = torch.randn(2, 3, dtype=f64)
    for rule in [Epsilon(), LRP0()]:
        e = explain(Broadcast(False).eval(), x, rule=rule, target=1)
        r = explain(Broadcast(True).eval(), x, rule=rule, target=1)
        torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-13, atol=1e-15)
        assert e.ledger.holds(1e-10)


class Branches(nn.Module):
    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 4)
        self.cat = Concat(dim=1)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        joined = torch.cat([a, b], 1) if self.functional else self.cat(a, b)
        return self.out(joined.view(x.shape[0], -1))


def test_concatenation_module_and_functional_agree():
    torch.manual_seed(4)
    module = Branches(functional=False).double().eval()
    functional = Branches(functional=True).double().eval()
    functional.load_state_dict(module.state_dict())
    x = torch.randn(3, 3, dtype=f64)
    for rule in [Epsilon(), ZPlus()]:
        e1 = explain(module, x, rule=rule)
        e2 = explain(functional, x, rule=rule)
        torch.testing.assert_close(e1.relevance, e2.relevance, rtol=1e-13, atol=1e-15)
        assert e1.ledger.holds(1e-10)


# ------------------------------------------------------------------------------ refused models


class Running(nn.Module):
    """A running sum over the sequence: an operation with no family."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.cumsum(x, 1).mean(1))


class Functional(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        h = self.fc(x)
        if self.op == "add":
            h = h + x
        elif self.op == "relu":
            h = F.relu(h)
        elif self.op == "scale":
            h = h * self.scale
        elif self.op == "softmax":
            return torch.softmax(self.out(h), 1)
        elif self.op == "inplace":
            h = h.relu_()
        return self.out(h)


@pytest.mark.parametrize(
    "model, x, words",
    [
        (nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4)), torch.randn(2, 4), "'1' (LSTM"),
        (Running(), torch.randn(2, 3, 4), "torch.cumsum in the forward of the model (Running)"),
        (nn.Sequential(nn.Linear(4, 2), nn.Softmax(1)), torch.randn(2, 4), "logits"),
        (Functional("softmax"), torch.randn(2, 4), "softmax"),
    ],
)
def test_unsupported_layers_and_operations_are_named(model, x, words):
    with pytest.raises(UnsupportedLayerError) as info:
        explain(model.eval(), x)
    assert words in str(info.value)


class Written(nn.Module):
    """Functional.op written with modules (the reference of each operation)."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.add = Sum()
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.fc(x)
        if self.op == "add":
            h = self.add(h, x)
        elif self.op in ("relu", "inplace"):
            h = self.act(h)
        return self.out(h)


@pytest.mark.parametrize("op", ["add", "relu", "inplace"])
@pytest.mark.parametrize("rule", [Epsilon(), ZPlus(), AlphaBeta()], ids=repr)
def test_operations_in_forward_are_explained_like_their_modules(op, rule):
    """x + y, F.relu, x.relu_() in a forward: the same as Sum() and nn.ReLU()."""
    torch.manual_seed(7)
    model = Functional(op).double().eval()
    reference = Written(op).double().eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(3, 4, dtype=f64)
    e, r = explain(model, x, rule=rule), explain(reference, x, rule=rule)
    torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-13, atol=1e-15)
    assert e.ledger.holds(1e-10)


def test_layer_scale_is_a_fixed_linear_map():
    """h * scale with a parameter: an element-wise map z_j = w_j h_j (ε-rule, ε = 1e-6), so
    relevance passes it almost unchanged; its entry stands in the ledger."""
    torch.manual_seed(8)
    model = Functional("scale").double().eval()
    with torch.no_grad():
        model.scale.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]))
    x = torch.randn(3, 4, dtype=f64)
    e = explain(model, x, rule=LRP0(), keep_layers=True)
    assert "model (mul)" in [entry.layer for entry in e.ledger]
    r_out = e.layers["out"]
    z = model.fc(x) * model.scale
    expected = r_out * z / (z + 1e-6 * torch.where(z >= 0, 1.0, -1.0))
    torch.testing.assert_close(e.layers["model"], expected.detach(), rtol=1e-12, atol=1e-15)


def test_functional_addition_is_booked_in_the_module_it_happens_in():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x) + x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.block(x))

    e = explain(Net().double().eval(), torch.randn(2, 4, dtype=f64))
    assert [entry.layer for entry in e.ledger] == [
        "block.fc (Linear)",
        "block (add)",
        "block.act (ReLU)",
        "out (Linear)",
    ]
    assert e.ledger.holds(1e-10)


# ------------------------------------------------------------------------------ modes, plot


def test_train_mode_warns_explains_in_eval_and_restores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.9), nn.Linear(8, 2)).double()
    model.train()
    model[3].eval()  # a mixed state must come back as it was
    x = torch.randn(3, 4, dtype=f64)
    with pytest.warns(UserWarning, match="train mode"):
        e = explain(model, x)
    assert [m.training for m in model.modules()] == [True, True, True, True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = explain(model.eval(), x)
    torch.testing.assert_close(e.relevance, expected.relevance, rtol=0, atol=0)


def test_plot_hands_one_sample_to_viz(monkeypatch):
    import lrp_tutor.viz as viz

    calls = []
    monkeypatch.setattr(viz, "heatmap", lambda r, image=None, **kw: calls.append((r, image, kw)))
    e = explain(cnn(), torch.randn(2, 2, 8, 8, dtype=f64))
    e.plot(1, title="t")
    (relevance, image, kw), *_ = calls
    np.testing.assert_array_equal(relevance, e.relevance[1].numpy())
    assert image is None and kw == {"title": "t"}


def test_repr_mentions_target_and_composite():
    e = explain(mlp(), torch.randn(2, 6, dtype=f64), target=1, rule=ZPlus())
    text = repr(e)
    assert "target [1, 1]" in text and "ZPlus" in text and "(2, 6)" in text


def test_works_under_no_grad_and_inference_mode():
    model, x = mlp(), torch.randn(2, 6, dtype=f64)
    expected = explain(model, x).relevance
    with torch.no_grad():
        torch.testing.assert_close(explain(model, x).relevance, expected)
    with torch.inference_mode():
        xi = x.clone()
    torch.testing.assert_close(explain(model, xi).relevance, expected)
    assert not x.requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model, x = cnn(), torch.randn(3, 2, 8, 8, dtype=f64)
    for rule in [Epsilon(), ZPlus(), AlphaBeta(), Flat()]:
        cpu = explain(model, x, rule=rule)
        gpu = explain(model.cuda(), x.cuda(), rule=rule)
        model.cpu()
        assert gpu.relevance.device.type == "cuda"
        torch.testing.assert_close(gpu.relevance.cpu(), cpu.relevance, rtol=1e-9, atol=1e-12)
        assert gpu.ledger.holds(1e-10)


def test_python_numbers_keep_the_model_precision():
    """``x * 0.123…`` and ``x + 0.987…`` in a float64 model: the constants enter the rule in
    float64 (not in the default dtype), so the books balance to rounding."""

    class Affine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * 0.1234567891234 + 0.98765432123

    e = explain(Affine().double().eval(), torch.randn(2, 3, dtype=f64))
    assert e.ledger.max_residual < 1e-14
