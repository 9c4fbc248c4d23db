r"""Receptive fields of convolution and pooling layers: padding, im2col and its inverse.

A convolution (or a pooling layer) computes every output neuron *j* = (c, h, w) from a
small window of its input, its **receptive field**. Written out as a matrix of windows
("im2col"), the layer becomes an ordinary matrix product, so that the same formulas as for
a dense layer apply:

.. math::

    z_j = \sum_{i \in \mathrm{field}(j)} x_i\, w_{ij} + b_j .

1-D layers (``Conv1d``, ``AvgPool1d``, ``MaxPool1d``) are handled as 2-D layers of height 1.

Examples
--------
>>> import numpy as np
>>> g = Geometry.create((1, 3, 3), kernel=(2, 2), stride=(1, 1), dilation=(1, 1),
...                     padding=((0, 0), (0, 0)))
>>> g.out_shape(2)
(2, 2, 2)
>>> g.unfold(np.arange(9.0).reshape(1, 3, 3))[0, :, 0]  # the window of output (0, 0)
array([0., 1., 3., 4.])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Pair = tuple[int, int]


@dataclass(frozen=True)
class Geometry:
    """Where the windows of a convolution or pooling layer sit on its input.

    Attributes
    ----------
    in_shape : tuple
        The per-sample input shape as the layer sees it, (C, H, W) or (C, L).
    kernel, stride, dilation : (int, int)
        Height and width of the kernel, the step between windows and between kernel taps.
    padding : ((top, bottom), (left, right))
        Zeros (or −∞ for max-pooling) added around the input.
    """

    in_shape: tuple[int, ...]
    kernel: Pair
    stride: Pair
    dilation: Pair
    padding: tuple[Pair, Pair]

    @classmethod
    def create(
        cls,
        in_shape: tuple[int, ...],
        kernel: Pair,
        stride: Pair,
        dilation: Pair,
        padding: tuple[Pair, Pair],
    ) -> Geometry:
        """A geometry, checking that at least one window fits into the padded input."""
        geometry = cls(tuple(in_shape), kernel, stride, dilation, padding)
        if min(geometry.out_hw) < 1:
            raise ValueError(
                f"the input {tuple(in_shape)} is too small for kernel {kernel} with dilation "
                f"{dilation} and padding {padding}"
            )
        return geometry

    @property
    def channels(self) -> int:
        return self.in_shape[0]

    @property
    def in_hw(self) -> Pair:
        """Height and width of the input (height 1 for 1-D layers)."""
        if len(self.in_shape) == 2:
            return 1, self.in_shape[1]
        return self.in_shape[1], self.in_shape[2]

    @property
    def padded_hw(self) -> Pair:
        (top, bottom), (left, right) = self.padding
        h, w = self.in_hw
        return h + top + bottom, w + left + right

    @property
    def out_hw(self) -> Pair:
        """Output height and width: ⌊(padded − dilation·(kernel − 1) − 1) / stride⌋ + 1."""
        return tuple(
            (p - d * (k - 1) - 1) // s + 1
            for p, d, k, s in zip(
                self.padded_hw, self.dilation, self.kernel, self.stride, strict=True
            )
        )  # type: ignore[return-value]

    @property
    def window(self) -> int:
        """Number of kernel taps per channel, kh·kw."""
        return self.kernel[0] * self.kernel[1]

    def out_shape(self, channels: int) -> tuple[int, ...]:
        """The per-sample output shape for ``channels`` output channels (2-D or 1-D)."""
        ho, wo = self.out_hw
        if len(self.in_shape) == 2:
            return (channels, wo)
        return (channels, ho, wo)

    def pad(self, x: np.ndarray, value: float = 0.0) -> np.ndarray:
        """The input (C, H, W) or (C, L) as a padded (C, H', W') array."""
        (top, bottom), (left, right) = self.padding
        x = x.reshape((self.channels, *self.in_hw))
        return np.pad(x, ((0, 0), (top, bottom), (left, right)), constant_values=value)

    def _slices(self, ki: int, kj: int) -> tuple[slice, slice]:
        """The input positions that kernel tap (ki, kj) sees, one per output position."""
        (sh, sw), (dh, dw), (ho, wo) = self.stride, self.dilation, self.out_hw
        h0, w0 = ki * dh, kj * dw
        return slice(h0, h0 + sh * (ho - 1) + 1, sh), slice(w0, w0 + sw * (wo - 1) + 1, sw)

    def unfold(self, padded: np.ndarray) -> np.ndarray:
        """im2col: (C, H', W') → windows (C, kh·kw, L), one column per output position."""
        kh, kw = self.kernel
        ho, wo = self.out_hw
        cols = np.empty((padded.shape[0], kh, kw, ho, wo), dtype=padded.dtype)
        for ki in range(kh):
            for kj in range(kw):
                rows, columns = self._slices(ki, kj)
                cols[:, ki, kj] = padded[:, rows, columns]
        return cols.reshape(padded.shape[0], kh * kw, ho * wo)

    def fold(self, cols: np.ndarray) -> np.ndarray:
        """col2im, the transpose of :meth:`unfold`: windows (C, kh·kw, L) are added back onto
        the input grid, overlaps summed, padding cropped; returns the input shape."""
        kh, kw = self.kernel
        ho, wo = self.out_hw
        cols = cols.reshape(cols.shape[0], kh, kw, ho, wo)
        padded = np.zeros((cols.shape[0], *self.padded_hw))
        for ki in range(kh):
            for kj in range(kw):
                rows, columns = self._slices(ki, kj)
                padded[:, rows, columns] += cols[:, ki, kj]
        (top, _), (left, _) = self.padding
        h, w = self.in_hw
        return padded[:, top : top + h, left : left + w].reshape(self.in_shape)

    def field(self, position: int, channels: np.ndarray) -> np.ndarray:
        """Flat input indices of the receptive field of output position ``position`` (flat
        over (H_out, W_out)) in the given input channels, ordered (channel, ki, kj) like the
        kernel; −1 marks padding."""
        ho, wo = divmod(position, self.out_hw[1])
        (sh, sw), (dh, dw) = self.stride, self.dilation
        (top, _), (left, _) = self.padding
        h, w = self.in_hw
        rows = ho * sh + dh * np.arange(self.kernel[0]) - top
        cols = wo * sw + dw * np.arange(self.kernel[1]) - left
        inside = (rows[:, None] >= 0) & (rows[:, None] < h) & (cols >= 0) & (cols < w)
        flat = (channels[:, None, None] * h + rows[:, None]) * w + cols
        return np.where(inside, flat, -1).reshape(-1)


def floor_equals_ceil(size: int, kernel: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether ``ceil_mode=True`` gives the same output length as ``ceil_mode=False``
    (PyTorch's formula: a last window must start inside the input or the left padding)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    floor = span // stride + 1
    ceil = -(-span // stride) + 1
    if (ceil - 1) * stride >= size + padding:
        ceil -= 1
    return floor == ceil
