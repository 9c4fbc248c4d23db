r"""Compare rules (or any explainers) by pixel flipping: whose relevance hurts the model most?

Every method explains the same inputs for the same targets; then :func:`pixel_flipping`
removes the regions it calls most relevant first. The table lists each method's
:math:`\mathrm{AOPC} = \frac{1}{L+1}\sum_{k=0}^{L} (f(x^{(0)}) - f(x^{(k)}))`, mean ± std
over samples; a random order is added as the floor to beat.

**Which method is best?** Every method sees the same samples, so two methods are compared
sample by sample: the mean of the per-sample AOPC differences and its standard error
:math:`\mathrm{sd}/\sqrt{N}`. A method is called *best* only when it leads every other
method by more than ``z`` (default 2) standard errors of that paired difference; otherwise
the methods within noise of the top are named together and none is "best".
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..errors import InputError
from ._common import as_input, resolve_target
from .flipping import FlippingResult, pixel_flipping

__all__ = ["ComparisonResult", "compare_rules", "RANDOM_LABEL", "NOISE_Z"]

RANDOM_LABEL = "random order"
"""The name of the random-order baseline in tables and legends."""

NOISE_Z = 2.0
"""A difference of mean AOPC counts only beyond this many standard errors (paired)."""


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

    def difference(self, a: str, b: str) -> tuple[float, float]:
        r"""The mean AOPC of ``a`` minus that of ``b``, and its standard error.

        Both methods flipped the same samples, so the difference is taken sample by sample,
        :math:`d_n = \mathrm{AOPC}_a(x_n) - \mathrm{AOPC}_b(x_n)`; the standard error is
        :math:`\mathrm{sd}(d) / \sqrt{N}` (NaN for one sample: no noise estimate).
        """
        d = self.results[a].aopc - self.results[b].aopc
        if d.shape[0] < 2:
            return float(d.mean()), float("nan")
        return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.shape[0]))

    def leaders(self, z: float = NOISE_Z) -> list[str]:
        """The method with the largest mean AOPC and every method within ``z`` standard
        errors of it (paired differences), best first. With one sample nothing can be told
        apart: every method is listed."""
        ranked = sorted(self.results, key=lambda name: -self.results[name].aopc_mean)
        top = ranked[0]
        tied = [top]
        for name in ranked[1:]:
            mean, stderr = self.difference(top, name)
            if not (mean > z * stderr):  # NaN (one sample) counts as a tie
                tied.append(name)
        return tied

    @property
    def best(self) -> str | None:
        """The method with the largest mean AOPC, if it leads every other method by more
        than :data:`NOISE_Z` standard errors of the paired difference; else ``None``."""
        leaders = self.leaders()
        return leaders[0] if len(leaders) == 1 else None

    def verdict(self, z: float = NOISE_Z) -> str:
        """Which method leads, in one sentence that says whether the lead exceeds the noise."""
        leaders = self.leaders(z)
        n = int(self.results[leaders[0]].scores.shape[0])
        if len(leaders) == 1:
            runner_up = max(
                (name for name in self.results if name != leaders[0]),
                key=lambda name: self.results[name].aopc_mean,
                default=None,
            )
            if runner_up is None:
                return f"only one method: {leaders[0]}"
            mean, stderr = self.difference(leaders[0], runner_up)
            return (
                f"best: {leaders[0]} (ahead of {runner_up} by {mean:.3g} ± {stderr:.2g}, "
                f"more than {z:g} standard errors over {n} samples)"
            )
        if n < 2:
            return "no best: one sample gives no estimate of the noise"
        return (
            f"no single best: {', '.join(leaders)} are within {z:g} standard errors of the "
            f"top (paired differences over {n} samples)"
        )

    def versus(self, reference: str = RANDOM_LABEL, z: float = NOISE_Z) -> str:
        """Every method against ``reference`` (default the random order): the paired mean
        difference of AOPC ± its standard error, and whether it is ahead, behind or within
        noise (``z`` standard errors)."""
        if reference not in self.results:
            raise InputError(f"{reference!r} is not a method of this comparison.")
        width = max(len(name) for name in self.results)
        lines = [f"{'method':<{width}}  AOPC − {reference} (± standard error)"]
        for name in self.results:
            if name == reference:
                continue
            mean, stderr = self.difference(name, reference)
            if not np.isfinite(stderr):
                word = "no noise estimate (one sample)"
            elif mean > z * stderr:
                word = "ahead"
            elif mean < -z * stderr:
                word = "behind"
            else:
                word = "within noise"
            lines.append(f"{name:<{width}}  {mean:+.3g} ± {stderr:.2g}  {word}")
        return "\n".join(lines)

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
        best = self.best  # None: no method leads beyond the noise, none in bold
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
        ``.table`` (list of dicts), ``.plot()`` (curves), ``.bars()`` (AOPC chart),
        ``.best`` / ``.verdict()`` (a leader only beyond the noise), ``.versus()``.

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
