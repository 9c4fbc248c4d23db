"""The attention stepper (:class:`lrp_tutor.AttentionWalkthrough`) against the fast path.

A tiny encoder, tokens → ``nn.MultiheadAttention`` (E = 8, 2 heads, 5 tokens, random weights
and biases) → Flatten → Linear, is explained by :func:`lrp_tutor.explain` in float64 with
``keep_layers=True``; the relevance at the Linear's input is the relevance at the attention's
output, from which each sample is walked back by the stepper. The stepper must reproduce, to
1e-10 relative:

- the relevance at the input tokens;
- per head, the relevance at every operation's inputs (the values and A of A·V, the scores
  of softmax, the queries and keys of QKᵀ) and what each operation absorbed;

under AttnLRP and CP-LRP, with the default and a large ε, with a causal mask, and with LRP-0
on every operation. The stages show these numbers, the books close per head and overall,
bad input is refused, and the module comes back unchanged.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from model_state import assert_unchanged, snapshot
from torch import nn

import lrp_tutor as lt
from lrp_tutor import composites
from lrp_tutor.errors import InputError, RuleError, UnsupportedLayerError
from lrp_tutor.stepper import AttentionWalkthrough
from lrp_tutor.stepper import attention as stepper_attention

matplotlib.use("Agg")

L, E, H, CLASSES = 5, 8, 2, 3
D = E // H
ZERO = {
    method: composites.Composite(
        by_type={nn.Module: lt.rules.LRP0()}, default=lt.rules.LRP0(), attention=method
    )
    for method in composites.ATTENTION
}
COMPOSITES = {
    "attn_lrp": composites.attn_lrp(),
    "cp_lrp": composites.cp_lrp(),
    "attn_lrp eps 0.3": composites.attn_lrp(epsilon=0.3),
    "cp_lrp eps 0.3": composites.cp_lrp(epsilon=0.3),
    "attn_lrp LRP-0": ZERO["attn_lrp"],
    "cp_lrp LRP-0": ZERO["cp_lrp"],
}


class Encoder(nn.Module):
    """Tokens → self-attention → Flatten → Linear (optionally causal)."""

    def __init__(self, causal: bool = False) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(E, H, batch_first=True)
        self.flat = nn.Flatten()
        self.head = nn.Linear(L * E, CLASSES)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.causal:
            mask = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
        y = self.attention(x, x, x, attn_mask=mask, need_weights=False)[0]
        return self.head(self.flat(y))


def _encoder(causal: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = Encoder(causal).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # biases included, large enough to matter
            p.normal_(0.0, 0.5)
    return model


def _x(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, L, E, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def _fast_by_kind(e: lt.Explanation, kind: str) -> list[str]:
    """The names in ``e.layers`` of the ledger lines of one kind ("softmax", "matmul" …),
    in forward order."""
    names = []
    for entry in e.ledger:
        name, _, rest = entry.layer.partition(" (")
        if rest.rstrip(")") == kind:
            names.append(name)
    return names


def _walk(model, composite, x, r_out, causal=False) -> AttentionWalkthrough:
    walk = AttentionWalkthrough(model.attention, composite)
    return walk.forward(x, causal=causal).backward(r_out)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("name", list(COMPOSITES))
def test_agrees_with_the_fast_path(name, causal):
    composite = COMPOSITES[name]
    model, x = _encoder(causal), _x()
    e = lt.explain(model, x, composite=composite, keep_layers=True)
    r_out = e.layers["head"].reshape(-1, L, E).numpy()
    worst = 0.0
    for n in range(x.shape[0]):
        walk = _walk(model, composite, x[n], r_out[n], causal)
        reference = e.relevance[n].numpy()
        worst = max(worst, _relative(walk.relevance, reference))
        assert walk.holds(1e-10), walk.check()
        mask = torch.ones(L, L, dtype=torch.bool).triu(1) if causal else None
        with torch.no_grad():
            sample = x[n : n + 1]
            y = model.attention(sample, sample, sample, attn_mask=mask, need_weights=False)[0]
        assert _relative(walk.output, y[0].numpy()) < 1e-12
    assert worst < 1e-10, worst


@pytest.mark.parametrize("name", ["attn_lrp eps 0.3", "cp_lrp eps 0.3", "attn_lrp LRP-0"])
def test_every_operation_agrees_with_the_fast_path(name):
    """Per head, the relevance at each operation's inputs and what it absorbed."""
    composite = COMPOSITES[name]
    model, x = _encoder(seed=3), _x(2, seed=4)
    e = lt.explain(model, x, composite=composite, keep_layers=True)
    r_out = e.layers["head"].reshape(-1, L, E).numpy()
    linear = _fast_by_kind(e, "linear")  # q, k, v projections, then the output projection
    held = composite.attention == "cp_lrp"  # then no relevance reaches q and k
    assert len(linear) == (2 if held else 4)
    books = {entry.layer.partition(" (")[0]: entry for entry in e.ledger}
    for n in range(x.shape[0]):
        walk = _walk(model, composite, x[n], r_out[n])
        for key, name_ in zip("v" if held else "qkv", linear[:-1], strict=True):
            assert _relative(walk.projections[key].relevance_in, e.layers[name_][n].numpy()) < 1e-10
        absorbed = {}
        if held:
            assert _fast_by_kind(e, "softmax") == []  # A is a constant: no softmax booked
            (av,) = _fast_by_kind(e, "matmul")  # A·V, a linear map of the values
            for h, head in enumerate(walk.heads):
                assert _relative(head.messages.R_v, _at(e, av, n, h).numpy()) < 1e-10
                assert not np.any(head.query_key.R_q) and not np.any(head.query_key.R_k)
                assert not np.any(walk.projections["q"].relevance_in)
        else:
            (qk, av), (softmax,), (scale,) = (
                _fast_by_kind(e, "matmul"),
                _fast_by_kind(e, "softmax"),
                _fast_by_kind(e, "mul"),
            )
            for h, head in enumerate(walk.heads):
                assert _relative(head.messages.R_A, _at(e, av, n, h, 0).numpy()) < 1e-10
                assert _relative(head.messages.R_v, _at(e, av, n, h, 1).numpy()) < 1e-10
                assert _relative(head.attention.R_S, _at(e, softmax, n, h).numpy()) < 1e-10
                assert _relative(head.query_key.R_P, _at(e, scale, n, h).numpy()) < 1e-10
                assert _relative(head.query_key.R_q, _at(e, qk, n, h, 0).numpy()) < 1e-10
                assert _relative(head.query_key.R_k, _at(e, qk, n, h, 1).numpy().T) < 1e-10
            absorbed = {
                qk: sum(h.books.absorbed["QKᵀ"] for h in walk.heads),
                scale: sum(h.books.absorbed["scale"] for h in walk.heads),
                softmax: sum(h.books.absorbed["softmax"] for h in walk.heads),
            }
        # what each operation absorbed, summed over the heads, as in the fast path's ledger
        absorbed[av] = sum(h.books.absorbed["A·V"] for h in walk.heads)
        for key, value in absorbed.items():
            fast_value = float(books[key].absorbed[n])
            assert abs(value - fast_value) <= 1e-10 * max(1.0, abs(r_out[n]).sum()), key
            assert fast_value != 0 or name.endswith("LRP-0")  # ε = 0.3 absorbs everywhere


