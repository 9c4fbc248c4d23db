r"""The didactic stepper: LRP one layer, one neuron, one number at a time (numpy, float64).

>>> import numpy as np
>>> from lrp_tutor.stepper import Walkthrough
>>> walk = Walkthrough([(np.array([[1.0], [2.0]]), np.array([0.0]), None)])
>>> walk.forward(np.array([3.0, 1.0])).backward().relevance.round(4)
array([3., 2.])
>>> walk[0].messages.R_ij.round(4)  # R_{i←j} = x_i·w_ij / stab(z_j) · R_j
array([[3.],
       [2.]])

:class:`Walkthrough` runs the sample forward and relevance backward; each layer becomes a
:class:`LayerStep` with four stages, :class:`Forward`, :class:`Messages`,
:class:`Aggregation` and :class:`Stabilization`.

:class:`AttentionWalkthrough` walks one ``nn.MultiheadAttention`` one head at a time: per
head the queries and keys (:class:`QueryKey`), the attention matrix
(:class:`AttentionMatrix`), the messages through :math:`AV` (:class:`ValueMessages`) and
its books (:class:`HeadBooks`).
"""

from .attention import (
    AttentionHead,
    AttentionMatrix,
    AttentionWalkthrough,
    HeadBooks,
    QueryKey,
    ValueMessages,
)
from .stages import Aggregation, Forward, Messages, Stabilization, Stage
from .step import LayerStep
from .walkthrough import Walkthrough

__all__ = [
    "Walkthrough",
    "LayerStep",
    "Stage",
    "Forward",
    "Messages",
    "Aggregation",
    "Stabilization",
    "AttentionWalkthrough",
    "AttentionHead",
    "QueryKey",
    "AttentionMatrix",
    "ValueMessages",
    "HeadBooks",
]
