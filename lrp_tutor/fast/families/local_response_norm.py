r"""Local response normalisation (``F.local_response_norm``, AlexNet's LRN): the divisor held
constant.

.. math::

    z_c = \frac{x_c}{d_c}, \qquad
    d_c = \Big(k + \frac{\alpha}{n} \sum_{c' \in N(c)} x_{c'}^2\Big)^{\beta}

With :math:`d_c` held constant, as a normalisation's statistics are
(:class:`~lrp_tutor.fast.maps.CenteredMap`), LRN is an element-wise linear map of *x* with the
weight :math:`1/d_c`, explained by the ε-rule (:data:`~lrp_tutor.composites.POOLING_RULE`
unless the composite maps the module): :math:`R_{x_c} = z_c/\mathrm{stab}(z_c)\cdot R_c`.

>>> import torch
>>> import lrp_tutor as lt
>>> net = torch.nn.Sequential(torch.nn.LocalResponseNorm(2), torch.nn.Flatten(),
...                           torch.nn.Linear(8, 2))
>>> e = lt.explain(net, torch.rand(1, 2, 2, 2))
>>> e.ledger.holds(), [entry.layer for entry in e.ledger][0]
(True, '0 (LocalResponseNorm)')
"""

from __future__ import annotations

from torch import Tensor, nn

from ..functions import explain_linear
from ..maps import ScaleMap


def local_response_norm(call) -> Tensor:
    """``F.local_response_norm(x, size, alpha, beta, k)``: :math:`z = x \\odot (1/d)`."""
    x = call.args[0]
    value = call.plain()
    weight = value / x.detach()  # 1/d_c, where x_c ≠ 0
    weight = weight.nan_to_num(0.0)  # x_c = 0 contributes nothing either way
    layer = ScaleMap(weight, None, call.session.scratch)
    rule = call.rule("fixed", nn.LocalResponseNorm)
    return explain_linear(x, value, layer, rule, call.booking("lrn"), call.where())


FUNCTIONS = ("local_response_norm",)
