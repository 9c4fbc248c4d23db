r"""Canonizers: see a model as the plain layers LRP has rules for, without touching it.

**BatchNorm merge.** A BatchNorm in eval mode right after a Linear/Conv layer is an affine
map per channel, :math:`y = \gamma (z - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta`, so the
pair is one layer with the weights and bias

.. math::

    w'_{ij} = \lambda_j w_{ij}, \quad b'_j = \lambda_j (b_j - \mu_j) + \beta_j, \quad
    \lambda_j = \gamma_j / \sqrt{\sigma_j^2 + \epsilon},

which the explanation uses in place of the two. New tensors are computed; the model's
parameters and buffers are never edited.

**Residual blocks.** A torchvision ``BasicBlock``/``Bottleneck`` (attributes ``conv1``,
``bn1``, ``conv2``, ``bn2``, optionally ``conv3``, ``bn3``, ``relu``, ``downsample``)
ends with ``out += identity; out = relu(out)``: an addition no gradient can split. The
fast path explains such a block as if it ended with ``relu(Sum()(out, identity))``, after
checking, on the autograd graph of the actual forward, that it does.

Examples
--------
>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
>>> pairs = batchnorm_pairs(net)
>>> [(type(bn).__name__, type(layer).__name__) for bn, layer in pairs.items()]
[('BatchNorm2d', 'Conv2d')]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import UnsupportedLayerError
from .modules import Sum

__all__ = [
    "BATCHNORMS",
    "batchnorm_pairs",
    "merge_batchnorm",
    "batchnorm_affine",
    "ResidualBlock",
    "residual_blocks",
]

BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)

_FITS = {
    nn.Linear: (nn.BatchNorm1d, "out_features"),
    nn.Conv1d: (nn.BatchNorm1d, "out_channels"),
    nn.Conv2d: (nn.BatchNorm2d, "out_channels"),
}


def _fits(layer: nn.Module, bn: nn.Module) -> bool:
    for kind, (bn_kind, width) in _FITS.items():
        if type(layer) is kind or isinstance(layer, kind):
            return isinstance(bn, bn_kind) and getattr(layer, width) == bn.num_features
    return False


def batchnorm_pairs(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """``{batchnorm: layer}`` for every BatchNorm registered right after a fitting layer.

    "Right after" means the next child of the same parent (``nn.Sequential(conv, bn)``, or
    ``self.conv1 = …; self.bn1 = …`` in a block). Whether the BatchNorm really receives that
    layer's output is checked when the model runs.
    """
    pairs: dict[nn.Module, nn.Module] = {}
    for parent in model.modules():
        children = list(parent.children())
        for layer, bn in zip(children, children[1:], strict=False):
            if isinstance(bn, BATCHNORMS) and _fits(layer, bn):
                pairs[bn] = layer
    return pairs


@torch.no_grad()
def batchnorm_affine(layer: nn.Module, bn: nn.Module, name: str) -> tuple[Tensor, Tensor]:
    r"""The per-channel scale :math:`\lambda` and the bias :math:`b'` of ``bn ∘ layer``.

    >>> lin, bn = nn.Linear(2, 1), nn.BatchNorm1d(1).eval()
    >>> scale, bias = batchnorm_affine(lin, bn, "0")
    >>> x = torch.randn(4, 2)
    >>> bool(torch.allclose(bn(lin(x)), (x @ lin.weight.T) * scale + bias))
    True
    """
    if not bn.track_running_stats or bn.running_mean is None:
        raise UnsupportedLayerError(
            f"BatchNorm '{name}' ({bn}) has no running statistics (track_running_stats=False), "
            "so it normalises with batch statistics even in eval mode and cannot be merged "
            "into the layer before it."
        )
    weight = layer.weight.detach()
    scale = (bn.running_var.to(weight) + bn.eps).rsqrt_()  # λ = γ / sqrt(var + eps):
    if bn.weight is not None:
        scale.mul_(bn.weight.detach())
    mean = bn.running_mean.to(weight)
    shift = mean.neg() if layer.bias is None else layer.bias.detach() - mean
    if bn.bias is None:
        return scale, shift.mul_(scale)  # b' = (b − mean) λ
    return scale, torch.addcmul(bn.bias.detach(), shift, scale)  # b' = (b − mean) λ + β


def merge_batchnorm(layer: nn.Module, bn: nn.Module, name: str) -> tuple[Tensor, Tensor]:
    r"""The weight :math:`w'_{ij} = \lambda_j w_{ij}` and bias :math:`b'` of ``bn ∘ layer``.

    >>> lin, bn = nn.Linear(2, 1), nn.BatchNorm1d(1).eval()
    >>> w, b = merge_batchnorm(lin, bn, "0")
    >>> x = torch.randn(4, 2)
    >>> bool(torch.allclose(bn(lin(x)), x @ w.T + b))
    True
    """
    scale, bias = batchnorm_affine(layer, bn, name)
    weight = layer.weight.detach()
    return weight * scale.view((-1,) + (1,) * (weight.ndim - 1)), bias


@dataclass(frozen=True)
class ResidualBlock:
    """A recognised torchvision-style block: its last BatchNorm, activation and shortcut."""

    last_bn: nn.Module
    relu: nn.Module
    downsample: nn.Module | None


def residual_blocks(
    model: nn.Module, pairs: dict[nn.Module, nn.Module]
) -> dict[nn.Module, ResidualBlock]:
    """Every module shaped like torchvision's ``BasicBlock`` or ``Bottleneck``.

    A block has ``conv1``, ``bn1``, ``conv2``, ``bn2`` (and for a bottleneck ``conv3``,
    ``bn3``), an activation module ``relu`` and an attribute ``downsample`` (None or a
    module); its last BatchNorm follows its last conv. Blocks that already use a
    :class:`~lrp_tutor.fast.Sum` are left alone.
    """
    blocks: dict[nn.Module, ResidualBlock] = {}
    for module in model.modules():
        if not all(hasattr(module, a) for a in ("conv1", "bn1", "conv2", "bn2", "downsample")):
            continue
        if not isinstance(getattr(module, "relu", None), nn.Module):
            continue
        if any(isinstance(m, Sum) for m in module.modules()):
            continue
        last = "3" if isinstance(getattr(module, "bn3", None), BATCHNORMS) else "2"
        conv, bn = getattr(module, "conv" + last, None), getattr(module, "bn" + last)
        if pairs.get(bn) is not conv:
            continue
        downsample = module.downsample
        blocks[module] = ResidualBlock(bn, module.relu, downsample)
    return blocks
