r"""The layers of a walkthrough, in numpy float64: what they compute and what they connect.

Every layer is seen as a map from inputs *i* to outputs *j*. Two families:

* **Linear layers** (``Linear``, ``Conv1d``/``Conv2d``, average pooling) compute
  :math:`z_j = \sum_i x_i w_{ij} + b_j`; a rule redistributes their relevance. They offer
  ``apply`` (:math:`\rho(W)^\top \phi(x)`, the forward product with modified weights and inputs)
  and ``transpose`` (:math:`\rho(W) s`, its adjoint), which is all the rule book needs.
* **Routing layers** (element-wise activations, ``MaxPool``, ``Flatten``, ``Dropout``) send
  each :math:`R_j` to fixed inputs: :math:`R_{i \leftarrow j} = w_{ij} R_j` with
  :math:`w_{ij} \in \{0, 1\}` (the input itself, or the max-pool winner).

Every layer can also describe a few output neurons *J* and their receptive fields *I* as a
:class:`View`: the input indices, the weights :math:`w_{ij}` (n_I, n_J) and biases
:math:`b_j`. The stages of the stepper are computed on views.

The weights are copied once, as float64 numpy arrays; the user's module is only read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..composites import ACTIVATIONS
from ..errors import InputError, UnsupportedLayerError
from ._network import Activation
from ._patches import Geometry, floor_equals_ceil

__all__ = ["View", "Layer", "LinearLayer", "RoutingLayer", "make_layer", "ELEMENTWISE"]

ELEMENTWISE: tuple[type[nn.Module], ...] = (*ACTIVATIONS, nn.Identity, Activation)
"""Element-wise activations: relevance passes through them unchanged."""

SUPPORTED = (
    "Linear, Conv1d, Conv2d, AvgPool1d/2d, AdaptiveAvgPool1d/2d, MaxPool1d/2d, Flatten, "
    "Dropout and element-wise activations (ReLU, LeakyReLU, Tanh, Sigmoid, GELU, ELU, Identity…)"
)


@dataclass
class View:
    """Some output neurons *J* of a layer and their receptive fields *I*.

    Attributes
    ----------
    inputs : ndarray of int, shape (n_I,)
        Flat indices of the inputs *i* (−1 for padding, whose :math:`x_i` counts 0).
    outputs : ndarray of int, shape (n_J,)
        Flat indices of the output neurons *j*.
    w_ij : ndarray, shape (n_I, n_J)
        The weight from input *i* to output *j* (0/1 routing weights for routing layers).
    b_j : ndarray, shape (n_J,)
        The biases (0 where the layer has none).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    w_ij: np.ndarray
    b_j: np.ndarray

    def gather(self, values: np.ndarray) -> np.ndarray:
        """``values`` (input-shaped) at the inputs *I*, 0 at padding."""
        flat = values.reshape(-1)
        return np.where(self.inputs >= 0, flat[np.maximum(self.inputs, 0)], 0.0)


