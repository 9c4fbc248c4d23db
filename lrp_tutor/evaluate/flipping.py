r"""Pixel flipping and AOPC: does removing what the explanation calls relevant hurt the model?

Samek et al. (2017, "Evaluating the visualization of what a deep neural network has
learned", IEEE TNNLS) split the input into regions (pixels or patches), sort them by their
relevance :math:`\sum_{i \in \text{region}} R_i` (summed over channels and within the
patch), and remove them one after another, most relevant first (MoRF). :math:`x^{(k)}` is
the input after *k* steps, :math:`f(x^{(k)}) = f_c(x^{(k)})` the target logit. A good
explanation makes the score drop fast, so the **area over the perturbation curve** is large:

.. math::

    \mathrm{AOPC} = \frac{1}{L + 1} \sum_{k=0}^{L} \big( f(x^{(0)}) - f(x^{(k)}) \big)

for one sample; the method's AOPC is its mean over samples. Removing regions in a random
order gives the floor a method must beat; removing the *least* relevant first (LeRF) makes
the score drop slowly, so its AOPC is small.

"Removing" replaces a region's values in every channel by those of a reference image:
a constant (``mode="remove"``, e.g. 0, the mean of normalised data), a blurred copy of the
input (``mode="blur"``) or an image of the user's choice (``mode="baseline"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ._common import (
    as_input,
    check_output,
    eval_mode,
    heatmap,
    method_name,
    progress_bar,
    relevance_of,
    resolve_target,
    scores,
)

__all__ = ["FlippingResult", "pixel_flipping", "ORDERS", "MODES"]

ORDERS = ("most-relevant", "least-relevant", "random")
"""Orders in which regions are removed."""

MODES = ("remove", "blur", "baseline")
"""What a removed region is replaced with: a constant, a blurred input, a baseline image."""

MAX_DEFAULT_STEPS = 100
"""``steps=None`` removes one region per step, but takes at most this many steps."""


@dataclass
class FlippingResult:
    r"""The perturbation curves of one method, one per sample.

    Attributes
    ----------
    fractions : ndarray, shape (L+1,)
        The fraction of regions removed at each step, :math:`n_k / P`, from 0 to 1.
    scores : ndarray, shape (N, L+1)
        :math:`f(x^{(k)})`, the target logit of each sample after *k* steps.
    target : ndarray, shape (N,)
        The class *c* of each sample.
    order, mode : str
        How regions were ordered and what replaced them.
    patch_size : tuple of int
        The size of a region along each spatial axis.
    label : str
        The method's name, for legends and tables.
    """

    fractions: np.ndarray
    scores: np.ndarray
    target: np.ndarray
    order: str = "most-relevant"
    mode: str = "remove"
    patch_size: tuple[int, ...] = (1,)
    label: str = ""
    n_removed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def steps(self) -> int:
        """*L*, the number of perturbation steps."""
        return len(self.fractions) - 1

    @property
    def drops(self) -> np.ndarray:
        r""":math:`f(x^{(0)}) - f(x^{(k)})`, shape (N, L+1)."""
        return self.scores[:, :1] - self.scores

    @property
    def aopc(self) -> np.ndarray:
        r"""AOPC of each sample, :math:`\frac{1}{L+1}\sum_{k=0}^{L} (f(x^{(0)}) - f(x^{(k)}))`."""
        return self.drops.mean(axis=1)

    @property
    def aopc_mean(self) -> float:
        """The method's AOPC: the mean over samples."""
        return float(self.aopc.mean())

    @property
    def aopc_std(self) -> float:
        """The standard deviation of the AOPC over samples (0 for one sample)."""
        return float(self.aopc.std())

    @property
    def curve(self) -> np.ndarray:
        r"""The mean curve over samples, :math:`\frac{1}{N}\sum_n f(x_n^{(k)})`, shape (L+1,)."""
        return self.scores.mean(axis=0)

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """The mean curve (± one standard deviation), AOPC in the legend."""
        from ..viz.curves import flipping_curves

        return flipping_curves(self, ax=ax, **kwargs)

    def __repr__(self) -> str:
        label = f"{self.label!r}, " if self.label else ""
        n = self.scores.shape[0]
        return (
            f"FlippingResult({label}order={self.order!r}, mode={self.mode!r}, {n} sample"
            f"{'s' if n != 1 else ''}, {self.steps} steps, "
            f"AOPC = {self.aopc_mean:.4g} ± {self.aopc_std:.4g})"
        )


