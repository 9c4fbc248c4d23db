r"""Layers as linear maps :math:`z_j = \sum_i x_i w_{ij} + b_j`, with their transposes.

The fast path needs three things from every layer that redistributes relevance:

- ``forward(x, rho)``: :math:`\sum_i x_i\,\rho(w_{ij})` for a whole batch (no bias),
- ``transpose(s, rho, x)``: :math:`c_i = \sum_j \rho(w_{ij})\, s_j`, the same map
  transposed (a transposed matmul or convolution — no second forward pass),
- ``bias(rho)``: :math:`\rho(b_j)`, broadcastable to the output.

:class:`DenseMap` is ``nn.Linear``, :class:`ConvMap` is ``nn.Conv1d``/``nn.Conv2d`` (both
possibly with a BatchNorm merged in), :class:`PoolMap` is average pooling, a linear map with
fixed weights :math:`w_{ij} = 1/d_j` over the real (unpadded) inputs of window *j*.

Weight modifiers :math:`\rho` are applied where the layer *has* a weight: to the matrix of a
dense layer, to the kernel of a convolution, to the window weights of a pool; so
``ones_like`` (the flat rule) gives ones over the receptive field and zero elsewhere.

Examples
--------
>>> import torch
>>> from lrp_tutor.rules import identity
>>> m = DenseMap(torch.tensor([[1.0, 2.0]]), torch.tensor([0.5]))
>>> m.forward(torch.tensor([[3.0, 4.0]]), identity)
tensor([[11.]])
>>> m.transpose(torch.tensor([[1.0]]), identity, torch.zeros(1, 2))
tensor([[1., 2.]])
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..errors import RuleError, UnsupportedLayerError
from ..rules import identity, ones_like
from .bookings import per_sample_sum

__all__ = [
    "LinearMap",
    "DenseMap",
    "ConvMap",
    "PoolMap",
    "ScaleMap",
    "FunctionMap",
    "CenteredMap",
    "Scratch",
    "scratch_like",
    "numeric_padding",
]

Rho = Callable[[Any], Any]

CHUNK = 1 << 22
"""Dense weights larger than this many entries are modified in row chunks (bounded memory)."""


_PROBE = (-1e3, -7.0, -1.0, -0.3, -1e-3, 0.0, 1e-3, 0.3, 1.0, 7.0, 1e3)
_HOMOGENEOUS: dict[Rho, bool] = {}


def homogeneous(rho: Rho) -> bool:
    """Whether :math:`\\rho(t w) = t\\rho(w)` for t > 0: as the rule book declares it, else
    checked on a probe and remembered (a modifier of a user's own rule).

    >>> from lrp_tutor.rules import positive, ones_like
    >>> homogeneous(positive), homogeneous(ones_like)
    (True, False)
    """
    declared = getattr(rho, "homogeneous", None)
    if declared is not None:
        return declared
    if rho not in _HOMOGENEOUS:
        w = torch.tensor(_PROBE, dtype=torch.float64)
        try:
            _HOMOGENEOUS[rho] = all(
                bool(torch.allclose(rho(t * w), t * rho(w), rtol=1e-12, atol=0))
                for t in (0.37, 2.9)
            )
        except Exception:  # a modifier that cannot take the probe
            _HOMOGENEOUS[rho] = False
    return _HOMOGENEOUS[rho]


class Scratch:
    r"""Memory that one explanation reuses layer by layer, for what a layer needs only while
    it runs: modified weights :math:`\rho(W)` and the backward pass's temporaries.

    - A layer whose weight is larger than its activations computes :math:`\rho(W)` in its
      forward, uses it and forgets it, and computes it again in its backward: one buffer
      per modifier.
    - Each backward computes :math:`\mathrm{sign}(z_j)` and the ratios
      :math:`s_j = c_p R_j / \mathrm{stab}(z_j)` of its parts, and has done with them
      when it returns: one buffer for the signs, one per part for the ratios.

    Written into these buffers, such tensors cost no fresh memory per layer (on a CPU, fresh
    memory is paid in page faults, about as much as computing the values). Layers run one
    after another, so a buffer is never needed by two layers at once. A buffer grows to the
    largest layer's size and lives as long as the explanation.

    >>> from lrp_tutor.rules import positive
    >>> scratch = Scratch()
    >>> w = torch.tensor([[-1.0, 2.0]])
    >>> scratch.take(positive, w).shape
    torch.Size([1, 2])
    >>> scratch.take("sign", torch.zeros(3)).shape
    torch.Size([3])
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[Hashable, torch.dtype, torch.device], Tensor] = {}

    def take(self, key: Hashable, like: Tensor) -> Tensor:
        """A tensor shaped like ``like`` from buffer ``key`` (a modifier ρ, or a name of a
        temporary); its values are to be overwritten."""
        key = (key, like.dtype, like.device)
        buffer = self._buffers.pop(key, None)
        if buffer is None or buffer.numel() < like.numel():
            buffer = None  # let the smaller one go first
            buffer = like.new_empty(like.numel())
        self._buffers[key] = buffer
        return buffer[: like.numel()].view(like.shape)