class Layer:
    """One layer of the walkthrough (base class).

    Attributes
    ----------
    name : str
        The module's name in the model, e.g. ``"features.0"``.
    module : nn.Module
        The user's module (read, never changed).
    takes_rule : bool
        Whether a rule redistributes its relevance (linear layers) or it routes it.
    """

    takes_rule = False

    def __init__(self, name: str, module: nn.Module) -> None:
        self.name = name
        self.module = module

    @property
    def label(self) -> str:
        """``"<name> (<ClassName>)"``, as in the ledger."""
        return f"{self.name} ({type(self.module).__name__})"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for one sample (no batch dimension)."""
        raise NotImplementedError

    def z(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        """What :math:`\\sum_i z_{ij} + b_j` must equal: the output, or (for element-wise
        activations) the pre-activation."""
        return a

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        """The output neurons ``outputs`` (flat indices) and their receptive fields."""
        raise NotImplementedError

    def default_focus(self, r_out: np.ndarray) -> np.ndarray:
        """The output neurons a stage shows when none is chosen: all of them when there are
        at most 16, otherwise the one with the largest :math:`|R_j|`."""
        if r_out.size <= 16:
            return np.arange(r_out.size)
        return np.array([int(np.argmax(np.abs(r_out.reshape(-1))))])

    def _error(self, message: str) -> InputError:
        return InputError(f"Layer {self.label}: {message}")


# --------------------------------------------------------------------------------------
# Linear layers: a rule redistributes their relevance.


class LinearLayer(Layer):
    """A layer :math:`z_j = \\sum_i x_i w_{ij} + b_j` (dense, convolution, average pooling)."""

    takes_rule = True

    def apply(self, phi_x: np.ndarray, rho: Callable[[Any], Any]) -> np.ndarray:
        """:math:`\\sum_i \\phi(x_i)\\,\\rho(w_{ij})` for every output *j* (no bias)."""
        raise NotImplementedError

    def transpose(self, s: np.ndarray, rho: Callable[[Any], Any], in_shape: tuple) -> np.ndarray:
        """:math:`c_i = \\sum_j \\rho(w_{ij})\\, s_j` for every input *i* (input-shaped)."""
        raise NotImplementedError

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        """:math:`b_j` for every output neuron *j* (zeros when the layer has no bias)."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.apply(x, _identity)
        return z + self.bias_map(z.shape)


def _identity(a: Any) -> Any:
    return a


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    if tensor is None:
        return None
    tensor = tensor.detach().cpu()
    if not tensor.dtype.is_floating_point or tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.to(torch.float64)
    return tensor.numpy().astype(np.float64)  # always a copy


class Dense(LinearLayer):
    """``nn.Linear``: :math:`z_j = \\sum_i x_i w_{ij} + b_j` with ``w_ij`` shaped (n_in, n_out)."""

    def __init__(self, name: str, module: nn.Linear) -> None:
        super().__init__(name, module)
        self.w = _numpy(module.weight).T.copy()  # (n_in, n_out), as in Montavon's tutorial
        bias = _numpy(module.bias)
        self.b = bias if bias is not None else np.zeros(self.w.shape[1])

    def _check(self, x: np.ndarray) -> None:
        if x.shape != (self.w.shape[0],):
            raise self._error(
                f"expects a vector of {self.w.shape[0]} inputs, got shape {x.shape}. "
                "Put nn.Flatten() before it if the input is an image."
            )

    def apply(self, phi_x: np.ndarray, rho: Callable[[Any], Any]) -> np.ndarray:
        self._check(phi_x)
        return phi_x @ rho(self.w)

    def transpose(self, s: np.ndarray, rho: Callable[[Any], Any], in_shape: tuple) -> np.ndarray:
        return rho(self.w) @ s

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        return self.b

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        inputs = np.arange(self.w.shape[0])
        if np.array_equal(outputs, np.arange(self.w.shape[1])):  # all neurons: no copy
            return View(inputs, outputs, self.w, self.b)
        return View(inputs, outputs, self.w[:, outputs], self.b[outputs])

    def default_focus(self, r_out: np.ndarray) -> np.ndarray:
        """All output neurons: a dense layer's messages are one (n_in, n_out) matrix."""
        return np.arange(r_out.size)


