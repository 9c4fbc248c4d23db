"""The exceptions lrp_tutor raises.

Every error says which argument or layer is at fault and what to do about it.
They all derive from :class:`LRPError`, and each also derives from the built-in
exception a Python user would expect (``ValueError``, ``TypeError``), so that
``except ValueError`` keeps working.
"""

from __future__ import annotations


class LRPError(Exception):
    """Base class of every error lrp_tutor raises on purpose."""


class RuleError(LRPError, ValueError):
    """A rule was given parameters it cannot work with (ε < 0, α − β ≠ 1, low ≥ high…)."""


class UnsupportedLayerError(LRPError, TypeError):
    """A layer or operation that LRP cannot explain (it is named in the message)."""


class InputError(LRPError, ValueError):
    """The input, the target or the seed relevance does not fit the model."""


class CompositeError(LRPError, ValueError):
    """A composite names a layer the model does not have, or maps a rule to the wrong layer."""


class WeightsError(LRPError, RuntimeError):
    """Shipped or user-supplied weights are missing, corrupted or cannot be fetched."""


class StoreError(LRPError, ValueError):
    """A relevance store was written for another model, rule or data set, or is not one."""
