r"""The model randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency
maps", NeurIPS): an explanation of a model should change when the model is destroyed.

A copy of the model has its layers re-initialised one after another, from the output
down (*cascading*, ``order="top-down"``). After each step the copy is explained again and
the new explanation compared with the original one: Spearman's rank correlation of
:math:`|h|` and of :math:`h`, and SSIM, where :math:`h = \sum_c R_c` is the heatmap (relevance
summed over channels; for SSIM each heatmap is divided by its largest :math:`|h|`, so that
it lies in [−1, 1], data range 2). A method whose explanation stays similar when every
weight is random does not explain the model: it is flagged.

**The flag.** With the default ``measure="spearman_abs"`` and ``threshold=0.5``, an
explainer is flagged when the mean rank correlation of :math:`|h|` between the original
explanation and that of the fully randomised model is still ≥ 0.5. (Adebayo et al. found
guided backpropagation far above this line and the gradient far below.) Note that
gradient × input keeps the structure of the input itself: on inputs with many equal
values (black background) its :math:`|h|` stays correlated even for a random model.
The verdict therefore reports all three measures, and says that an explanation does not
depend on the model only when every measure stays similar.

The user's model is never touched: the copy is made with ``copy.deepcopy``, put in eval
mode, and it is the copy that is explained, also for the original explanation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ._common import as_input, heatmap, method_name, progress_bar, relevance_of, resolve_target
from .similarity import spearman, ssim_batch

__all__ = ["RandomizationResult", "randomization_check", "MEASURES", "RANDOMIZATION_ORDERS"]

MEASURES = ("spearman_abs", "spearman", "ssim")
"""Similarity measures: rank correlation of |h|, of h, and SSIM of h / max|h|."""

RANDOMIZATION_ORDERS = ("top-down", "bottom-up", "independent")
"""Cascading from the output, cascading from the input, or one layer at a time."""

DEFAULT_THRESHOLD = 0.5
"""An explainer whose similarity after randomisation stays ≥ this value is flagged."""

_WHAT = {
    "spearman_abs": "the ranking of |h| (where the relevance is, whatever its sign)",
    "spearman": "the ranking of h",
    "ssim": "the structure of h",
}


@dataclass
class RandomizationResult:
    """Similarity of each re-explanation to the original explanation, step by step.

    Attributes
    ----------
    steps : list of str
        ``"original"``, then the name of the layer re-initialised at each step
        (cumulatively for the cascading orders), as in ``model.named_modules()``.
    similarity : dict of str to ndarray, shape (S+1, N)
        For each measure in :data:`MEASURES`, one value per step and sample; step 0
        compares the original explanation with itself.
    heatmaps : ndarray, shape (S+1, N, …)
        The heatmap :math:`h = \\sum_c R_c` at each step.
    order, measure : str
        How layers were randomised; the measure the flag is based on.
    threshold : float
        The flag's threshold.
    label : str
        The explainer's name.
    layer_types : list of str
        The class name of each step's layer (``""`` for the original).
    """

    steps: list[str]
    similarity: dict[str, np.ndarray]
    heatmaps: np.ndarray
    order: str = "top-down"
    measure: str = "spearman_abs"
    threshold: float = DEFAULT_THRESHOLD
    label: str = ""
    layer_types: list[str] = field(default_factory=list)

    def mean(self, measure: str | None = None) -> np.ndarray:
        """The mean similarity over samples at each step, shape (S+1,) (NaNs skipped)."""
        values = self.similarity[measure or self.measure]
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(values)
            total = np.where(finite, values, 0.0).sum(axis=1)
            count = finite.sum(axis=1)
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def final_of(self, measure: str | None = None) -> float:
        """The similarity by ``measure`` (default the flag's) after the last cascading step
        (the fully random model), or its mean over all steps for ``order="independent"``."""
        means = self.mean(measure)[1:]
        if means.size == 0:
            return float("nan")
        return float(means.mean() if self.order == "independent" else means[-1])

    @property
    def final(self) -> float:
        """The similarity the flag reads: after the last cascading step (the fully random
        model), or the mean over all steps for ``order="independent"``."""
        return self.final_of(self.measure)

    @property
    def flagged(self) -> bool:
        """True when the explanation stays similar although the model is random."""
        return bool(self.final >= self.threshold)

    @property
    def verdict(self) -> str:
        """The check's outcome in words that claim no more than the three measures show.

        The flag reads one measure. The sentence also reports the two others: an explainer
        is said not to depend on what the model learned only when *every* measure stays at
        or above the threshold. When the flag's measure stays high but another measure
        fell (typically: the rank correlation of :math:`|h|` stays high while the signed
        map changed), the verdict says so and names the likely cause, instead of claiming
        that the explanation ignores the model.
        """
        name = f"{self.label!r}" if self.label else "the explainer"
        what = "the fully randomised model" if self.order != "independent" else "random layers"
        finals = {m: self.final_of(m) for m in MEASURES}

        def values(measures: Sequence[str]) -> str:
            return ", ".join(f"{m} = {finals[m]:.3g}" for m in measures)

        high = [m for m in MEASURES if finals[m] >= self.threshold]
        low = [m for m in MEASURES if not finals[m] >= self.threshold]  # NaN counts as low
        t = f"{self.threshold:g}"
        if self.flagged and not low:
            return (
                f"FLAGGED: {name} explains {what} almost as it explains the trained one by "
                f"every measure ({values(MEASURES)}, all ≥ {t}); it does not depend on what "
                "the model learned."
            )
        if self.flagged:
            return (
                f"FLAGGED by {self.measure}: for {what}, {_WHAT[self.measure]} of {name} stays "
                f"similar ({values(high)} ≥ {t}), but {values(low)} < {t}: that part of the "
                "explanation changed. The check alone cannot tell whether the explanation "
                "ignores the model or keeps only the structure of the input (e.g. pixels "
                "with x = 0 get no relevance under any weights)."
            )
        whose = f"The explanation of {self.label!r}" if self.label else "The explanation"
        sentence = (
            f"Passed: {whose} changes when the model is randomised "
            f"({self.measure} = {self.final:.3g} < {t})"
        )
        if high:
            return f"{sentence}, although {values(high)} ≥ {t}."
        return f"{sentence}."

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Similarity per randomised layer, one line per measure, the threshold dashed."""
        from ..viz.curves import randomization_curves

        return randomization_curves(self, ax=ax, **kwargs)

    def __repr__(self) -> str:
        return f"RandomizationResult({len(self.steps) - 1} steps, {self.order}): {self.verdict}"


def randomization_check(
    model: nn.Module,
    x: Any,
    target: Any,
    explainer: Any,
    *,
    order: str = "top-down",
    seed: int = 0,
    layers: Sequence[str] | None = None,
    measure: str = "spearman_abs",
    threshold: float = DEFAULT_THRESHOLD,
    progress: bool | None = None,
    label: str | None = None,
) -> RandomizationResult:
    r"""Re-initialise a copy of the model layer by layer and re-explain after each step.

    Parameters
    ----------
    model : nn.Module
        The trained model; it is copied, never changed.
    x : tensor, shape (N, …)
        The inputs.
    target : int or sequence of int, optional
        The class explained, the same at every step; ``None`` gives the trained model's
        predicted classes.
    explainer : Rule, Composite or callable
        ``explainer(model, x, target) -> relevance`` (shape of ``x``), or a rule or
        composite for ``lrp_tutor.fast.explain``.
    order : {"top-down", "bottom-up", "independent"}
        Cascading from the output layer (Adebayo et al.'s main test; layers in reverse
        registration order), cascading from the input, or one layer at a time with the
        others trained.
    seed : int, default 0
        Seeds the re-initialisation (step s uses ``seed + s``); the global RNG is left as
        it was.
    layers : sequence of str, optional
        Names (as in ``model.named_modules()``) of the layers to randomise; default every
        module with parameters of its own. A layer is re-initialised by its
        ``reset_parameters()``; a module without one gets each parameter redrawn from
        :math:`\mathcal{N}(0, s^2)`, *s* the parameter's standard deviation.
    measure : {"spearman_abs", "spearman", "ssim"}
        The measure the flag reads (all three are computed).
    threshold : float, default 0.5
        Flagged when the similarity after randomisation stays ≥ threshold.

    Returns
    -------
    RandomizationResult
        ``.similarity[measure]`` (S+1, N), ``.flagged``, ``.verdict``, ``.plot()``.

    Examples
    --------
    An "explainer" that ignores the model (it returns the input) is flagged:

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> x = torch.rand(3, 8)
    >>> check = randomization_check(model, x, None, lambda m, x, t: x)
    >>> check.steps, check.flagged
    (['original', '2', '0'], True)
    """
    x = as_input(model, x)
    order = _choice("order", order, RANDOMIZATION_ORDERS)
    measure = _choice("measure", measure, MEASURES)
    try:
        trained = copy.deepcopy(model).eval()
    except Exception as error:  # any failure to copy: we cannot go on
        raise InputError(
            f"randomization_check copies the model before randomising it, but "
            f"copy.deepcopy failed: {error}. Make the model copyable (no open files, "
            "generators or lambdas stored on it)."
        ) from error
    target = resolve_target(trained, x, target)
    names = _layers(trained, layers)
    if order == "top-down":
        names = names[::-1]

    original = heatmap(relevance_of(explainer, trained, x, target, "explainer"))
    maps = [original]
    randomized = copy.deepcopy(trained)
    bar = progress_bar(len(names), progress, "randomisation check", auto_above=10)
    try:
        for step, name in enumerate(names, start=1):
            if order == "independent":
                randomized = copy.deepcopy(trained)
            _reinitialize(randomized.get_submodule(name), seed + step)
            maps.append(heatmap(relevance_of(explainer, randomized, x, target, "explainer")))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    similarity = {m: np.stack([_similarity(m, original, h) for h in maps]) for m in MEASURES}
    return RandomizationResult(
        steps=["original", *names],
        similarity=similarity,
        heatmaps=np.stack([h.detach().double().cpu().numpy() for h in maps]),
        order=order,
        measure=measure,
        threshold=float(threshold),
        label=label if label is not None else method_name(explainer),
        layer_types=["", *(type(trained.get_submodule(n)).__name__ for n in names)],
    )


def _similarity(measure: str, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """One value per sample: ``measure`` between heatmaps ``a[n]`` and ``b[n]``."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if measure == "ssim":
        return ssim_batch(_unit(a), _unit(b), data_range=2.0).numpy()
    if measure == "spearman_abs":
        a, b = a.abs(), b.abs()
    return np.array([spearman(u, v) for u, v in zip(a, b, strict=True)])


def _unit(h: torch.Tensor) -> torch.Tensor:
    """Each heatmap divided by its largest |value| (all-zero maps stay zero)."""
    scale = h.flatten(1).abs().amax(dim=1).reshape(-1, *([1] * (h.ndim - 1)))
    return h / torch.where(scale > 0, scale, torch.ones_like(scale))


def _layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The modules with parameters of their own, in registration order (or those named)."""
    own = [
        name
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    if layers is None:
        if not own:
            raise InputError("The model has no layers with parameters to randomise.")
        return own
    if isinstance(layers, str):
        layers = [layers]
    missing = [name for name in layers if name not in own]
    if missing:
        raise InputError(
            f"layers: the model has no layer {', '.join(map(repr, missing))} with parameters "
            f"of its own; layers with parameters: {', '.join(map(repr, own)) or 'none'}."
        )
    return [name for name in own if name in set(layers)]


def _reinitialize(module: nn.Module, seed: int) -> None:
    """Re-draw the module's own parameters with a fixed seed, leaving the global RNG alone."""
    devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for parameter in module.parameters(recurse=False):
                std = float(parameter.std()) if parameter.numel() > 1 else 1.0
                parameter.normal_(0.0, std if std > 0 else 1.0)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value