class Patch(LinearLayer):
    """Convolutions and average pooling: the same weights on every window of the input.

    The kernel has shape (C_out, C_in / groups, kh, kw). Average pooling is a convolution with
    ``groups = C`` and every weight 1/divisor: a linear layer with fixed weights.
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        kernel: np.ndarray | None,
        bias: np.ndarray | None,
        groups: int,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        padding: tuple[tuple[int, int], tuple[int, int]],
        spatial: int,
    ) -> None:
        super().__init__(name, module)
        self.kernel = kernel
        self.b = bias
        self.groups = groups
        self.stride = stride
        self.dilation = dilation
        self.padding = padding  # ((top, bottom), (left, right))
        self.spatial = spatial  # 1 or 2 spatial dimensions
        self.ceil_mode = False

    def weights(self, in_shape: tuple) -> tuple[np.ndarray, np.ndarray, int]:
        """(kernel, bias, groups) for an input of shape ``in_shape``."""
        bias = self.b if self.b is not None else np.zeros(self.kernel.shape[0])
        return self.kernel, bias, self.groups

    def geometry(self, in_shape: tuple) -> Geometry:
        """Where the windows sit on an input of shape ``in_shape``."""
        if len(in_shape) != self.spatial + 1:
            shape = "(C, L)" if self.spatial == 1 else "(C, H, W)"
            raise self._error(f"expects one sample of shape {shape}, got shape {in_shape}.")
        kernel, _, groups = self.weights(in_shape)
        if in_shape[0] != kernel.shape[1] * groups:
            raise self._error(
                f"expects {kernel.shape[1] * groups} input channels, got {in_shape[0]}."
            )
        try:
            geometry = Geometry.create(
                in_shape, kernel.shape[2:], self.stride, self.dilation, self.padding
            )
        except ValueError as error:
            raise self._error(str(error)) from error
        if self.ceil_mode:
            _check_ceil(self, geometry)
        return geometry

    def _grouped(self, rho: Callable[[Any], Any], in_shape: tuple) -> np.ndarray:
        """ρ(W) as (groups, C_out/groups, C_in/groups·kh·kw)."""
        kernel, _, groups = self.weights(in_shape)
        return rho(kernel).reshape(groups, kernel.shape[0] // groups, -1)

    def apply(self, phi_x: np.ndarray, rho: Callable[[Any], Any]) -> np.ndarray:
        geometry = self.geometry(phi_x.shape)
        w = self._grouped(rho, phi_x.shape)  # (G, C_out/G, K)
        cols = geometry.unfold(geometry.pad(phi_x))  # (C_in, kh·kw, L)
        cols = cols.reshape(w.shape[0], -1, cols.shape[-1])  # (G, K, L)
        z = np.matmul(w, cols)  # (G, C_out/G, L)
        return z.reshape(geometry.out_shape(w.shape[0] * w.shape[1]))

    def transpose(self, s: np.ndarray, rho: Callable[[Any], Any], in_shape: tuple) -> np.ndarray:
        geometry = self.geometry(in_shape)
        w = self._grouped(rho, in_shape)
        s = s.reshape(w.shape[0], w.shape[1], -1)  # (G, C_out/G, L)
        cols = np.matmul(w.transpose(0, 2, 1), s)  # (G, K, L)
        return geometry.fold(cols.reshape(in_shape[0], geometry.window, -1))

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        bias = self.b if self.b is not None else np.zeros(out_shape[0])
        return np.broadcast_to(bias.reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        """One output neuron (c, h, w): its receptive field is a (C_in/groups, kh, kw) window."""
        if outputs.size != 1:
            raise self._error("a convolution or pooling view shows one output neuron at a time.")
        geometry = self.geometry(x.shape)
        kernel, bias, groups = self.weights(x.shape)
        channel, position = divmod(int(outputs[0]), int(np.prod(geometry.out_hw)))
        per_group = kernel.shape[1]
        group = channel // (kernel.shape[0] // groups)
        channels = np.arange(group * per_group, (group + 1) * per_group)
        inputs = geometry.field(position, channels)
        return View(inputs, outputs, kernel[channel].reshape(-1, 1), bias[[channel]])

    def default_focus(self, r_out: np.ndarray) -> np.ndarray:
        return np.array([int(np.argmax(np.abs(r_out.reshape(-1))))])


def _conv(name: str, module: nn.Conv1d | nn.Conv2d) -> Patch:
    spatial = 1 if isinstance(module, nn.Conv1d) else 2
    if module.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"Layer {name} ({type(module).__name__}) uses padding_mode={module.padding_mode!r}; "
            "the stepper supports zero padding only (padding_mode='zeros')."
        )
    kernel = _numpy(module.weight)
    if spatial == 1:
        kernel = kernel[:, :, None, :]
    dilation = _lift(module.dilation, spatial)
    if module.padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel.shape[2:], dilation, strict=True)]
        padding = tuple((t // 2, t - t // 2) for t in totals)
    elif module.padding == "valid":
        padding = ((0, 0), (0, 0))
    else:
        p = _lift_padding(module.padding, spatial)
        padding = ((p[0], p[0]), (p[1], p[1]))
    stride = _lift(module.stride, spatial)
    bias = _numpy(module.bias)
    return Patch(name, module, kernel, bias, module.groups, stride, dilation, padding, spatial)


def _lift(value: Any, spatial: int) -> tuple[int, int]:
    """A 1-D layer's k or (k,) as the 2-D (1, k); a 2-D layer's k as (k, k)."""
    if spatial == 1:
        return 1, value if isinstance(value, int) else value[0]
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _lift_padding(value: Any, spatial: int) -> tuple[int, int]:
    """Padding as (height, width); a 1-D layer's (p,) becomes (0, p)."""
    if spatial == 1:
        return 0, value if isinstance(value, int) else value[0]
    return _lift(value, spatial)


