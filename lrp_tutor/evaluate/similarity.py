r"""How alike are two explanations? Spearman rank correlation and SSIM, in numpy and torch.

**Spearman's rank correlation** is Pearson's correlation of the ranks (ties get the mean
of their ranks, as in ``scipy.stats.spearmanr``):

.. math::

    \rho = \frac{\mathrm{cov}(\mathrm{rank}\,a, \mathrm{rank}\,b)}
                {\sigma_{\mathrm{rank}\,a}\,\sigma_{\mathrm{rank}\,b}} \in [-1, 1]

**SSIM** (Wang et al. 2004, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 13(4), eq. 13) compares local means μ, variances σ² and the
covariance σ_ab in a Gaussian window (11 × 11, σ = 1.5), and averages over the windows that
fit in the image:

.. math::

    \mathrm{SSIM}(a, b) = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}
                               {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},
    \qquad C_1 = (0.01\,L)^2,\; C_2 = (0.03\,L)^2

with *L* the data range. Identical images give 1.

Examples
--------
>>> import numpy as np
>>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 100.0]))
1.0
>>> ssim(np.eye(12), np.eye(12), data_range=1.0)
1.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError

__all__ = ["rankdata", "spearman", "ssim", "K1", "K2", "WINDOW_SIZE", "WINDOW_SIGMA"]

K1, K2 = 0.01, 0.03
"""The constants of SSIM (Wang et al. 2004): C₁ = (K₁L)², C₂ = (K₂L)²."""
WINDOW_SIZE, WINDOW_SIGMA = 11, 1.5
"""The Gaussian window of SSIM (Wang et al. 2004): 11 taps per axis, σ = 1.5."""


def _numpy(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    array = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values.")
    return array


def rankdata(a: Any) -> np.ndarray:
    """Ranks 1 … n of the values of a 1-D array; ties get the mean of their ranks.

    >>> rankdata([0.5, 0.1, 0.5, 0.9])
    array([2.5, 1. , 2.5, 4. ])
    """
    a = _numpy(a, "a").ravel()
    sorter = np.argsort(a, kind="stable")
    inverse = np.empty_like(sorter)
    inverse[sorter] = np.arange(a.size)
    ordered = a[sorter]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # the start of each group of ties
    group = np.cumsum(first)[inverse]  # the group of every value, 1 … g
    bounds = np.r_[np.flatnonzero(first), a.size]  # group g spans bounds[g-1] … bounds[g]-1
    return 0.5 * (bounds[group - 1] + 1 + bounds[group])


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two maps of the same shape (flattened).

    NaN when either map is constant (its ranks carry no order).

    >>> spearman([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    -1.0
    """
    a, b = _numpy(a, "a"), _numpy(b, "b")
    if a.shape != b.shape:
        raise InputError(f"spearman: the maps differ in shape, {a.shape} and {b.shape}.")
    ra, rb = rankdata(a) - (a.size + 1) / 2, rankdata(b) - (b.size + 1) / 2
    norm = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if norm == 0:
        return math.nan
    return float(np.clip(ra @ rb / norm, -1.0, 1.0))


def ssim(
    a: Any,
    b: Any,
    *,
    data_range: float | None = None,
    window_size: int = WINDOW_SIZE,
    sigma: float = WINDOW_SIGMA,
) -> float:
    """The mean SSIM of two images (or 1-D signals) of the same shape.

    Parameters
    ----------
    a, b : array or tensor, shape (H, W) or (L,)
        The two maps, compared in float64.
    data_range : float, optional
        *L*, the range the values can span; default ``max − min`` over both maps (1 when
        both are constant).
    window_size, sigma
        The Gaussian window; along an axis shorter than ``window_size`` it shrinks to the
        largest odd size that fits.

    Examples
    --------
    Two constant images differ only in luminance:
    :math:`(2 \\cdot 0.2 \\cdot 0.6 + C_1) / (0.2^2 + 0.6^2 + C_1)`.

    >>> c1 = (0.01 * 1.0) ** 2
    >>> bool(np.isclose(ssim(np.full((8, 8), 0.2), np.full((8, 8), 0.6), data_range=1.0),
    ...                 (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rtol=1e-12))
    True
    """
    a, b = _numpy(a, "a"), _numpy(b, "b")
    if a.shape != b.shape or a.ndim not in (1, 2, 3):
        raise InputError(
            f"ssim needs two maps of the same shape with 1 to 3 axes, got {a.shape} and "
            f"{b.shape}; compare one image at a time (sum the channels first)."
        )
    if data_range is None:
        data_range = float(max(a.max(), b.max()) - min(a.min(), b.min())) or 1.0
    ta, tb = torch.from_numpy(a)[None], torch.from_numpy(b)[None]
    return float(ssim_batch(ta, tb, data_range, window_size, sigma)[0])


def ssim_batch(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float,
    window_size: int = WINDOW_SIZE,
    sigma: float = WINDOW_SIGMA,
) -> torch.Tensor:
    """SSIM of ``a[n]`` and ``b[n]`` for every n (all axes after the first are spatial)."""
    if not data_range > 0:
        raise InputError(f"ssim: data_range must be > 0, got {data_range!r}.")
    a, b = a.double(), b.double()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _gaussian_filter(a, window_size, sigma), _gaussian_filter(b, window_size, sigma)
    var_a = _gaussian_filter(a * a, window_size, sigma) - mu_a * mu_a
    var_b = _gaussian_filter(b * b, window_size, sigma) - mu_b * mu_b
    cov_ab = _gaussian_filter(a * b, window_size, sigma) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (numerator / denominator).flatten(1).mean(dim=1)


def _gaussian_filter(t: torch.Tensor, window_size: int, sigma: float) -> torch.Tensor:
    """Weighted local means in a Gaussian window, only where the window fits ("valid")."""
    for dim in range(1, t.ndim):
        size = min(window_size, t.shape[dim])
        size -= 1 - size % 2  # odd, so that the window has a centre
        offsets = torch.arange(size, dtype=t.dtype, device=t.device) - (size - 1) / 2
        weights = torch.exp(-(offsets**2) / (2 * sigma**2))
        t = (t.unfold(dim, size, 1) * (weights / weights.sum())).sum(-1)
    return t
