"""Attention, explained by the operation engine: torchvision's ViT and Swin, timm's ViT and
DeiT, ``nn.TransformerEncoder``, and Hugging Face's BERT, GPT-2 and Llama, built from their
libraries' own code with random weights, explained from the embeddings, in float64.

For every model, under AttnLRP and under CP-LRP:

- the relevance is finite and has the input's shape;
- **the books balance**: every ledger entry balances, and the input's relevance plus all
  that was absorbed is the logit, to :math:`10^{-6} |f_c|`;
- **CP-LRP conserves** on a bias-free copy (biases, position embeddings, class tokens and
  relative position biases zeroed): :math:`\\sum_i R_i = f_c` to :math:`10^{-3}|f_c|`.

The attention families themselves are checked against dense float64 oracles below: the
uniform product rule, AttnLRP's softmax rule, masks, and the fused functions computed as
the operations they stand for.
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrp_tutor as lt
from lrp_tutor import composites, zoo
from lrp_tutor.errors import UnsupportedLayerError

if os.environ.get("LRP_TUTOR_REQUIRE_MODELS"):  # make test: they are installed, never skipped
    import timm
    import torchvision.models as tvm
    import transformers
else:
    tvm = pytest.importorskip("torchvision.models")
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")

f64 = torch.float64
PRESETS = {"attn_lrp": composites.attn_lrp, "cp_lrp": composites.cp_lrp}
ZERO = {
    attention: composites.Composite(
        by_type={nn.Module: lt.rules.LRP0()}, default=lt.rules.LRP0(), attention=attention
    )
    for attention in composites.ATTENTION
}
"""LRP-0 on every operation (weighted layers, fixed maps, sums, products)."""
CONSTANTS = ("bias", "pos", "wpe", "cls_token", "class_token", "token_type", "relative_position")
"""Parameters a bias-free copy zeroes: every constant added to the activations."""


class EncoderClassifier(nn.Module):
    """``nn.TransformerEncoder`` with a mean-pooled linear head."""

    def __init__(self, batch_first: bool, norm_first: bool, causal: bool = False) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            16, 4, 32, dropout=0.1, batch_first=batch_first, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)
        self.batch_first, self.causal = batch_first, causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.causal:
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
        h = self.encoder(x if self.batch_first else x.transpose(0, 1), mask=mask)
        return self.head((h if self.batch_first else h.transpose(0, 1)).mean(1))


def _hf(kind: str, attention: str) -> nn.Module:
    t = transformers
    small = dict(vocab_size=40, attn_implementation=attention)
    if kind == "bert":
        config = t.BertConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            num_labels=3, **small,
        )  # fmt: skip
        return zoo.FromEmbeddings(t.BertForSequenceClassification(config))
    if kind == "gpt2":
        config = t.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=16, **small)
        return zoo.FromEmbeddings(t.GPT2LMHeadModel(config))
    config = t.LlamaConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=32, **small,
    )  # fmt: skip
    return zoo.FromEmbeddings(t.LlamaForCausalLM(config))


def _randomise(model: nn.Module) -> nn.Module:
    """Random weights everywhere (torchvision zero-initialises ViT's head)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 or name.endswith(("head.weight", "head.bias")):
                fan_in = p[0].numel() if p.ndim >= 2 else p.numel()
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
            elif "norm" in name or "ln" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


MODELS = {
    "torchvision.vit_b_16": (lambda: tvm.vit_b_16(), (1, 3, 224, 224)),
    "torchvision.swin_t": (lambda: tvm.swin_t(), (1, 3, 64, 64)),
    "timm.vit_tiny": (
        lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5),
        (2, 3, 32, 32),
    ),
    "timm.deit_tiny": (
        lambda: timm.create_model("deit_tiny_patch16_224", img_size=32, num_classes=5),
        (2, 3, 32, 32),
    ),
    **{
        f"nn.TransformerEncoder(batch_first={bf}, norm_first={nf})": (
            lambda bf=bf, nf=nf: EncoderClassifier(bf, nf),
            (2, 5, 16),
        )
        for bf in (True, False)
        for nf in (True, False)
    },
    "nn.TransformerEncoder(causal)": (lambda: EncoderClassifier(True, False, True), (2, 5, 16)),
    **{
        f"transformers.{kind}({attention})": (
            lambda kind=kind, attention=attention: _hf(kind, attention),
            (2, 5, 16),
        )
        for kind in ("bert", "gpt2", "llama")
        for attention in ("eager", "sdpa")
    },
}