def scratch_like(scratch: Scratch | None, key: Hashable, like: Tensor) -> Tensor:
    """:meth:`Scratch.take`, or a fresh tensor like ``like`` where there is no scratch."""
    return torch.empty_like(like) if scratch is None else scratch.take(key, like)


class LinearMap:
    """A layer seen as :math:`z = \\rho(W)^\\top x + \\rho(b)`; subclasses fill in the ops."""

    channel_dim: int = 1
    scratch: Scratch | None = None  # memory for this call's transient tensors
    diagonal: bool = False  # z_j = w_j x_j + b_j: output j sees input j alone

    def forward(self, x: Tensor, rho: Rho) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:  # pragma: no cover
        """:math:`c_i = \\sum_j \\rho(w_{ij}) s_j`, shaped like the layer's input ``x``."""
        raise NotImplementedError

    def bias(self, rho: Rho) -> Tensor | None:
        """:math:`\\rho(b)` as a vector over output channels, or None without a bias."""
        return None

    def release(self, after_forward: bool = False) -> None:
        """Forget what was kept for the backward pass."""

    def stackable(self, rhos: Sequence[Sequence[Rho | None]]) -> bool:
        """Whether :meth:`forward_stacked` can compute the products ``rhos`` at once."""
        return False

    def add_bias(self, z: Tensor, rho: Rho) -> Tensor:
        """:math:`z + \\rho(b)`, the bias broadcast over the output, added into ``z``: a
        product this layer has just computed, no one else's tensor."""
        b = self.bias(rho)
        if b is None:
            return z
        if self.channel_dim == 1 and z.ndim > 2:
            b = b.view(-1, *([1] * (z.ndim - 2)))
        if z.shape[self.channel_dim] != b.shape[0]:  # one z for all j (flat): broadcast
            return z + b
        return z.add_(b)

    def bias_absorbed(self, s: Tensor, rho: Rho, batch: int | None = None) -> Tensor | None:
        """:math:`\\sum_j \\rho(b_j)\\, s_j` per sample (see
        :func:`~lrp_tutor.fast.bookings.per_sample_sum`), or None without a bias."""
        b = self.bias(rho)
        if b is None:
            return None
        if batch is not None and s.shape[0] != batch:  # not batch first: (L, N, E)
            return per_sample_sum(s * b, batch)
        if self.channel_dim == 1:  # (N, C, *spatial)
            per_channel = s.flatten(2).sum(2) if s.ndim > 2 else s
        else:  # (N, *, C)
            per_channel = s.reshape(s.shape[0], -1, s.shape[-1]).sum(1)
        return per_channel @ b


