"""lrp_tutor: Layer-wise Relevance Propagation, step by step.

>>> import lrp_tutor as lt
>>> lt.rules.Epsilon(0.25)
Epsilon(epsilon=0.25)
"""

from . import errors, rules
from .errors import (
    CompositeError,
    InputError,
    LRPError,
    RuleError,
    UnsupportedLayerError,
    WeightsError,
)

__version__ = "0.1.0"

__all__ = [
    "rules",
    "errors",
    "LRPError",
    "RuleError",
    "UnsupportedLayerError",
    "InputError",
    "CompositeError",
    "WeightsError",
]