def _at(e: lt.Explanation, key: str, n: int, h: int, k: int | None = None) -> torch.Tensor:
    """The fast path's relevance at (input ``k`` of) operation ``key``, sample n, head h."""
    value = e.layers[key] if k is None else e.layers[key][k]
    return value[n, h]


def test_the_tests_can_fail(monkeypatch):
    """Dropping the ½ of the uniform rule, or the other treatment of softmax, disagrees."""
    model, x = _encoder(), _x(1)
    composite = COMPOSITES["attn_lrp"]
    e = lt.explain(model, x, composite=composite, keep_layers=True)
    r_out = e.layers["head"].reshape(L, E).numpy()
    reference = e.relevance[0].numpy()
    other = _walk(model, COMPOSITES["cp_lrp"], x[0], r_out)
    assert _relative(other.relevance, reference) > 1e-3
    uniform = stepper_attention._uniform

    def whole(a, b, r, part):
        result = uniform(a, b, r, part)
        return dict(result, R_a=2 * result["R_a"], R_b=2 * result["R_b"])

    monkeypatch.setattr(stepper_attention, "_uniform", whole)
    broken = _walk(model, composite, x[0], r_out)
    assert _relative(broken.relevance, reference) > 1e-3


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
def test_stages_show_the_numbers(method):
    torch.manual_seed(5)
    mha = nn.MultiheadAttention(E, H).double().eval()
    x = torch.randn(L, E, dtype=torch.float64)
    r_out = np.random.default_rng(0).normal(size=(L, E))
    walk = AttentionWalkthrough(mha, COMPOSITES[method]).forward(x).backward(r_out)
    with torch.no_grad():
        y, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    q = walk.projections["q"].a
    for h, head in enumerate(walk.heads):
        qk, att, msg, books = head.stages
        cut = slice(h * D, (h + 1) * D)
        # forward: the head's q, k, scores and A are torch's
        assert _relative(qk.q_id, q[:, cut]) == 0
        assert _relative(qk.S_ij, (q[:, cut] @ qk.k_jd.T) / np.sqrt(D)) < 1e-14
        assert _relative(att.A_ij, weights[h].numpy()) < 1e-12
        assert np.allclose(qk.z_ijd.sum(-1), qk.P_ij, rtol=0, atol=1e-14)
        assert np.allclose(msg.z_ijd.sum(1), msg.O_id, rtol=0, atol=1e-14)
        # backward: messages add up to what the values receive; the halves; per-token books
        assert np.allclose(msg.R_ij.sum(0), msg.R_v.sum(1), rtol=0, atol=1e-12)
        assert np.allclose(qk.R_qd.sum(1), qk.R_q, rtol=0, atol=1e-12)
        assert np.allclose(qk.R_kd.sum(0), qk.R_k, rtol=0, atol=1e-12)
        assert np.allclose(
            msg.R_O.sum(1), msg.R_ij.sum(1) + msg.R_A.sum(1) + msg.absorbed, rtol=0, atol=1e-12
        )
        assert np.allclose(att.R_A.sum(1) - att.R_S.sum(1), att.absorbed, rtol=0, atol=1e-12)
        assert head.holds(1e-10), head.check()
        if method == "attn_lrp":
            assert np.array_equal(msg.R_ij, msg.R_A)  # the two halves of each contribution
            assert abs(books.R_q - books.R_k) < 1e-12  # ½ Σ z s to each side
            assert np.abs(att.R_S).sum() > 0
        else:
            assert not np.any(msg.R_A) and not np.any(att.R_S) and books.R_q == books.R_k == 0
            assert np.allclose(msg.R_ij.sum(1) + msg.absorbed, msg.R_O.sum(1), atol=1e-12)
        # printed and drawn: the numbers shown are the stage's
        text = repr(msg)
        assert f"Σ R_O {lt.stepper._format.num(msg.R_O.sum())}" in text
        html = att._repr_html_()
        assert f"<td>{lt.stepper._format.num(att.A_ij[0, 0])}</td>" in html
        assert f"<td>{lt.stepper._format.num(msg.R_ij[L - 1, 0])}</td>" in msg._repr_html_()
        assert "Conservation fails" not in head._repr_html_()
        for stage in head.stages:
            assert stage.check()
            figure = stage.plot()
            if stage is msg:
                images = [a.images[0].get_array() for a in figure.axes if a.images]
                assert np.array_equal(images[0], msg.A_ij) and np.array_equal(images[1], msg.R_ij)
            matplotlib.pyplot.close(figure)
    books = walk.books()
    assert abs(books["residual"]) < 1e-10 * abs(r_out).sum()
    assert abs(books["R_out"] - r_out.sum()) < 1e-12
    assert walk.ledger.holds(1e-10)
    assert "Σ R_out = Σ R_in + absorbed" in walk.check() and "fails" not in walk.check()
    assert walk.projections["out"].holds() and walk.projections["v"].messages.R_ij.shape == (E, E)
    assert repr(walk).startswith("<AttentionWalkthrough · 2 heads of 4")
    assert walk[1] is walk.head(1) and len(walk) == H