class _Weighted(LinearMap):
    r"""A layer with a weight :math:`W` (and bias), possibly scaled per output channel.

    A merged BatchNorm makes the weight :math:`w'_{ij} = \lambda_j w_{ij}`. Where
    :math:`\rho(\lambda_j w_{ij}) = \lambda_j \rho(w_{ij})` (λ > 0 and ρ positively
    homogeneous: the identity, :math:`w^+`, :math:`w^-`, γ) and the batch's activations are
    smaller than the weight, the scale is applied per output channel, to the outputs rather
    than to the weights: :math:`z = \lambda \odot (\rho(W)^\top x)`,
    :math:`c = \rho(W)(\lambda \odot s)`; otherwise :math:`\rho(W')` is computed once.
    Both give the same numbers; the cheaper one is chosen.
    """

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        scale: Tensor | None,
        activations: int = 0,
        scratch: Scratch | None = None,
    ) -> None:
        self.base, self._bias, self.scale = weight, bias, scale
        self.activations = activations  # entries of this call's input x
        self.scratch = scratch
        self._positive: bool | None = None
        self._kept: dict[Rho, Tensor] = {}  # ρ(W) of this call, shared by forward and backward
        self._biases: dict[Rho, Tensor] = {}
        self._blocks: dict[tuple, Tensor] = {}

    @property
    def transient(self) -> bool:
        """Whether ρ(W) is computed again in the backward pass rather than kept: when the
        weight is larger than the activations, keeping it would cost more memory than the
        layer's input does."""
        return self.base.numel() > self.activations

    def release(self, after_forward: bool = False) -> None:
        """Forget the modified weights of this call: after its backward, and after its
        forward when they are :attr:`transient`."""
        if not after_forward or self.transient:
            self._kept.clear()
            self._blocks.clear()

    stacks: bool = True  # whether the weight can be written as blocks (no groups)

    def stackable(self, rhos: Sequence[Sequence[Rho | None]]) -> bool:
        """Whether one product with the block weight of :meth:`block` is worth it: a weight
        small next to the activations (not :attr:`transient`, at most ``CHUNK`` entries), any
        BatchNorm scale merged into it, and no flat modifier."""
        used = [rho for row in rhos for rho in row if rho is not None]
        return (
            self.stacks
            and not self.transient
            and self.base.numel() <= CHUNK
            and all(rho is not ones_like and not self._on_outputs(rho) for rho in used)
        )

    def block(self, rhos: Sequence[Sequence[Rho | None]]) -> Tensor:
        r"""The weights of several parts *p* and inputs *k* as one matrix (one kernel):
        block (p, k) is :math:`\rho_{pk}(W)`, or zero where part *p* has no term with input *k*.

        Then :math:`[z^1; z^2; \ldots] = B\,[\phi_1(x); \phi_2(x); \ldots]`: every product
        of a signed input in one call, and its transpose too.

        >>> from lrp_tutor.rules import negative, positive
        >>> DenseMap(torch.tensor([[1.0, -2.0]]), None).block([[positive, negative]])
        tensor([[ 1.,  0.,  0., -2.]])
        """
        key = tuple(map(tuple, rhos))
        if key not in self._blocks:
            zero = torch.zeros_like(self.base)
            rows = [
                torch.cat([zero if rho is None else self._rho_weight(rho) for rho in row], 1)
                for row in rhos
            ]
            self._blocks[key] = torch.cat(rows, 0)
        return self._blocks[key]

    def _on_outputs(self, rho: Rho) -> bool:
        """Whether :math:`\\rho(\\lambda W) = \\lambda\\rho(W)`: a positive scale and a
        positively homogeneous ρ (identity, clipping, γ), so the scale can act on outputs,
        and whether that is cheaper: a :attr:`transient` weight, larger than the activations."""
        if self.scale is None or rho is ones_like or not self.transient:
            return False
        if self._positive is None:
            self._positive = bool((self.scale > 0).all())
        return self._positive and homogeneous(rho)

    def _scaled(self, t: Tensor, rho: Rho) -> Tensor:
        """``t`` times the scale along the output channels, where the scale acts on outputs."""
        if not self._on_outputs(rho):
            return t
        dim = self.channel_dim % t.ndim
        return t * self.scale.view((-1,) + (1,) * (t.ndim - 1 - dim))

    def _rho_weight(self, rho: Rho) -> Tensor:
        """:math:`\\rho(W)` if the scale acts on the outputs, else :math:`\\rho(W')`.

        Computed once per call: the backward uses the very tensor the forward used.
        """
        if rho is identity and self.scale is None:
            return self.base
        if rho not in self._kept:
            self._kept[rho] = self._modified(rho, self.base, self.scale)
        return self._kept[rho]

    def _modified(self, rho: Rho, base: Tensor, scale: Tensor | None) -> Tensor:
        """:math:`\\rho(W)` or :math:`\\rho(W')` of ``base`` (rows of the weight) and the
        ``scale`` of those rows; written into :class:`Scratch` when it is transient."""
        if scale is not None and self._on_outputs(rho):
            scale = None  # the scale acts on the outputs
        shape = (-1,) + (1,) * (base.ndim - 1)
        if self.scratch is None or not self.transient or not getattr(rho, "takes_out", False):
            return rho(base if scale is None else base * scale.view(shape))
        out = self.scratch.take(rho, base)
        if scale is not None:
            base = torch.mul(base, scale.view(shape), out=out)
        return rho(base, out=out)

    def bias(self, rho: Rho) -> Tensor | None:
        """:math:`\\rho(b)`, computed once per call."""
        if self._bias is None:
            return None
        if rho not in self._biases:
            self._biases[rho] = rho(self._bias)
        return self._biases[rho]