class AveragePool(Patch):
    """Average pooling as a per-channel convolution (groups = C) with every weight 1/divisor;
    the number of channels is known only when the input arrives."""

    def __init__(self, name: str, module: nn.Module) -> None:
        spatial = 1 if isinstance(module, nn.AvgPool1d | nn.AdaptiveAvgPool1d) else 2
        super().__init__(name, module, None, None, 1, (1, 1), (1, 1), ((0, 0), (0, 0)), spatial)
        if isinstance(module, nn.AvgPool1d | nn.AvgPool2d):
            self.size = _lift(module.kernel_size, spatial)
            stride = module.stride if module.stride not in (None, ()) else module.kernel_size
            self.stride = _lift(stride, spatial)
            pad = _lift_padding(module.padding, spatial)
            self.padding = ((pad[0], pad[0]), (pad[1], pad[1]))
            if pad != (0, 0) and not module.count_include_pad:
                raise UnsupportedLayerError(
                    f"Layer {self.label}: count_include_pad=False with padding gives the border "
                    "windows other weights; the stepper supports count_include_pad=True or "
                    "padding=0."
                )
            self.divisor = getattr(module, "divisor_override", None) or self.size[0] * self.size[1]
            self.ceil_mode = bool(module.ceil_mode)

    def _adapt(self, in_shape: tuple) -> None:
        """Adaptive pooling: kernel = stride = input size / output size, where that divides."""
        size = (1, in_shape[-1]) if self.spatial == 1 else tuple(in_shape[-2:])
        out = _lift(self.module.output_size, self.spatial)
        out = tuple(s if o is None else o for s, o in zip(size, out, strict=True))
        if any(s % o for s, o in zip(size, out, strict=True)):
            raise UnsupportedLayerError(
                f"Layer {self.label}: the input size {size[2 - self.spatial :]} is not a "
                f"multiple of the output size {out[2 - self.spatial :]}; the stepper supports "
                "adaptive pooling only where it is a plain average pooling (use nn.AvgPool2d)."
            )
        self.size = self.stride = tuple(s // o for s, o in zip(size, out, strict=True))
        self.divisor = self.size[0] * self.size[1]

    def weights(self, in_shape: tuple) -> tuple[np.ndarray, np.ndarray, int]:
        if len(in_shape) != self.spatial + 1:
            shape = "(C, L)" if self.spatial == 1 else "(C, H, W)"
            raise self._error(f"expects one sample of shape {shape}, got shape {in_shape}.")
        if isinstance(self.module, nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d):
            self._adapt(in_shape)
        channels = in_shape[0]
        kernel = np.full((channels, 1, *self.size), 1.0 / self.divisor)
        return kernel, np.zeros(channels), channels


def _check_ceil(layer: Layer, geometry: Geometry) -> None:
    for axis in range(2):
        size, k = geometry.in_hw[axis], geometry.kernel[axis]
        s, d, p = geometry.stride[axis], geometry.dilation[axis], geometry.padding[axis][0]
        if not floor_equals_ceil(size, k, s, p, d):
            raise UnsupportedLayerError(
                f"Layer {layer.label}: ceil_mode=True adds a partial window at the border for "
                "this input size; the stepper supports ceil_mode=False (or input sizes where it "
                "makes no difference)."
            )


# --------------------------------------------------------------------------------------
# Routing layers: relevance goes to fixed inputs, nothing is absorbed.


class RoutingLayer(Layer):
    """A layer that sends each :math:`R_j` to fixed inputs:
    :math:`R_{i \\leftarrow j} = w_{ij} R_j`."""

    def route(self, x: np.ndarray, r_out: np.ndarray) -> np.ndarray:
        """:math:`R_i = \\sum_j w_{ij} R_j` (input-shaped)."""
        return r_out.reshape(x.shape).copy()

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        """Output *j* is connected to input *i = j* only (:math:`w_{ij} = \\delta_{ij}`)."""
        return View(outputs.copy(), outputs, np.eye(outputs.size), np.zeros(outputs.size))


class Elementwise(RoutingLayer):
    """An element-wise activation :math:`a_j = g(z_j)`, :math:`z_j = x_j`: relevance passes."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        module = self.module
        with torch.no_grad():
            if isinstance(module, Activation):
                out = _call_function(module.fn, x)
            else:  # .forward skips the user's hooks; the tensor is our own copy (inplace-safe)
                out = module.forward(torch.tensor(x)).detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.shape != x.shape:
            raise UnsupportedLayerError(
                f"Layer {self.label} changed the shape {x.shape} → {out.shape}; only element-wise "
                "activations are supported."
            )
        return out

    def z(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        return x


def _call_function(fn: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
    try:
        out = fn(x.copy())
    except (TypeError, AttributeError, RuntimeError):
        out = None
    if isinstance(out, np.ndarray) and out.shape == x.shape:
        return out
    out = fn(torch.tensor(x))
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


class Reshape(RoutingLayer):
    """``Flatten`` (and ``Dropout``, the identity at evaluation): relevance is reshaped."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        module = self.module
        if isinstance(module, nn.Flatten):
            batched = np.empty((1, *x.shape))
            start = module.start_dim
            if start == 0 or start == -batched.ndim:
                raise UnsupportedLayerError(
                    f"Layer {self.label} flattens the batch dimension (start_dim=0); the stepper "
                    "needs start_dim ≥ 1."
                )
            shape = torch.empty(batched.shape, device="meta").flatten(start, module.end_dim).shape
            return x.reshape(shape[1:])
        return x.copy()


class MaxPool(RoutingLayer):
    """Max pooling: all relevance of an output goes to its winner, the arg-max of its window
    (ties: the first in the window, as PyTorch's max-pool gradient)."""

    def __init__(self, name: str, module: nn.MaxPool1d | nn.MaxPool2d) -> None:
        super().__init__(name, module)
        if module.return_indices:
            raise UnsupportedLayerError(
                f"Layer {self.label} returns indices; use return_indices=False."
            )
        spatial = 1 if isinstance(module, nn.MaxPool1d) else 2
        self.spatial = spatial
        self.kernel = _lift(module.kernel_size, spatial)
        stride = module.stride if module.stride not in (None, ()) else module.kernel_size
        self.stride = _lift(stride, spatial)
        self.dilation = _lift(module.dilation, spatial)
        pad = _lift_padding(module.padding, spatial)
        self.padding = ((pad[0], pad[0]), (pad[1], pad[1]))

    def geometry(self, in_shape: tuple) -> Geometry:
        if len(in_shape) != self.spatial + 1:
            shape = "(C, L)" if self.spatial == 1 else "(C, H, W)"
            raise self._error(f"expects one sample of shape {shape}, got shape {in_shape}.")
        try:
            geometry = Geometry.create(
                in_shape, self.kernel, self.stride, self.dilation, self.padding
            )
        except ValueError as error:
            raise self._error(str(error)) from error
        if self.module.ceil_mode:
            _check_ceil(self, geometry)
        if any(p > k // 2 for (p, _), k in zip(self.padding, self.kernel, strict=True)):
            raise self._error("padding must be at most half the kernel size (as in PyTorch).")
        return geometry

    def winners(self, x: np.ndarray) -> np.ndarray:
        """Flat input index of the winner of every output neuron (output-shaped)."""
        geometry = self.geometry(x.shape)
        cols = geometry.unfold(geometry.pad(x, value=-np.inf))  # (C, kh·kw, L)
        tap = np.argmax(cols, axis=1)  # the first maximum in the window, as torch picks
        ki, kj = np.divmod(tap, self.kernel[1])
        ho, wo = np.divmod(np.arange(tap.shape[1]), geometry.out_hw[1])
        (top, _), (left, _) = self.padding
        h, w = geometry.in_hw
        rows = ho * self.stride[0] + ki * self.dilation[0] - top
        cols_ = wo * self.stride[1] + kj * self.dilation[1] - left
        channel = np.arange(tap.shape[0])[:, None]
        return ((channel * h + rows) * w + cols_).reshape(geometry.out_shape(x.shape[0]))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1)[self.winners(x)]

    def route(self, x: np.ndarray, r_out: np.ndarray) -> np.ndarray:
        winners = self.winners(x).reshape(-1)
        r_in = np.bincount(winners, weights=r_out.reshape(-1), minlength=x.size)
        return r_in.reshape(x.shape)

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        """One output neuron: its window, with :math:`w_{ij} = 1` for the winner, else 0."""
        if outputs.size != 1:
            raise self._error("a max-pooling view shows one output neuron at a time.")
        geometry = self.geometry(x.shape)
        channel, position = divmod(int(outputs[0]), int(np.prod(geometry.out_hw)))
        inputs = geometry.field(position, np.array([channel]))
        winner = self.winners(x).reshape(-1)[outputs[0]]
        w_ij = (inputs == winner).astype(np.float64).reshape(-1, 1)
        return View(inputs, outputs, w_ij, np.zeros(1))

    def default_focus(self, r_out: np.ndarray) -> np.ndarray:
        return np.array([int(np.argmax(np.abs(r_out.reshape(-1))))])


# --------------------------------------------------------------------------------------


def make_layer(name: str, module: nn.Module) -> Layer:
    """The walkthrough layer for ``module``, or :class:`UnsupportedLayerError` saying what to do."""
    if isinstance(module, nn.Linear):
        return Dense(name, module)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return _conv(name, module)
    if isinstance(
        module, nn.AvgPool1d | nn.AvgPool2d | nn.AdaptiveAvgPool1d | nn.AdaptiveAvgPool2d
    ):
        return AveragePool(name, module)
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
        return MaxPool(name, module)
    if isinstance(module, ELEMENTWISE):
        return Elementwise(name, module)
    if isinstance(module, nn.Flatten | nn.Dropout | nn.Dropout1d | nn.Dropout2d):
        return Reshape(name, module)
    raise UnsupportedLayerError(_unsupported_message(name, module))


def _unsupported_message(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    hint = "Replace it by supported layers, or explain the model with lt.explain (the fast path)."
    if isinstance(module, nn.Softmax | nn.LogSoftmax):
        hint = "LRP explains logits: leave the final softmax out of the model you explain."
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        hint = (
            "Merge it into the layer before it (torch.nn.utils.fusion.fuse_conv_bn_eval, or "
            "lt.explain, whose canonizer does that)."
        )
    elif isinstance(module, nn.Conv3d | nn.ConvTranspose1d | nn.ConvTranspose2d):
        hint = "The stepper knows Conv1d and Conv2d; use lt.explain for other convolutions."
    elif list(module.children()):
        hint = (
            "The stepper walks an nn.Sequential of layers; write this block as nn.Sequential "
            "(residual blocks are not supported by the stepper; use lt.explain)."
        )
    return f"Layer {name} ({kind}) is not supported by the stepper. It supports {SUPPORTED}. {hint}"