def test_the_books_name_what_was_absorbed():
    """Σ R_out = Σ R_in + absorbed, and absorbed is the sum of the ledger's lines."""
    model, x = _encoder(), _x(1)
    r_out = np.ones((L, E))
    walk = _walk(model, COMPOSITES["attn_lrp eps 0.3"], x[0], r_out)
    books = walk.books()
    lines = sum(float(entry.absorbed[0]) for entry in walk.ledger)
    assert books["absorbed"] == pytest.approx(lines, abs=1e-12)
    assert books["R_out"] - books["R_in"] - books["absorbed"] == pytest.approx(0, abs=1e-12)
    for head in walk.heads:
        b = head.books
        assert b.R_out == pytest.approx(b.R_q + b.R_k + b.R_v + sum(b.absorbed.values()), abs=1e-12)
        assert b.absorbed["softmax"] != 0 and b.absorbed["A·V"] != 0
    assert walk.relevance == pytest.approx(
        walk.relevance_query + walk.relevance_key + walk.relevance_value
    )


def test_bad_input_is_refused():
    mha = nn.MultiheadAttention(E, H).eval()
    with pytest.raises(InputError, match="nn.MultiheadAttention"):
        AttentionWalkthrough(nn.Linear(E, E))
    with pytest.raises(InputError, match="Composite"):
        AttentionWalkthrough(mha, lt.rules.Epsilon())
    with pytest.raises(RuleError, match="relative"):
        relative = lt.rules.Epsilon(0.1, relative=True)
        AttentionWalkthrough(mha, composites.Composite(default=relative, attention="attn_lrp"))
    with pytest.raises(RuleError, match="A·V"):
        AttentionWalkthrough(mha, composites.cp_lrp(gamma=0.25))
    with pytest.raises(UnsupportedLayerError, match="add_bias_kv"):
        AttentionWalkthrough(nn.MultiheadAttention(E, H, add_bias_kv=True))
    with pytest.raises(UnsupportedLayerError, match="add_zero_attn"):
        AttentionWalkthrough(nn.MultiheadAttention(E, H, add_zero_attn=True))
    with pytest.raises(UnsupportedLayerError, match="kdim"):
        AttentionWalkthrough(nn.MultiheadAttention(E, H, kdim=4, vdim=4))
    with pytest.raises(UnsupportedLayerError, match="eval"):
        AttentionWalkthrough(nn.MultiheadAttention(E, H, dropout=0.1).train())
    walk = AttentionWalkthrough(mha)
    with pytest.raises(InputError, match="forward"):
        walk.backward(np.ones((L, E)))
    with pytest.raises(InputError, match=r"shape \(L, 8\)"):
        walk.forward(np.ones((2, L, E)))
    with pytest.raises(InputError, match="NaN"):
        walk.forward(np.full((L, E), np.nan))
    with pytest.raises(InputError, match="boolean"):
        walk.forward(np.ones((L, E)), attn_mask=np.zeros((L, L)))
    with pytest.raises(InputError, match="nothing to attend"):
        walk.forward(np.ones((L, E)), attn_mask=np.ones((L, L), dtype=bool))
    walk.forward(np.ones((L, E)))
    with pytest.raises(InputError, match="backward"):
        walk.head(0)
    with pytest.raises(InputError, match="shape"):
        walk.backward(np.ones((L + 1, E)))
    walk.backward(np.ones((L, E)))
    with pytest.raises(InputError, match="2 heads"):
        walk[2]


