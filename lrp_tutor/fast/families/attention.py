r"""Attention: softmax, and fused attention written out as the operations it does.

**Softmax** is explained as the composite's ``attention`` says
(:data:`~lrp_tutor.composites.ATTENTION`):

- ``"cp_lrp"`` (CP-LRP, Ali et al. 2022): its output is held constant. A product with it is
  then a linear map — attention's :math:`A V` sends all relevance to the values — and no
  relevance enters the queries and keys.
- ``"attn_lrp"`` (AttnLRP, Achtibat et al. 2024, Prop. 3.1): the Taylor expansion of
  :math:`s_j` at its input, :math:`R_i = x_i (R_i - s_i \sum_j R_j)`
  (:class:`~lrp_tutor.fast.functions.SoftmaxRule`); the bias of the expansion absorbs the
  rest, booked in the ledger.

**Fused attention** — ``F.scaled_dot_product_attention`` and
``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` calls) — is computed as
the operations it stands for, each explained by its family:

.. math::

    A = \mathrm{softmax}\big(Q K^\top \cdot \mathrm{scale} + M\big), \qquad O = A V ,

the two products of activations by the uniform rule
(:mod:`~lrp_tutor.fast.families.products`), the scale as a constant factor, an additive mask
:math:`M` as a constant added (booked like a bias), a boolean or causal mask as
:math:`-\infty` filled in. ``nn.MultiheadAttention``'s input and output projections are
linear layers that take the rule of ``nn.Linear``.

>>> import torch, lrp_tutor as lt
>>> torch.manual_seed(0) and None
>>> attention = torch.nn.MultiheadAttention(4, 2, batch_first=True).eval()
>>> class Model(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.attention, self.head = attention, torch.nn.Linear(4, 2)
...     def forward(self, x):
...         return self.head(self.attention(x, x, x, need_weights=False)[0].mean(1))
>>> x = torch.randn(1, 3, 4, dtype=torch.float64)
>>> e = lt.explain(Model().double(), x, composite=lt.composites.attn_lrp())
>>> e.ledger.holds(1e-10)
True
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from ...errors import UnsupportedLayerError
from ..functions import SoftmaxRule


def softmax(call) -> Tensor:
    """``softmax(x, dim)``: held constant (CP-LRP) or AttnLRP's rule, as the composite says."""
    from ..registry import describe

    x = call.args[0]
    dim = call.arg(1, "dim")
    out = call.plain()
    session = call.session
    if session.composite.attention == "attn_lrp":
        if dim is None:
            dim = -1 if x.ndim in (0, 1, 3) else 1  # torch's legacy implicit choice
        out = SoftmaxRule.apply(x, out, dim, call.booking("softmax"), session.scratch)
    session.held[id(out)] = (weakref.ref(out), f"{describe(call.func)} in {call.where()}")
    return out


def _no_dropout(call, p: float) -> None:
    if p:
        raise UnsupportedLayerError(
            f"The attention in {call.where()} drops attention weights at random "
            f"(dropout_p={p}); explain the model in eval mode (model.eval())."
        )


def _sdpa(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """Scaled dot-product attention as its operations (run inside the engine)."""
    length, source = query.shape[-2], key.shape[-2]
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeats = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeats, dim=-3)
        value = value.repeat_interleave(repeats, dim=-3)
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if attn_mask is not None:
        scores = _masked(scores, ~attn_mask if attn_mask.dtype == torch.bool else attn_mask)
    if is_causal:
        keep = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, value)


def scaled_dot_product_attention(call) -> Tensor:
    """``F.scaled_dot_product_attention``: :math:`\\mathrm{softmax}(QK^\\top s + M)\\,V`."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    a = {n: call.arg(i, n) for i, n in enumerate(names)}
    _no_dropout(call, a["dropout_p"] or 0.0)
    return call.session.expand(
        _sdpa,
        a["query"],
        a["key"],
        a["value"],
        a["attn_mask"],
        bool(a["is_causal"]),
        a["scale"],
        bool(call.kwargs.get("enable_gqa", False)),
    )


_MHA_ARGS = (
    "query key value embed_dim_to_check num_heads in_proj_weight in_proj_bias bias_k bias_v "
    "add_zero_attn dropout_p out_proj_weight out_proj_bias training key_padding_mask "
    "need_weights attn_mask use_separate_proj_weight q_proj_weight k_proj_weight "
    "v_proj_weight static_k static_v average_attn_weights is_causal"
).split()
_MHA_DEFAULTS = dict(
    training=True, need_weights=True, use_separate_proj_weight=False, average_attn_weights=True
)


def _masked(scores: Tensor, mask: Tensor) -> Tensor:
    """``scores`` with a mask applied: a boolean mask (True: masked out), or an additive one
    whose finite entries are added as a constant (booked like a bias) and whose -inf entries
    are filled in afterwards (routing: nothing is sent there)."""
    if mask.dtype == torch.bool:
        return scores.masked_fill(mask, float("-inf"))
    infinite = torch.isneginf(mask)
    finite = mask.masked_fill(infinite, 0.0).to(scores.dtype)
    if bool(finite.any()):
        scores = scores + finite
    if bool(infinite.any()):
        scores = scores.masked_fill(infinite, float("-inf"))
    return scores


def _additive(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """A boolean mask (True: masked out) as an additive one (-inf there, 0 elsewhere)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(
        mask, float("-inf")
    )


