r"""Figures for evaluating explanations: flipping curves, AOPC bars, randomisation checks.

Pure functions: they take results from :mod:`lrp_tutor.evaluate` and return a matplotlib
Figure (drawn into ``ax`` when given). Nothing is computed here except means for display.

>>> import numpy as np
>>> from lrp_tutor.evaluate import FlippingResult
>>> result = FlippingResult(np.linspace(0, 1, 5), np.array([[1.0, 0.2, 0.1, 0.0, 0.0]]),
...                         np.array([0]), label="LRP-ε")
>>> fig = flipping_curves(result)
>>> fig.axes[0].get_legend().get_texts()[0].get_text()
'LRP-ε (AOPC 0.74)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from . import style
from ._axes import axes, number

__all__ = ["flipping_curves", "aopc_bars", "randomization_curves", "RANDOM_COLOR"]

RANDOM_COLOR = "#7f7f7f"
"""Colour of the random-order baseline (grey, dashed)."""

MEASURE_LABELS = {
    "spearman_abs": "rank corr. of |h|",
    "spearman": "rank corr. of h",
    "ssim": "SSIM",
}

ORDER_LABELS = {
    "most-relevant": "most relevant first",
    "least-relevant": "least relevant first",
    "random": "random order",
}


def _results(results: Any) -> list[Any]:
    """A list of FlippingResults from one result, a sequence, a mapping or a comparison."""
    results = getattr(results, "results", results)  # a ComparisonResult
    if isinstance(results, Mapping):
        out = []
        for name, result in results.items():
            if not result.label:
                result = _relabel(result, str(name))
            out.append(result)
        results = out
    elif hasattr(results, "scores"):
        results = [results]
    if not isinstance(results, Sequence) or not results:
        raise InputError(
            "Pass a FlippingResult, a list of them, a dict name → FlippingResult or a "
            f"ComparisonResult; got {type(results).__name__}."
        )
    for result in results:
        if not hasattr(result, "scores") or not hasattr(result, "fractions"):
            raise InputError(f"Expected FlippingResults, got {type(result).__name__}.")
    return list(results)


def _relabel(result: Any, label: str) -> Any:
    import dataclasses

    return dataclasses.replace(result, label=label)


def _is_random(result: Any) -> bool:
    return result.order == "random"


def flipping_curves(
    results: Any,
    *,
    ax: Axes | None = None,
    spread: bool = True,
    title: str | None = None,
) -> Figure:
    r"""Mean pixel-flipping curves of one or several methods, AOPC in the legend.

    Parameters
    ----------
    results : FlippingResult, sequence or mapping of them, or a ComparisonResult
        One curve per result: the mean of :math:`f(x^{(k)})` over samples against the
        fraction of regions removed.
    ax : Axes, optional
        Draw into these axes; by default a new figure.
    spread : bool, default True
        Shade ± one standard deviation over samples (when there are several).
    title : str, optional
        Default names the removal order.

    Returns
    -------
    Figure
    """
    results = _results(results)
    with style.context():
        fig, ax = axes(ax, 6.0, 4.0)
        for result in results:
            percent = 100.0 * np.asarray(result.fractions)
            mean = result.curve
            n = result.scores.shape[0]
            aopc = f"AOPC {number(result.aopc_mean)}"
            if n > 1:
                aopc += f" ± {number(result.aopc_std)}"
            label = f"{result.label or ORDER_LABELS[result.order]} ({aopc})"
            kwargs: dict[str, Any] = {"label": label}
            if _is_random(result):
                kwargs.update(color=RANDOM_COLOR, linestyle="--")
            (line,) = ax.plot(percent, mean, **kwargs)
            if spread and n > 1:
                std = result.scores.std(axis=0)
                ax.fill_between(percent, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        orders = {r.order for r in results if not _is_random(r)}
        ax.set_xlabel(
            "regions removed (%)" + (f", {ORDER_LABELS[orders.pop()]}" if len(orders) == 1 else "")
        )
        ax.set_ylabel("target logit $f_c(x^{(k)})$")
        ax.set_xlim(0, 100)
        ax.set_title(title if title is not None else "Pixel flipping: a steeper drop is better")
        ax.legend(loc="best")
    return style.finish(fig)


def aopc_bars(results: Any, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    r"""The AOPC of every method as a bar (mean over samples, ± one standard deviation).

    .. math::

        \mathrm{AOPC} = \frac{1}{L+1}\sum_{k=0}^{L} \big(f(x^{(0)}) - f(x^{(k)})\big)

    >>> import numpy as np
    >>> from lrp_tutor.evaluate import FlippingResult
    >>> a = FlippingResult(np.linspace(0, 1, 3), np.array([[2.0, 0.5, 0.5]]), np.array([0]))
    >>> fig = aopc_bars({"a": a})
    >>> [float(p.get_height()) for p in fig.axes[0].patches]
    [1.0]
    """
    results = _results(results)
    n = len(results)
    means = np.array([r.aopc_mean for r in results])
    stds = np.array([r.aopc_std for r in results])
    labels = [r.label or ORDER_LABELS[r.order] for r in results]
    with style.context():
        fig, ax = axes(ax, max(3.6, min(1.1 * n + 2.0, 10.0)), 3.6)
        cycle = [c["color"] for c in style_cycle()]
        colors = [
            RANDOM_COLOR if _is_random(r) else cycle[i % len(cycle)] for i, r in enumerate(results)
        ]
        ax.bar(
            np.arange(n),
            means,
            yerr=stds if any(r.scores.shape[0] > 1 for r in results) else None,
            color=colors,
            edgecolor="black",
            capsize=4,
        )
        ax.axhline(0.0, color="black", linewidth=style.current().line_width * 0.6)
        ax.set_xticks(np.arange(n), labels)
        if max(len(s) for s in labels) > 8:
            ax.tick_params(axis="x", labelrotation=30)
        for i, value in enumerate(means):
            ax.annotate(
                number(value),
                (i + 0.05, value),
                xytext=(3, 3 if value >= 0 else -3),
                textcoords="offset points",
                ha="left",
                va="bottom" if value >= 0 else "top",
                fontsize=style.font_size(0.8),
            )
        ax.set_ylabel("AOPC (larger is better)")
        ax.set_title(title if title is not None else "Area over the perturbation curve")
    return style.finish(fig)


def style_cycle() -> list[dict[str, Any]]:
    """The colours of matplotlib's current property cycle."""
    import matplotlib as mpl

    return list(mpl.rcParams["axes.prop_cycle"])