class DenseMap(_Weighted):
    r"""``nn.Linear``: :math:`z = x\,\rho(W)^\top`, transposed :math:`c = s\,\rho(W)`."""

    channel_dim = -1

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        scale: Tensor | None = None,
        activations: int = 0,
        scratch: Scratch | None = None,
    ) -> None:
        super().__init__(weight, bias, scale, activations, scratch)

    def _chunks(self, rho: Rho):
        """(rows, ρ(W[rows])) in pieces small enough to keep the modified weight's memory low."""
        if rho is identity or self.base.numel() <= CHUNK:
            yield slice(None), self._rho_weight(rho)
            return
        step = max(1, CHUNK // self.base.shape[1])
        for start in range(0, self.base.shape[0], step):
            rows = slice(start, start + step)
            scale = None if self.scale is None else self.scale[rows]
            yield rows, self._modified(rho, self.base[rows], scale)

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        if rho is ones_like:  # every output sees Σ_i x_i
            return x.sum(-1, keepdim=True)
        parts = [F.linear(x, w) for _, w in self._chunks(rho)]
        return self._scaled(parts[0] if len(parts) == 1 else torch.cat(parts, -1), rho)

    def forward_stacked(
        self, xs: Sequence[Tensor], rhos: Sequence[Sequence[Rho | None]]
    ) -> list[Tensor]:
        """:math:`z^p = \\sum_k \\phi_k(x)\\,\\rho_{pk}(W)^\\top` for every part *p*, in one
        product with :meth:`block`."""
        z = F.linear(torch.cat(list(xs), -1), self.block(rhos))
        return list(z.chunk(len(rhos), -1))

    def transpose_stacked(
        self, ss: Sequence[Tensor], rhos: Sequence[Sequence[Rho | None]], x: Tensor
    ) -> list[Tensor]:
        """:math:`c^k = \\sum_p s^p\\,\\rho_{pk}(W)` for every input *k*, in one product."""
        c = torch.cat(list(ss), -1) @ self.block(rhos)
        return list(c.chunk(len(rhos[0]), -1))

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        if rho is ones_like:
            return s.sum(-1, keepdim=True).expand(*s.shape[:-1], x.shape[-1])
        s = self._scaled(s, rho)
        c = None
        for rows, w in self._chunks(rho):
            part = s[..., rows] @ w
            c = part if c is None else c + part
        return c


class ConvMap(_Weighted):
    """A convolution of any dimension (``F.conv1d/2d/3d``, grouped, dilated, strided) or a
    transposed one (``F.conv_transpose1d/2d/3d``), with its transpose: the input gradient
    of the convolution, a transposed convolution — no second forward pass."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int = 1,
        transposed: bool = False,
        output_padding: Sequence[int] | None = None,
        scale: Tensor | None = None,
        activations: int = 0,
        scratch: Scratch | None = None,
    ) -> None:
        super().__init__(weight, bias, scale, activations, scratch)
        self.dims = weight.ndim - 2
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups, self.transposed = groups, transposed
        self.output_padding = tuple(output_padding or (0,) * self.dims)
        self.stacks = groups == 1 and not transposed

    def _conv(self, x: Tensor, w: Tensor, groups: int) -> Tensor:
        if self.transposed:
            return torch.ops.aten.convolution(
                x, w, None, self.stride, self.padding, self.dilation, True,
                self.output_padding, groups,
            )  # fmt: skip
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        return conv(x, w, None, self.stride, self.padding, self.dilation, groups)

    def forward_stacked(
        self, xs: Sequence[Tensor], rhos: Sequence[Sequence[Rho | None]]
    ) -> list[Tensor]:
        """:math:`z^p = \\sum_k \\rho_{pk}(W) \\star \\phi_k(x)` for every part *p*, in one
        convolution with :meth:`block` (the inputs stacked along the channels)."""
        z = self._conv(torch.cat(list(xs), 1), self.block(rhos), 1)
        return list(z.chunk(len(rhos), 1))

    def transpose_stacked(
        self, ss: Sequence[Tensor], rhos: Sequence[Sequence[Rho | None]], x: Tensor
    ) -> list[Tensor]:
        """:math:`c^k` for every input *k*: one transposed convolution of the stacked
        :math:`s^p` with :meth:`block`."""
        w = self.block(rhos)
        like = x.new_empty(1).expand(x.shape[0], w.shape[1], *x.shape[2:])  # its shape only
        c = self._transposed(torch.cat(list(ss), 1), w, like, 1)
        return list(c.chunk(len(rhos[0]), 1))

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        w = self._kernel(rho)
        groups = 1 if self._one_channel(rho) else self.groups
        return self._scaled(self._conv(x, w, groups), rho)

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        w = self._kernel(rho)
        if self._one_channel(rho):  # all output channels alike: add them first
            s = s.sum(1, keepdim=True)
        s = self._scaled(s, rho)
        if s.shape[0] != x.shape[0]:
            s = s.expand(x.shape[0], *s.shape[1:])
        return self._transposed(s, w, x, self.groups)

    def _transposed(self, s: Tensor, w: Tensor, like: Tensor, groups: int) -> Tensor:
        """The transposed map applied to ``s``: the input gradient of the convolution with
        kernel ``w`` at an input shaped like ``like`` (only its shape matters; the real input
        is a little faster than an expanded stand-in, which is copied)."""
        return torch.ops.aten.convolution_backward(
            s.contiguous(),
            like,
            w,
            None,
            self.stride,
            self.padding,
            self.dilation,
            self.transposed,
            self.output_padding,
            groups,
            [True, False, False],
        )[0]

    def _one_channel(self, rho: Rho) -> bool:
        """Flat on an ungrouped convolution: every output channel has the same all-ones kernel,
        so one output channel stands for all."""
        return rho is ones_like and self.groups == 1 and not self.transposed

    def _kernel(self, rho: Rho) -> Tensor:
        if self._one_channel(rho):
            return self.base.new_ones((1, *self.base.shape[1:]))
        return self._rho_weight(rho)


def numeric_padding(
    padding: Any, kernel_size: Sequence[int], dilation: Sequence[int], where: str
) -> tuple[int, ...]:
    """A convolution's padding as numbers per dimension ('valid', 'same', an int or a tuple).

    >>> numeric_padding("same", (3, 5), (1, 1), "conv")
    (1, 2)
    """
    dims = len(kernel_size)
    if padding == "valid":
        return (0,) * dims
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise UnsupportedLayerError(
                f"{where} uses padding='same' with an even kernel, which pads unevenly; give "
                "the padding as numbers instead."
            )
        return tuple(t // 2 for t in total)
    if isinstance(padding, int):
        return (padding,) * dims
    return tuple(padding)


class PoolMap(LinearMap):
    r"""Average pooling as a linear map: :math:`z_j = \sum_{i \in K_j} x_i / d_j`.

    :math:`K_j` are the real inputs of window *j* and :math:`d_j` its divisor. A modified
    weight is :math:`\rho(1/d_j)`, so :math:`\sum_i x_i\rho(w_{ij}) = g_j\,P(x)_j` with
    :math:`g_j = d_j\,\rho(1/d_j)` and :math:`P` the pool itself, and the transpose is
    :math:`P^\top(g \odot s)`.
    """

    def __init__(
        self,
        module: Any,
        input_shape: torch.Size,
        like: Tensor,
        scratch: Scratch | None = None,
        *,
        adaptive: bool,
        dims: int,
    ) -> None:
        # module: the pool's arguments as attributes (kernel_size, stride, padding, ceil_mode,
        # count_include_pad, divisor_override; output_size where adaptive), as nn.AvgPool2d
        self.module, self.scratch = module, scratch
        self.adaptive, self.dims = adaptive, dims
        self.spatial = tuple(input_shape[-self.dims :])
        ones = like.new_ones((1, 1, *self.spatial))
        counts = self._pool2d(_as_2d(ones, self.dims), divisor_one=True)  # |K_j|
        row_sums = self._pool2d(_as_2d(ones, self.dims))  # |K_j| / d_j
        self.divisor = _from_2d(counts / row_sums, self.dims)  # d_j, shape (1, 1, *out)
        self._gains: dict[Rho, Tensor | None] = {}

    def _pool2d(self, x: Tensor, divisor_one: bool = False) -> Tensor:
        m = self.module
        if self.adaptive:
            size = _pair(m.output_size) if self.dims == 2 else (1, *_single(m.output_size))
            size = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(size))
            out = F.adaptive_avg_pool2d(x, size)
            return out * self._window_sizes(x.shape[-2:], size).to(out) if divisor_one else out
        kernel, stride, padding = _pool_args(m, self.dims)
        return F.avg_pool2d(
            x,
            kernel,
            stride,
            padding,
            m.ceil_mode,
            m.count_include_pad,
            1 if divisor_one else getattr(m, "divisor_override", None),
        )

    @staticmethod
    def _window_sizes(spatial: tuple[int, ...], size: tuple[int, ...]) -> Tensor:
        """Window sizes of adaptive pooling: start ⌊jL/O⌋, end ⌈(j+1)L/O⌉ in each dim."""
        lengths = []
        for length, out in zip(spatial, size, strict=True):
            lengths.append(
                torch.tensor(
                    [-((-(j + 1) * length) // out) - (j * length) // out for j in range(out)],
                    dtype=torch.float64,
                )
            )
        return lengths[0][:, None] * lengths[1][None, :]

    def gain(self, rho: Rho) -> Tensor | None:
        """:math:`g_j = d_j\\,\\rho(1/d_j)`; None when it is 1 (ρ the identity)."""
        if rho is identity:
            return None
        if rho not in self._gains:
            d = self.divisor
            self._gains[rho] = d * rho(1.0 / d)
        return self._gains[rho]

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        z = _from_2d(self._pool2d(_as_2d(x, self.dims)), self.dims)
        g = self.gain(rho)
        return z if g is None else z * g

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        g = self.gain(rho)
        u = _as_2d(s if g is None else s * g, self.dims)
        if u.shape[0] != x.shape[0]:
            u = u.expand(x.shape[0], *u.shape[1:])
        like = _as_2d(x, self.dims)
        if self.adaptive:
            c = torch.ops.aten._adaptive_avg_pool2d_backward(u.contiguous(), like)
        else:
            m = self.module
            kernel, stride, padding = _pool_args(m, self.dims)
            c = torch.ops.aten.avg_pool2d_backward(
                u.contiguous(),
                like,
                kernel,
                stride,
                padding,
                m.ceil_mode,
                m.count_include_pad,
                getattr(m, "divisor_override", None),
            )
        return _from_2d(c, self.dims)


def _pool_args(m: nn.Module, dims: int) -> tuple[list[int], list[int], list[int]]:
    if dims == 2:
        return list(_pair(m.kernel_size)), list(_pair(m.stride)), list(_pair(m.padding))
    (k,), (s,), (p,) = (_single(m.kernel_size), _single(m.stride), _single(m.padding))
    return [1, k], [1, s], [0, p]


def _single(v: Any) -> tuple[int]:
    return (v[0],) if isinstance(v, tuple | list) else (v,)


def _as_2d(x: Tensor, dims: int) -> Tensor:
    return x if dims == 2 else x.unsqueeze(-2)


def _from_2d(x: Tensor, dims: int) -> Tensor:
    return x if dims == 2 else x.squeeze(-2)


def _fit(c: Tensor, shape: torch.Size) -> Tensor:
    """``c`` brought to ``shape``: summed over the dimensions a broadcast expanded, expanded
    over those where ``c`` has size 1 (a map's transpose, shaped like its input)."""
    if c.shape == shape:
        return c
    lead = c.ndim - len(shape)
    if lead > 0:
        c = c.sum(tuple(range(lead)))
    dims = tuple(d for d, (a, b) in enumerate(zip(c.shape, shape, strict=True)) if a > 1 == b)
    if dims:
        c = c.sum(dims, keepdim=True)
    return c.expand(shape)


def _gain(rho: Rho, where: str, signed: bool = False) -> float:
    """:math:`\\rho(w)/w` for a map whose weights are all positive and ρ positively
    homogeneous (the identity, :math:`w^+`, γ: ρ(w) = g·w); anything else is refused."""
    if rho is identity:
        return 1.0
    if signed or rho is ones_like or not homogeneous(rho):
        raise RuleError(
            f"{where} is a fixed linear map; it takes rules whose weight modifier scales the "
            "weights (Epsilon, LRP0, Gamma, ZPlus, AlphaBeta), not flat or w²."
        )
    return float(rho(torch.tensor(1.0, dtype=torch.float64)))


class ScaleMap(LinearMap):
    r"""An element-wise affine map :math:`z_j = w_j x_j + b_j` (broadcast): BatchNorm on its
    own, a layer scale, a gate held constant, a constant added (a bias).

    ``weight`` and ``bias`` broadcast against the output (either may be None: 1 and 0).
    A weight with a batch dimension is a per-sample constant (a gate :math:`g(s)` held fixed).

    >>> m = ScaleMap(torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0]))
    >>> m.forward(torch.tensor([[1.0, 3.0]]), identity)
    tensor([[ 2., -3.]])
    >>> m.transpose(torch.tensor([[1.0, 1.0]]), identity, torch.zeros(1, 2))
    tensor([[ 2., -1.]])
    """

    diagonal = True

    def __init__(
        self, weight: Tensor | None, bias: Tensor | None, scratch: Scratch | None = None
    ) -> None:
        self.weight, self._bias, self.scratch = weight, bias, scratch

    def _w(self, rho: Rho, like: Tensor) -> Tensor:
        w = like.new_ones(()) if self.weight is None else self.weight
        return rho(w)

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        return x * self._w(rho, x)

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        return _fit(s * self._w(rho, s), x.shape)

    def bias(self, rho: Rho) -> Tensor | None:
        return None if self._bias is None else rho(self._bias)

    def add_bias(self, z: Tensor, rho: Rho) -> Tensor:
        b = self.bias(rho)
        if b is None:
            return z
        return z.add_(b) if torch.broadcast_shapes(z.shape, b.shape) == z.shape else z + b

    def bias_absorbed(self, s: Tensor, rho: Rho, batch: int | None = None) -> Tensor | None:
        """:math:`\\sum_j b_j s_j` per sample; *s* summed first over the dimensions along which
        *b* is broadcast (a BatchNorm's shift: over the pixels), so that the product is small."""
        b = self.bias(rho)
        if b is None:
            return None
        if b.ndim <= s.ndim and (batch is None or s.shape[0] == batch):  # batch first
            shape = (1,) * (s.ndim - b.ndim) + tuple(b.shape)
            dims = [d for d in range(1, s.ndim) if shape[d] == 1 and s.shape[d] != 1]
            if dims:
                s = s.sum(dims, keepdim=True)
            b = b.reshape(shape)
        return per_sample_sum(s * b, batch)


class FunctionMap(LinearMap):
    r"""A fixed linear map with non-negative weights given as a function, :math:`z = f(x)`:
    a mean or sum over dimensions, pooling in 3-D, bilinear interpolation.

    Its transpose is the vector-Jacobian product :math:`c = J_f^\top s`, by ``transpose``
    where given, else by autograd on ``f``. Weight modifiers that scale positive weights
    (:math:`\rho(w) = g\,w`) scale the map; others are refused.

    >>> m = FunctionMap(lambda t: t.mean(-1, keepdim=True), "mean")
    >>> m.forward(torch.tensor([[1.0, 3.0]]), identity)
    tensor([[2.]])
    >>> m.transpose(torch.tensor([[1.0]]), identity, torch.zeros(1, 2))
    tensor([[0.5000, 0.5000]])
    """

    def __init__(
        self,
        f: Callable[[Tensor], Tensor],
        where: str,
        transpose: Callable[[Tensor, Tensor], Tensor] | None = None,
        scratch: Scratch | None = None,
        signed: bool = False,
    ) -> None:
        self.f, self.where, self._transpose, self.scratch = f, where, transpose, scratch
        self.signed = signed  # weights of both signs: only the identity modifier

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        g = _gain(rho, self.where, self.signed)
        z = self.f(x)
        return z if g == 1 else z * g

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        g = _gain(rho, self.where, self.signed)
        if self._transpose is not None:
            c = self._transpose(s, x)
        else:
            with torch.enable_grad():
                probe = x.detach().requires_grad_(True)
                (c,) = torch.autograd.grad(self.f(probe), probe, s)
        return _fit(c if g == 1 else c * g, x.shape)


class CenteredMap(ScaleMap):
    r"""LayerNorm and GroupNorm with the standard deviation held constant (CP-LRP, AttnLRP):

    .. math::

        z_j = \sum_i x_i \Big(\delta_{ij} - \frac{1}{n}\Big)\frac{w_j}{\sigma} + b_j,
        \qquad c_i = \frac{1}{\sigma}\Big(w_i s_i - \frac{1}{n}\sum_j w_j s_j\Big)

    over the *n* entries that share a mean and σ (the normalised trailing dimensions of
    LayerNorm, a group of channels of GroupNorm). Only unmodified weights (ε-type rules).

    >>> x = torch.tensor([[1.0, 3.0]])
    >>> m = CenteredMap(x, dims=(-1,), groups=None, weight=None, bias=None, eps=0.0)
    >>> m.forward(x, identity)
    tensor([[-1.,  1.]])
    """

    diagonal = False

    def __init__(
        self,
        x: Tensor,
        *,
        dims: tuple[int, ...] | None,
        groups: int | None,
        weight: Tensor | None,
        bias: Tensor | None,
        eps: float,
        scratch: Scratch | None = None,
    ) -> None:
        super().__init__(weight, bias, scratch)
        self.dims, self.groups = dims, groups
        with torch.no_grad():
            var = self._mean(x * x) - self._mean(x) ** 2
            self.sigma = (var.clamp(min=0) + eps).sqrt()  # held constant

    def _grouped(self, t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], self.groups, -1)

    def _mean(self, t: Tensor) -> Tensor:
        """The mean over the entries that share a statistic, broadcastable to ``t``."""
        if self.groups is None:
            return t.mean(self.dims, keepdim=True)
        return self._grouped(t).mean(-1, keepdim=True)

    def _centered(self, t: Tensor) -> Tensor:
        if self.groups is None:
            return (t - self._mean(t)) / self.sigma
        g = self._grouped(t)
        return ((g - g.mean(-1, keepdim=True)) / self.sigma).reshape(t.shape)

    def forward(self, x: Tensor, rho: Rho) -> Tensor:
        if rho is not identity:
            raise RuleError(
                "A normalisation (LayerNorm, GroupNorm) takes ε-type rules only (Epsilon, "
                "LRP0): its weights δ_ij − 1/n are not modified."
            )
        z = self._centered(x)
        return z if self.weight is None else z * self.weight

    def transpose(self, s: Tensor, rho: Rho, x: Tensor) -> Tensor:
        u = s if self.weight is None else s * self.weight
        return _fit(self._centered_t(u), x.shape)

    def _centered_t(self, u: Tensor) -> Tensor:
        # the map is symmetric in i and j up to w: c = (u − mean(u)) / σ
        return self._centered(u)