def _model(name: str) -> tuple[nn.Module, torch.Tensor]:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = _randomise(build()).to(f64).eval()
    x = torch.randn(shape, dtype=f64, generator=torch.Generator().manual_seed(1))
    return model, x


def _books(e: lt.Explanation) -> tuple[torch.Tensor, torch.Tensor]:
    """(logit, Σ R_input + absorbed) per sample."""
    logit = e.output.gather(1, e.target.view(-1, 1)).squeeze(1)
    total = e.relevance.flatten(1).sum(1) + torch.as_tensor(e.ledger.absorbed)
    return logit, total


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_from_embeddings_gives_the_models_logits(kind):
    wrapped = _randomise(_hf(kind, "eager")).to(f64).eval()
    x = torch.randn(2, 5, 16, dtype=f64)
    with torch.no_grad():
        logits = wrapped.model(inputs_embeds=x).logits
        per_token = zoo.FromEmbeddings(wrapped.model, position=None)(x)
        out = wrapped(x)
    if kind == "bert":  # a sequence classifier: (N, classes) as it is
        assert logits.shape == (2, 3)
        torch.testing.assert_close(out, logits, rtol=0, atol=0)
    else:  # a language model: the last token's, or every token's with position=None
        assert logits.shape == (2, 5, 40)
        torch.testing.assert_close(out, logits[:, -1], rtol=0, atol=0)
        torch.testing.assert_close(per_token, logits, rtol=0, atol=0)
        second = zoo.FromEmbeddings(wrapped.model, position=1)(x)
        torch.testing.assert_close(second, logits[:, 1], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", MODELS)
def test_books_balance(name, preset):
    model, x = _model(name)
    e = lt.explain(model, x, composite=PRESETS[preset]())
    assert e.relevance.shape == x.shape
    assert torch.isfinite(e.relevance).all()
    logit, total = _books(e)
    scale = logit.abs().max().item()
    assert scale > 0
    assert e.ledger.max_residual <= 1e-6 * scale, e.ledger.check()
    torch.testing.assert_close(total, logit, rtol=0, atol=1e-6 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_cp_lrp_conserves_without_biases(name):
    model, x = _model(name)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if any(word in key for word in CONSTANTS):
                p.zero_()
    e = lt.explain(model, x, composite=composites.cp_lrp(epsilon=1e-12))
    logit = e.output.gather(1, e.target.view(-1, 1)).squeeze(1)
    assert logit.abs().min() > 1e-8
    torch.testing.assert_close(e.relevance.flatten(1).sum(1), logit, rtol=1e-3, atol=0)


# ------------------------------------------------------------------ the families, in float64


def _grad(out: torch.Tensor, inputs, r: torch.Tensor):
    return torch.autograd.grad(out, inputs, r)


class Bilinear(nn.Module):
    """z = (x A) ⊙ (x B) summed by a head: a product of two activations."""

    def __init__(self, matrix: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
        self.matrix = matrix

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        z = a @ b.transpose(-1, -2) if self.matrix else a * b
        return z.flatten(1)


@pytest.mark.parametrize("matrix", [False, True])
def test_uniform_rule_gives_each_factor_half(matrix):
    torch.manual_seed(0)
    model = Bilinear(matrix).to(f64).eval()
    x = torch.randn(1, 3, 4, dtype=f64)
    e = lt.explain(model, x, composite=ZERO["attn_lrp"])
    with torch.no_grad():
        a, b = model.a(x), model.b(x)
        z = a @ b.transpose(-1, -2) if matrix else a * b
        r = torch.zeros_like(z).flatten(1)
        r[0, e.target[0]] = z.flatten(1)[0, e.target[0]]
        s = (r / z.flatten(1)).view_as(z)
        if matrix:  # R_a = ½ a ⊙ (s b), R_b = ½ b ⊙ (sᵀ a)
            r_a, r_b = 0.5 * a * (s @ b), 0.5 * b * (s.transpose(-1, -2) @ a)
        else:
            r_a = r_b = 0.5 * z * s
        wa, wb = model.a.weight, model.b.weight  # back through the two LRP-0 linear layers
        expected = x * ((r_a / a) @ wa + (r_b / b) @ wb)
    torch.testing.assert_close(e.relevance, expected, rtol=1e-10, atol=1e-12)
    assert e.ledger.max_residual < 1e-12


class SoftmaxHead(nn.Module):
    def __init__(self, masked: bool) -> None:
        super().__init__()
        self.linear, self.masked = nn.Linear(5, 5), masked

    def forward(self, x):
        scores = self.linear(x)
        if self.masked:
            scores = scores.masked_fill(torch.tensor([False, False, True, False, True]), -math.inf)
        return torch.softmax(scores, dim=-1) * 3.0


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_rule_is_attn_lrp(masked):
    torch.manual_seed(0)
    model = SoftmaxHead(masked).to(f64).eval()
    x = torch.randn(2, 5, dtype=f64)
    e = lt.explain(model, x, composite=ZERO["attn_lrp"], target=1)
    with torch.no_grad():
        scores = model.linear(x)
        if masked:
            scores[:, [2, 4]] = -math.inf
        s = torch.softmax(scores, -1)
        r = torch.zeros_like(s)
        r[:, 1] = 3.0 * s[:, 1]
        r_x = scores * (r - s * r.sum(-1, keepdim=True))  # x_i (R_i - s_i Σ_j R_j)
        r_x = torch.where(torch.isfinite(scores), r_x, 0)
        expected = x * ((r_x / model.linear(x)) @ model.linear.weight)
    torch.testing.assert_close(e.relevance, expected, rtol=1e-10, atol=1e-12)
    entry = next(entry for entry in e.ledger if "softmax" in entry.layer)
    absorbed = r.sum(-1) - r_x.sum(-1)
    torch.testing.assert_close(torch.as_tensor(entry.bias), absorbed, rtol=1e-10, atol=1e-12)
    assert e.ledger.max_residual < 1e-12


def test_cp_lrp_holds_softmax_constant():
    """CP-LRP: A·V is a linear map of V with the attention weights fixed."""
    torch.manual_seed(0)
    q, k = nn.Linear(4, 4).to(f64), nn.Linear(4, 4).to(f64)

    class Attend(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = q, k

        def forward(self, x):
            a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), -1)
            return (a @ x).flatten(1)

    x = torch.randn(1, 3, 4, dtype=f64)
    e = lt.explain(Attend(), x, composite=ZERO["cp_lrp"], target=5)
    with torch.no_grad():
        a = torch.softmax(q(x) @ k(x).transpose(-1, -2), -1)
        z = (a @ x).flatten(1)
        r = torch.zeros_like(z)
        r[0, 5] = z[0, 5]
        s = (r / z).view(1, 3, 4)
        expected = x * (a.transpose(-1, -2) @ s)  # R_j = x_j Σ_i a_ij s_i
    torch.testing.assert_close(e.relevance, expected, rtol=1e-10, atol=1e-12)


class Fused(nn.Module):
    """Attention through the fused functions, with masks."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True, bias=True)
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):
        length = x.shape[1]
        if self.how.startswith("sdpa"):
            q, k, v = self.qkv(x).view(x.shape[0], length, 3, 2, 4).permute(2, 0, 3, 1, 4)
            mask = None
            if self.how == "sdpa-bool":
                mask = torch.ones(length, length, dtype=torch.bool).tril()
            elif self.how == "sdpa-float":
                mask = torch.randn(length, length, dtype=x.dtype, generator=_gen())
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=self.how == "sdpa-causal"
            )
            return out.transpose(1, 2).flatten(1)
        mask = None
        padding = None
        if self.how == "mha-causal":
            mask = nn.Transformer.generate_square_subsequent_mask(length, dtype=x.dtype)
        elif self.how == "mha-padding":
            padding = torch.tensor([[False] * (length - 1) + [True]] * x.shape[0])
        out, weights = self.mha(x, x, x, attn_mask=mask, key_padding_mask=padding)
        return out.flatten(1)


def _gen():
    return torch.Generator().manual_seed(3)


HOW = ["sdpa", "sdpa-causal", "sdpa-bool", "sdpa-float", "mha", "mha-causal", "mha-padding"]


@pytest.mark.parametrize("how", HOW)
def test_fused_attention_is_its_operations(how):
    """The fused functions keep their value and are explained as their operations: the
    relevance equals that of the same model written out by hand."""
    torch.manual_seed(0)
    model = Fused(how).to(f64).eval()
    x = torch.randn(2, 4, 8, dtype=f64)
    with torch.no_grad():
        plain = model(x)
    e = lt.explain(model, x, composite=composites.attn_lrp(epsilon=1e-9), target=3)
    torch.testing.assert_close(e.output, plain, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(e.relevance).all()
    assert e.ledger.max_residual < 1e-10 * e.output.abs().max().item()
    written = _written_out(model, how)
    e2 = lt.explain(written, x, composite=composites.attn_lrp(epsilon=1e-9), target=3)
    torch.testing.assert_close(e.relevance, e2.relevance, rtol=1e-10, atol=1e-12)


def _written_out(model: Fused, how: str) -> nn.Module:
    """The same attention as explicit operations (the reference)."""

    class Written(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = copy.deepcopy(model)

        def forward(self, x):
            n, length, _ = x.shape
            if how.startswith("sdpa"):
                q, k, v = self.m.qkv(x).view(n, length, 3, 2, 4).permute(2, 0, 3, 1, 4)
            else:
                w, b = self.m.mha.in_proj_weight, self.m.mha.in_proj_bias
                q, k, v = (
                    F.linear(x, wi, bi).view(n, length, 2, 4).transpose(1, 2)
                    for wi, bi in zip(w.chunk(3), b.chunk(3), strict=True)
                )
            scores = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(4))
            keep = torch.ones(length, length, dtype=torch.bool)
            if how in ("sdpa-causal", "sdpa-bool", "mha-causal"):
                keep = keep.tril()
            if how == "mha-padding":
                keep = keep.clone()
                keep[:, -1] = False
            scores = scores.masked_fill(~keep, -math.inf)
            if how == "sdpa-float":
                scores = scores + torch.randn(length, length, dtype=x.dtype, generator=_gen())
            out = torch.softmax(scores, -1) @ v
            if how.startswith("sdpa"):
                return out.transpose(1, 2).flatten(1)
            out = out.transpose(1, 2).reshape(n, length, 8)
            return self.m.mha.out_proj(out).flatten(1)

    return Written().eval()


def test_attention_dropout_in_train_mode_is_refused():
    class Dropping(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, dropout_p=0.5).flatten(1)

    with pytest.raises(UnsupportedLayerError, match="dropout_p=0.5.*eval"):
        lt.explain(Dropping(), torch.randn(1, 2, 3, 4))


def test_composite_attention_is_checked():
    with pytest.raises(lt.errors.CompositeError, match="attention='attnlrp'.*'cp_lrp'"):
        composites.Composite(attention="attnlrp")


@pytest.mark.parametrize("preset", ZERO)
def test_an_infinite_mask_added_sends_nothing(preset):
    """``scores + mask`` with -inf in the mask (nn.Transformer's causal mask, added by the
    model's own code) equals ``scores.masked_fill``: finite books, the same relevance."""

    class Attend(nn.Module):
        def __init__(self, fill: bool):
            super().__init__()
            self.q, self.k, self.fill = nn.Linear(4, 4), nn.Linear(4, 4), fill

        def forward(self, x):
            scores = self.q(x) @ self.k(x).transpose(-1, -2)
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
            if self.fill:
                scores = scores.masked_fill(torch.isinf(mask), -math.inf)
            else:
                scores = scores + mask
            return (torch.softmax(scores, -1) @ x).flatten(1)

    torch.manual_seed(0)
    added = Attend(False).to(f64).eval()
    filled = copy.deepcopy(added)
    filled.fill = True
    x = torch.randn(2, 3, 4, dtype=f64)
    e = lt.explain(added, x, composite=ZERO[preset], target=7)
    reference = lt.explain(filled, x, composite=ZERO[preset], target=7)
    assert all(torch.isfinite(torch.as_tensor(entry.bias)).all() for entry in e.ledger)
    assert e.ledger.max_residual < 1e-12
    torch.testing.assert_close(e.relevance, reference.relevance, rtol=1e-10, atol=1e-12)
