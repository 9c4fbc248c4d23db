r"""Compare rules (or any explainers) by pixel flipping: whose relevance hurts the model most?

Every method explains the same inputs for the same targets; then :func:`pixel_flipping`
removes the regions it calls most relevant first. The table lists each method's
:math:`\mathrm{AOPC} = \frac{1}{L+1}\sum_{k=0}^{L} (f(x^{(0)}) - f(x^{(k)}))`, mean ± std
over samples; a random order is added as the floor to beat.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import InputError
from ._common import as_input, resolve_target
from .flipping import FlippingResult, pixel_flipping

__all__ = ["ComparisonResult", "compare_rules", "RANDOM_LABEL"]

RANDOM_LABEL = "random order"
"""The name of the random-order baseline in tables and legends."""


@dataclass
class ComparisonResult:
    """Pixel-flipping results of several methods on the same inputs.

    Attributes
    ----------
    results : dict of str to FlippingResult
        One result per method, in the order given (the random baseline last).
    """

    results: dict[str, FlippingResult]

    @property
    def table(self) -> list[dict[str, Any]]:
        """One row per method: ``method``, ``aopc_mean``, ``aopc_std``, ``samples``."""
        return [
            {
                "method": name,
                "aopc_mean": result.aopc_mean,
                "aopc_std": result.aopc_std,
                "samples": int(result.scores.shape[0]),
            }
            for name, result in self.results.items()
        ]

    @property
    def best(self) -> str:
        """The method with the largest mean AOPC (the steepest drop)."""
        return max(self.results, key=lambda name: self.results[name].aopc_mean)

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """The mean flipping curve of every method, AOPC in the legend."""
        from ..viz.curves import flipping_curves

        return flipping_curves(self.results, ax=ax, **kwargs)

    def bars(self, ax: Any = None, **kwargs: Any) -> Any:
        """The AOPC of every method as a bar chart (mean ± std)."""
        from ..viz.curves import aopc_bars

        return aopc_bars(self.results, ax=ax, **kwargs)

    def __getitem__(self, name: str) -> FlippingResult:
        return self.results[name]

    def __repr__(self) -> str:
        width = max([len("method"), *(len(name) for name in self.results)])
        lines = [f"{'method':<{width}}  AOPC (mean ± std)"]
        for row in self.table:
            lines.append(
                f"{row['method']:<{width}}  {row['aopc_mean']:.4g} ± {row['aopc_std']:.2g}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        best = self.best
        rows = "".join(
            f"<tr><td>{'<b>' if row['method'] == best else ''}{html.escape(row['method'])}"
            f"{'</b>' if row['method'] == best else ''}</td>"
            f"<td style='text-align:right'>{row['aopc_mean']:.4g} ± {row['aopc_std']:.2g}</td>"
            f"<td style='text-align:right'>{row['samples']}</td></tr>"
            for row in self.table
        )
        return (
            "<table><thead><tr><th>method</th><th>AOPC (mean ± std)</th><th>samples</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )


def compare_rules(
    model: nn.Module,
    x: Any,
    target: Any,
    methods: Mapping[str, Any],
    *,
    include_random: bool = True,
    **flipping_kwargs: Any,
) -> ComparisonResult:
    r"""Pixel flipping for several methods on the same inputs and targets.

    Parameters
    ----------
    model : nn.Module
        Returns logits of shape (N, classes).
    x : tensor, shape (N, …)
        The inputs.
    target : int or sequence of int, optional
        The classes explained; ``None`` gives the predicted classes (shared by all methods).
    methods : mapping of str to Rule, Composite, explainer or relevance map
        The names are the table's rows, e.g. ``{"ε=0.25": Epsilon(0.25), "gradient":
        gradient}``.
    include_random : bool, default True
        Add the random order as a baseline row.
    **flipping_kwargs
        Passed to :func:`pixel_flipping` (``steps``, ``patch_size``, ``mode``, ``baseline``,
        ``batch_size``, ``progress``, ``order``, ``seed``…).

    Returns
    -------
    ComparisonResult
        ``.table`` (list of dicts), ``.plot()`` (curves), ``.bars()`` (AOPC chart).

    Examples
    --------
    >>> import torch
    >>> from lrp_tutor.evaluate import gradient_x_input
    >>> model = torch.nn.Linear(4, 2).double()
    >>> x = torch.rand(3, 4, dtype=torch.float64)
    >>> result = compare_rules(model, x, 0, {"grad×input": gradient_x_input})
    >>> [row["method"] for row in result.table]
    ['grad×input', 'random order']
    """
    if not isinstance(methods, Mapping) or not methods:
        raise InputError(
            "methods must be a non-empty mapping of names to methods, e.g. "
            "{'ε=0.25': Epsilon(0.25), 'gradient': gradient}."
        )
    for name in ("relevance", "label", "target"):
        if name in flipping_kwargs:
            raise InputError(f"compare_rules sets {name} itself; do not pass {name}=….")
    if include_random and RANDOM_LABEL in methods:
        raise InputError(f"{RANDOM_LABEL!r} is the name of the random baseline; rename the method.")
    x = as_input(model, x)
    target = resolve_target(model, x, target)
    results: dict[str, FlippingResult] = {}
    for name, method in methods.items():
        results[str(name)] = pixel_flipping(
            model, x, method, target, label=str(name), **flipping_kwargs
        )
    if include_random:
        kwargs = {**flipping_kwargs, "order": "random"}
        results[RANDOM_LABEL] = pixel_flipping(model, x, None, target, label=RANDOM_LABEL, **kwargs)
    return ComparisonResult(results)
