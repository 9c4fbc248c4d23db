"""lrp_tutor: Layer-wise Relevance Propagation, step by step.

Two paths read one rule book (:mod:`lrp_tutor.rules`): the didactic float64 stepper
(:class:`Walkthrough`) and the vectorized PyTorch path (:func:`explain`).

>>> import torch
>>> import lrp_tutor as lt
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
>>> x = torch.tensor([[1.0, -1.0, 2.0]])
>>> lt.explain(net, x, rule=lt.rules.Epsilon(0.1)).relevance.shape
torch.Size([1, 3])
"""

from . import (
    analysis,
    composites,
    dataset,
    errors,
    evaluate,
    ledger,
    rules,
    stepper,
    viz,
    widgets,
    zoo,
)
from .dataset import RelevanceStore, explain_dataset, open_store
from .errors import (
    CompositeError,
    InputError,
    LRPError,
    RuleError,
    StoreError,
    UnsupportedLayerError,
    WeightsError,
)
from .fast import Concat, Explanation, Sum, explain
from .stepper import AttentionWalkthrough, Walkthrough
from .viz.style import lecture_mode

__version__ = "0.1.0"

__all__ = [
    "explain",
    "explain_dataset",
    "open_store",
    "RelevanceStore",
    "Explanation",
    "Walkthrough",
    "AttentionWalkthrough",
    "Sum",
    "Concat",
    "lecture_mode",
    "rules",
    "composites",
    "ledger",
    "stepper",
    "evaluate",
    "viz",
    "widgets",
    "zoo",
    "dataset",
    "analysis",
    "errors",
    "LRPError",
    "RuleError",
    "UnsupportedLayerError",
    "InputError",
    "CompositeError",
    "WeightsError",
    "StoreError",
]