def randomization_curves(
    result: Any,
    *,
    ax: Axes | None = None,
    measures: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Similarity to the original explanation after each randomisation step.

    One line per measure (mean over samples, ± one standard deviation shaded), the
    flag's threshold dashed (the measure the flag reads drawn thicker); step 0 is the trained
    model.

    Parameters
    ----------
    result : RandomizationResult
        From :func:`lrp_tutor.evaluate.randomization_check`.
    measures : sequence of str, optional
        Which measures to draw; default all three.

    Returns
    -------
    Figure
    """
    if not hasattr(result, "similarity") or not hasattr(result, "steps"):
        raise InputError(
            f"randomization_curves needs a RandomizationResult, got {type(result).__name__}."
        )
    measures = list(measures) if measures is not None else list(result.similarity)
    unknown = [m for m in measures if m not in result.similarity]
    if unknown:
        raise InputError(
            f"Unknown measure(s) {unknown}; choose from {', '.join(result.similarity)}."
        )
    steps = list(result.steps)
    x = np.arange(len(steps))
    with style.context():
        fig, ax = axes(ax, max(6.5, min(0.7 * len(steps) + 4.5, 13.0)), 4.2)
        for measure in measures:
            values = result.similarity[measure]
            mean = result.mean(measure)
            style_kwargs = {"linewidth": style.current().line_width * 1.5}
            if measure == result.measure:
                style_kwargs["linewidth"] = style.current().line_width * 2.2
            (line,) = ax.plot(
                x, mean, marker="o", label=MEASURE_LABELS.get(measure, measure), **style_kwargs
            )
            if values.shape[1] > 1:
                with np.errstate(invalid="ignore"):
                    std = np.nanstd(values, axis=1) if np.isfinite(values).any() else mean * 0
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.axhline(
            result.threshold,
            color="black",
            linestyle="--",
            linewidth=style.current().line_width * 0.8,
            label=f"flag at ≥ {number(result.threshold)}",
        )
        ax.axhline(0.0, color=RANDOM_COLOR, linewidth=style.current().line_width * 0.5)
        labels = _step_labels(result)
        ax.set_xticks(x, labels)
        if sum(len(s) for s in labels) > 40:
            ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel(
            {
                "top-down": "layers randomised, output → input",
                "bottom-up": "layers randomised, input → output",
                "independent": "layer randomised (one at a time)",
            }[result.order]
        )
        ax.set_ylabel("similarity to original")
        verdict = "FLAGGED" if result.flagged else "passed"
        name = f"{result.label}: " if result.label else ""
        ax.set_title(title if title is not None else f"{name}{verdict}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return style.finish(fig)


def _step_labels(result: Any) -> list[str]:
    """``original``, then ``name (Class)`` of each step's layer, ``+`` when cumulative."""
    types = list(getattr(result, "layer_types", [])) or [""] * len(result.steps)
    labels = []
    for i, (name, kind) in enumerate(zip(result.steps, types, strict=True)):
        label = f"{name or 'model'} ({kind})" if kind else name
        if i > 1 and result.order != "independent":
            label = "+ " + label
        labels.append(label)
    return labels
