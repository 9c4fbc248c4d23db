r"""BatchNorm as an affine map: what the engine merges into the linear layer below it.

A BatchNorm in eval mode is an affine map per channel,
:math:`y = \gamma (z - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta = \lambda z + \text{shift}`,
so a linear layer followed by it is one layer with the weights and bias

.. math::

    w'_{ij} = \lambda_j w_{ij}, \quad b'_j = \lambda_j b_j + \text{shift}_j, \quad
    \lambda_j = \gamma_j / \sqrt{\sigma_j^2 + \epsilon}, \quad
    \text{shift}_j = \beta_j - \lambda_j \mu_j,

which the explanation uses in place of the two (Zennit's canonizer). The engine finds the
pair from the operations themselves (:mod:`lrp_tutor.fast.families.linear`): a BatchNorm
applied to a linear layer's output on its channels. New tensors are computed; the model's
parameters and buffers are never edited.

Examples
--------
>>> import torch
>>> from torch import nn
>>> lin, bn = nn.Linear(2, 1), nn.BatchNorm1d(1).eval()
>>> w, b = merge_batchnorm(lin, bn, "0")
>>> x = torch.randn(4, 2)
>>> bool(torch.allclose(bn(lin(x)), x @ w.T + b))
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UnsupportedLayerError

__all__ = ["scale_and_shift", "merge_batchnorm"]


@torch.no_grad()
def scale_and_shift(
    mean: Tensor, var: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> tuple[Tensor, Tensor]:
    r"""The per-channel scale :math:`\lambda = \gamma/\sqrt{\sigma^2+\epsilon}` and shift
    :math:`\beta - \lambda\mu` of a BatchNorm in eval mode.

    >>> scale_and_shift(torch.tensor([1.0]), torch.tensor([4.0]), None, None, 0.0)
    (tensor([0.5000]), tensor([-0.5000]))
    """
    scale = (var.detach() + eps).rsqrt()
    if weight is not None:
        scale = scale * weight.detach()
    shift = -mean.detach() * scale
    if bias is not None:
        shift = shift + bias.detach()
    return scale, shift


def merge_batchnorm(layer: nn.Module, bn: nn.Module, name: str) -> tuple[Tensor, Tensor]:
    r"""The weight :math:`w'_{ij} = \lambda_j w_{ij}` and bias :math:`b'` of ``bn ∘ layer``
    (a Linear or a convolution followed by a BatchNorm with running statistics)."""
    if not bn.track_running_stats or bn.running_mean is None:
        raise UnsupportedLayerError(
            f"BatchNorm '{name}' ({bn}) has no running statistics (track_running_stats=False), "
            "so it normalises with batch statistics even in eval mode."
        )
    scale, shift = scale_and_shift(bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)
    weight = layer.weight.detach()
    bias = shift if layer.bias is None else torch.addcmul(shift, layer.bias.detach(), scale)
    return weight * scale.view((-1,) + (1,) * (weight.ndim - 1)), bias