@pytest.mark.parametrize("train", [False, True])
def test_the_module_comes_back_unchanged(train):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(E, H, dropout=0.0).train(train)  # float32, as users have it
    mha.register_forward_hook(lambda *args: None)
    mha.out_proj.weight.requires_grad_(False)
    before = snapshot(mha)
    walk = AttentionWalkthrough(mha, composites.cp_lrp()).forward(torch.randn(L, E))
    walk.backward(torch.ones(L, E))
    for stage in walk[0].stages:
        repr(stage), stage._repr_html_()
        matplotlib.pyplot.close(stage.plot())
    assert_unchanged(before, snapshot(mha))
    assert walk.relevance.dtype == np.float64


class EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (post-norm, a residual around attention) → mean → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(E, H, 16, dropout=0.1, batch_first=True)
        self.head = nn.Linear(E, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer(x).mean(1))


@pytest.mark.parametrize("method", ["attn_lrp", "cp_lrp"])
def test_agrees_inside_a_transformer_encoder_layer(method):
    """The relevance at ``self_attn``'s output is that at ``dropout1``'s input (the identity
    in eval mode); walked back from it, the stepper finds what the fast path sends through
    attention to the tokens: the sum over the q, k and v projections' inputs."""
    composite = COMPOSITES[method]
    torch.manual_seed(6)
    model = EncoderLayer().double().eval()
    x = _x(2, seed=7)
    e = lt.explain(model, x, composite=composite, keep_layers=True)
    projections = [n for n in _fast_by_kind(e, "linear") if n.startswith("layer.self_attn")]
    inputs = projections[:-1]  # the last is the output projection
    assert len(inputs) == (1 if method == "cp_lrp" else 3)
    for n in range(x.shape[0]):
        walk = AttentionWalkthrough(model.layer.self_attn, composite).forward(x[n])
        walk.backward(e.layers["layer.dropout1"][n])
        reference = sum(e.layers[name][n] for name in inputs).numpy()
        assert _relative(walk.relevance, reference) < 1e-10