def _mha(a: dict) -> tuple[Tensor, Tensor | None]:
    """``F.multi_head_attention_forward`` as its operations; sequence first in and out,
    batch first inside (so that the ledger books every operation per sample)."""
    query, key, value = (a[n].transpose(0, 1) for n in ("query", "key", "value"))
    batch, length, embed = query.shape
    heads = a["num_heads"]
    head_dim = embed // heads
    bq = bk = bv = None
    if a["in_proj_bias"] is not None:
        bq, bk, bv = a["in_proj_bias"].chunk(3)
    if a["use_separate_proj_weight"]:
        wq, wk, wv = a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"]
    else:
        wq, wk, wv = a["in_proj_weight"].chunk(3)
    q, k, v = F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)
    attn_mask, key_padding_mask = a["attn_mask"], a["key_padding_mask"]
    extra = []  # columns appended to the keys: bias_k / bias_v, a zero attention
    if a["bias_k"] is not None:
        k = torch.cat([k, a["bias_k"].view(1, 1, embed).expand(batch, 1, embed)], dim=1)
        v = torch.cat([v, a["bias_v"].view(1, 1, embed).expand(batch, 1, embed)], dim=1)
        extra.append(1)
    if a["add_zero_attn"]:
        zeros = torch.zeros((batch, 1, embed), dtype=q.dtype, device=q.device)
        k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
        extra.append(1)
    if extra and attn_mask is not None:
        attn_mask = F.pad(attn_mask, (0, len(extra)))
    if extra and key_padding_mask is not None:
        key_padding_mask = F.pad(key_padding_mask, (0, len(extra)))
    source = k.shape[1]
    q = q.view(batch, length, heads, head_dim).transpose(1, 2)
    k = k.view(batch, source, heads, head_dim).transpose(1, 2)
    v = v.view(batch, source, heads, head_dim).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(head_dim))
    if attn_mask is None and a["is_causal"]:
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=q.device).triu(1)
    mask = None
    if attn_mask is not None:
        shape = (1, 1) if attn_mask.ndim == 2 else (batch, heads)
        mask = _additive(attn_mask, q).view(*shape, length, source)
    if key_padding_mask is not None:
        padding = _additive(key_padding_mask, q).view(batch, 1, 1, source)
        mask = padding if mask is None else mask + padding
    if mask is not None:
        scores = _masked(scores, mask)
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, embed)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"]).transpose(0, 1)
    if not a["need_weights"]:
        return out, None
    return out, weights.mean(dim=1) if a["average_attn_weights"] else weights


def multi_head_attention(call) -> tuple[Tensor, Tensor | None]:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``), unbatched or batched."""
    a = {n: call.arg(i, n, _MHA_DEFAULTS.get(n)) for i, n in enumerate(_MHA_ARGS)}
    _no_dropout(call, a["dropout_p"] if a["training"] else 0.0)
    if a["static_k"] is not None or a["static_v"] is not None:
        raise UnsupportedLayerError(
            f"The attention in {call.where()} uses static keys or values (static_k, "
            "static_v); lrp_tutor explains attention over the model's own keys and values."
        )
    unbatched = a["query"].ndim == 2
    if unbatched:
        for n in ("query", "key", "value"):
            a[n] = a[n].unsqueeze(1)
        if a["key_padding_mask"] is not None:
            a["key_padding_mask"] = a["key_padding_mask"].unsqueeze(0)
    out, weights = call.session.expand(_mha, a)
    if unbatched:
        out = call.session.expand(torch.squeeze, out, 1)
        if weights is not None:
            weights = weights.squeeze(0)
    return out, weights


def treat(call):
    """The fused attention functions, by name."""
    if getattr(call.func, "__name__", "") == "multi_head_attention_forward":
        return multi_head_attention(call)
    return scaled_dot_product_attention(call)


SOFTMAX = ("softmax",)
SDPA = ("scaled_dot_product_attention",)
MHA = ("multi_head_attention_forward",)
