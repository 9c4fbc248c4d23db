r"""Modules for the operations between layers that LRP must see: residual sums, concatenation.

An addition written as ``x + y`` inside a model's ``forward`` is invisible to the layers
around it, so a gradient would pass the same relevance to both summands and relevance would
double. Put the addition into a :class:`Sum` module and :func:`lrp_tutor.fast.explain` splits
the relevance of each output neuron between the summands in proportion to what they
contributed, as if the sum were a layer with all weights 1 and no bias:

.. math::

    z_j = a_j + b_j, \qquad R_{a_j} = \frac{a_j}{\mathrm{stab}(z_j)} R_j, \qquad
    R_{b_j} = \frac{b_j}{\mathrm{stab}(z_j)} R_j .

Outside :func:`~lrp_tutor.fast.explain` both modules compute what their names say.

Examples
--------
>>> import torch
>>> Sum()(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]))
tensor([4., 6.])
>>> Concat(dim=0)(torch.tensor([1.0]), torch.tensor([2.0, 3.0]))
tensor([1., 2., 3.])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Sum", "Concat", "Product"]


def _as_tensors(tensors: tuple) -> tuple[Tensor, ...]:
    if len(tensors) == 1 and isinstance(tensors[0], list | tuple):
        return tuple(tensors[0])
    return tuple(tensors)


class Sum(nn.Module):
    r"""The element-wise sum of its inputs, :math:`z_j = \sum_k a^{(k)}_j` (a residual join).

    Use it instead of ``+`` where two branches meet, e.g. ``out = self.add(out, identity)``.
    All inputs must have the same shape.
    """

    def forward(self, *tensors: Tensor) -> Tensor:
        tensors = _as_tensors(tensors)
        if len(tensors) < 2:
            raise TypeError("Sum needs at least two tensors to add.")
        out = tensors[0] + tensors[1]
        for t in tensors[2:]:
            out = out + t
        return out


class Concat(nn.Module):
    """``torch.cat(tensors, dim)``: relevance is split back along ``dim``."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *tensors: Tensor) -> Tensor:
        return torch.cat(_as_tensors(tensors), dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Product(nn.Module):
    r"""The product of two activations, :math:`z = a \odot b` (``matmul=True``: :math:`a\,b`).

    The engine explains ``a * b`` and ``a @ b`` of two activations wherever the model's code
    writes them (attention's :math:`QK^\top` and :math:`AV`, a gated MLP) by the uniform
    rule; this module is the type a composite maps to choose that rule's ε
    (``by_type={Product: Epsilon(1e-6)}``), and computes the product when called.
    """

    def __init__(self, matmul: bool = False) -> None:
        super().__init__()
        self.matmul = matmul

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b if self.matmul else a * b

    def extra_repr(self) -> str:
        return f"matmul={self.matmul}"