def pixel_flipping(
    model: nn.Module,
    x: Any,
    relevance: Any = None,
    target: Any = None,
    *,
    steps: int | None = None,
    patch_size: int | tuple[int, ...] = 1,
    mode: str = "remove",
    baseline: Any = 0.0,
    blur_sigma: float = 2.0,
    order: str = "most-relevant",
    seed: int = 0,
    batch_size: int = 64,
    progress: bool | None = None,
    label: str | None = None,
) -> FlippingResult:
    r"""Remove the most relevant regions first, step by step, and record the target logit.

    The input is cut into *P* regions (pixels, or patches of ``patch_size``). Region
    relevance is :math:`\sum_{i \in \text{region}} R_i` over all channels. At step
    :math:`k = 0, \ldots, L` the first :math:`n_k = \lfloor k P / L \rfloor` regions in the
    chosen order are replaced by the reference, giving :math:`x^{(k)}`; then

    .. math::

        \mathrm{AOPC} = \frac{1}{L+1} \sum_{k=0}^{L} \big(f(x^{(0)}) - f(x^{(k)})\big).

    All :math:`N (L+1)` perturbed inputs are evaluated in batches of ``batch_size`` on the
    model's device, under ``torch.no_grad()`` and in eval mode (the model's own mode is
    restored afterwards).

    Parameters
    ----------
    model : nn.Module
        Returns logits of shape (N, classes).
    x : tensor, shape (N, C, H, W), (N, C, L) or (N, D)
        The inputs. With a channel axis, a region spans all channels; (N, D) inputs have
        one value per region.
    relevance : tensor, Rule, Composite or explainer, optional
        The relevance map (shape of ``x``), or a method that computes it
        (``explainer(model, x, target) -> relevance``). Not needed for ``order="random"``.
    target : int or sequence of int, optional
        The class *c* whose logit :math:`f_c` is tracked; default the predicted class.
    steps : int, optional
        *L*, between 1 and *P*; default one region per step, at most 100 steps.
    patch_size : int or tuple of int, default 1
        The size of a region along each spatial axis (edge regions may be smaller).
    mode : {"remove", "blur", "baseline"}
        Replace removed regions by ``baseline`` (a number, or values that broadcast to one
        sample, e.g. per-channel means of shape (C, 1, 1)), by a Gaussian blur of the input
        (``blur_sigma`` in pixels), or by a baseline image (``baseline`` of the shape of
        ``x`` or of one sample).
    order : {"most-relevant", "least-relevant", "random"}
        Most relevant first (MoRF, the AOPC of Samek et al.), least relevant first, or a
        random order drawn from a generator seeded with ``seed``. Ties keep region order.
    batch_size : int, default 64
        How many perturbed inputs one forward pass takes; results do not depend on it.
    progress : bool, optional
        A tqdm progress bar (notebook or terminal); default only for more than 20 batches.
    label : str, optional
        The method's name in legends; default the rule's or explainer's name.

    Returns
    -------
    FlippingResult
        ``.scores`` (N, L+1), ``.aopc`` per sample, ``.aopc_mean``, ``.curve``, ``.plot()``.

    Examples
    --------
    A model that reads only feature 2; its relevance points there, so removing it first
    drops the score to 0 at once: the drops are 0, 1, 1, 1, 1 and AOPC = 4/5.

    >>> import torch
    >>> model = torch.nn.Linear(4, 1, bias=False).double()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    >>> x = torch.ones(1, 4, dtype=torch.float64)
    >>> result = pixel_flipping(model, x, torch.tensor([[0.0, 0.0, 1.0, 0.0]]), target=0)
    >>> result.scores
    array([[1., 0., 0., 0., 0.]])
    >>> result.aopc_mean
    0.8
    """
    x = as_input(model, x)
    order = _choice("order", order, ORDERS)
    mode = _choice("mode", mode, MODES)
    batch_size = _positive_int("batch_size", batch_size)
    target = resolve_target(model, x, target)
    spatial = tuple(x.shape[2:]) if x.ndim >= 3 else tuple(x.shape[1:])
    patch = _patch_size(patch_size, spatial)
    region_id, n_regions = _regions(spatial, patch, x.device)
    n_steps = _steps(steps, n_regions)
    reference = _reference(x, mode, baseline, blur_sigma)

    if order == "random":
        generator = torch.Generator().manual_seed(seed)
        key = torch.rand(x.shape[0], n_regions, generator=generator, dtype=torch.float64)
        key = key.to(x.device)
        name = label if label is not None else "random"
    else:
        if relevance is None:
            raise InputError(
                f"pixel_flipping with order={order!r} needs a relevance map or a method "
                "(Rule, Composite or explainer); pass one, or use order='random'."
            )
        r = relevance_of(relevance, model, x, target)
        region_relevance = x.new_zeros(x.shape[0], n_regions, dtype=torch.float64)
        region_relevance.index_add_(1, region_id, heatmap(r).flatten(1).double())
        key = -region_relevance if order == "most-relevant" else region_relevance
        is_map = isinstance(relevance, torch.Tensor | np.ndarray)
        name = label if label is not None else ("" if is_map else method_name(relevance))
    ranking = torch.argsort(key, dim=1, stable=True)  # ranking[n, r]: the r-th region removed
    rank = torch.empty_like(ranking)  # rank[n, region]: when it is removed (0 = first)
    rank.scatter_(1, ranking, torch.arange(n_regions, device=x.device).expand_as(ranking))

    n_removed = torch.tensor([k * n_regions // n_steps for k in range(n_steps + 1)])
    curves = _evaluate(
        model, x, reference, target, rank, region_id, n_removed, batch_size, progress
    )
    return FlippingResult(
        fractions=n_removed.double().numpy() / n_regions,
        scores=curves,
        target=target.cpu().numpy(),
        order=order,
        mode=mode,
        patch_size=patch,
        label=name,
        n_removed=n_removed.numpy(),
    )


def _evaluate(
    model: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    target: torch.Tensor,
    rank: torch.Tensor,
    region_id: torch.Tensor,
    n_removed: torch.Tensor,
    batch_size: int,
    progress: bool | None,
) -> np.ndarray:
    """:math:`f(x^{(k)})` for every sample n and step k, in batches of (n, k) pairs."""
    n, n_points = x.shape[0], len(n_removed)
    pairs = n * n_points
    mask_shape = (1, *x.shape[2:]) if x.ndim >= 3 else tuple(x.shape[1:])  # all channels
    n_removed = n_removed.to(x.device)
    out = torch.empty(pairs, dtype=torch.float64)
    n_batches = math.ceil(pairs / batch_size)
    bar = progress_bar(n_batches, progress, "pixel flipping", auto_above=20)
    try:
        with torch.no_grad(), eval_mode(model):
            for start in range(0, pairs, batch_size):
                j = torch.arange(start, min(start + batch_size, pairs), device=x.device)
                sample, step = j // n_points, j % n_points
                removed = rank[sample][:, region_id] < n_removed[step][:, None]
                removed = removed.reshape(len(j), *mask_shape)
                perturbed = torch.where(removed, reference[sample], x[sample])
                output = check_output(model(perturbed), len(j))
                out[start : start + len(j)] = scores(output, target[sample]).double().cpu()
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out.reshape(n, n_points).numpy()


def _regions(
    spatial: tuple[int, ...], patch: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, int]:
    """The region of every spatial position (flattened, row-major) and the number *P*."""
    counts = [math.ceil(s / p) for s, p in zip(spatial, patch, strict=True)]
    grids = torch.meshgrid(
        *[torch.arange(s, device=device) // p for s, p in zip(spatial, patch, strict=True)],
        indexing="ij",
    )
    region = torch.zeros(spatial, dtype=torch.long, device=device)
    for grid, count in zip(grids, counts, strict=True):
        region = region * count + grid
    return region.flatten(), math.prod(counts)


def _reference(x: torch.Tensor, mode: str, baseline: Any, sigma: float) -> torch.Tensor:
    """The image whose values replace removed regions, shape of ``x``."""
    if mode == "blur":
        if x.ndim < 3:
            raise InputError(
                f"mode='blur' needs inputs with spatial axes, (N, C, H, W) or (N, C, L); x has "
                f"shape {tuple(x.shape)}. Use mode='remove' with a baseline value."
            )
        if not (isinstance(sigma, int | float) and sigma > 0):
            raise InputError(f"blur_sigma must be a number > 0 (pixels), got {sigma!r}.")
        return gaussian_blur(x, float(sigma))
    if isinstance(baseline, np.ndarray):
        baseline = torch.from_numpy(baseline)
    if mode == "baseline":
        if not isinstance(baseline, torch.Tensor) or tuple(baseline.shape) not in (
            tuple(x.shape),
            tuple(x.shape[1:]),
        ):
            shape = tuple(baseline.shape) if hasattr(baseline, "shape") else repr(baseline)
            raise InputError(
                f"mode='baseline' needs a baseline image of shape {tuple(x.shape[1:])} (one "
                f"sample) or {tuple(x.shape)}, got {shape}."
            )
    value = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(value, x.shape)
    except RuntimeError as error:
        raise InputError(
            f"baseline of shape {tuple(value.shape)} does not broadcast to one sample of shape "
            f"{tuple(x.shape[1:])}; use a number or e.g. per-channel values of shape "
            f"({x.shape[1]}, 1, 1)."
        ) from error


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""Blur the spatial axes (all but N and C) with a Gaussian of width σ, edges replicated.

    The kernel is :math:`g(t) \propto e^{-t^2 / 2\sigma^2}` for :math:`|t| \le \lceil 3\sigma
    \rceil`, normalised to sum 1, applied along one axis after the other.

    >>> import torch
    >>> gaussian_blur(torch.ones(1, 1, 4, 4), 1.0).allclose(torch.ones(1, 1, 4, 4))
    True
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=x.device)
    kernel = torch.exp(-(offsets.to(x.dtype) ** 2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = x
    for dim in range(2, x.ndim):
        n = x.shape[dim]
        index = (torch.arange(n, device=x.device)[:, None] + offsets).clamp(0, n - 1)
        windows = out.index_select(dim, index.flatten()).unflatten(dim, (n, len(offsets)))
        shape = [1] * windows.ndim
        shape[dim + 1] = len(offsets)
        out = (windows * kernel.reshape(shape)).sum(dim + 1)
    return out


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.")
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be an int ≥ 1, got {value!r}.")
    return int(value)


def _patch_size(patch_size: Any, spatial: tuple[int, ...]) -> tuple[int, ...]:
    patch = (patch_size,) * len(spatial) if isinstance(patch_size, int) else tuple(patch_size)
    if len(patch) != len(spatial) or any(
        isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 1 for p in patch
    ):
        raise InputError(
            f"patch_size must be an int ≥ 1 or one int per spatial axis {spatial}, "
            f"got {patch_size!r}."
        )
    return tuple(int(p) for p in patch)


def _steps(steps: Any, n_regions: int) -> int:
    if steps is None:
        return min(n_regions, MAX_DEFAULT_STEPS)
    steps = _positive_int("steps", steps)
    if steps > n_regions:
        raise InputError(
            f"steps={steps} is more than the {n_regions} regions there are to remove; use at "
            f"most {n_regions} (or a smaller patch_size)."
        )
    return steps
