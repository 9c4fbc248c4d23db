"""Turn what the user hands a figure (numpy arrays, torch tensors, lists) into float64 arrays.

Every check raises :class:`~lrp_tutor.errors.InputError` naming the argument and saying what
to do. Nothing here computes LRP; it only reshapes and validates what is to be drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A float64 numpy array of ``value`` (a torch tensor is detached and moved to the CPU).

    >>> to_numpy([1, 2], "values")
    array([1., 2.])
    """
    if value is None:
        raise InputError(f"{name} is None; pass an array or a tensor of numbers.")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        value = value.detach().cpu().double().numpy()
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be an array or a tensor of real numbers, got {type(value).__name__}."
        ) from exc
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise InputError(
            f"{name} contains {bad} NaN or infinite value(s) out of {array.size}; a figure cannot "
            "show them. Look for a division by zero (e.g. LRP-0 with z_j = 0) before plotting."
        )
    return array


def drop_batch(array: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Drop a leading batch axis of size 1 from an array with ``ndim + 1`` axes."""
    if array.ndim == ndim + 1:
        if array.shape[0] != 1:
            raise InputError(
                f"{name} holds a batch of {array.shape[0]} samples (shape {array.shape}); a figure "
                f"shows one sample: pass {name}[0] (or the sample you want)."
            )
        return array[0]
    return array


def relevance_map(
    relevance: Any,
    *,
    shape: tuple[int, ...] | None = None,
    channel_axis: int = 0,
    name: str = "relevance",
) -> np.ndarray:
    """The (H, W) map of one sample's relevance: channels summed, :math:`R_{hw} = \\sum_c R_{chw}`.

    Accepts (H, W), (C, H, W) (channels on ``channel_axis``), (1, C, H, W), or any array of
    H·W (or C·H·W) numbers together with ``shape=``.

    >>> relevance_map(np.ones((3, 2, 2)))
    array([[3., 3.],
           [3., 3.]])
    >>> relevance_map(np.arange(4.0), shape=(2, 2))
    array([[0., 1.],
           [2., 3.]])
    """
    array = to_numpy(relevance, name)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != array.size:
            raise InputError(
                f"{name} has {array.size} values, which cannot be shown with shape={shape} "
                f"({int(np.prod(shape))} values)."
            )
        array = array.reshape(shape)
    array = drop_batch(array, name, 3)
    if array.ndim == 3:
        return array.sum(axis=channel_axis)
    if array.ndim == 2:
        return array
    hint = ""
    if array.ndim == 1:
        side = int(round(np.sqrt(array.size)))
        square = f" (e.g. shape=({side}, {side}))" if side * side == array.size else ""
        hint = (
            f" Pass shape=(H, W){square} to show it as an image, or use bars() for the "
            "relevance of a layer's neurons."
        )
    raise InputError(
        f"{name} must be one sample as (H, W) or (C, H, W), got shape {array.shape}.{hint}"
    )


def image_for_display(
    image: Any, size: tuple[int, int], *, gray: bool = True, name: str = "image"
) -> np.ndarray:
    """The image scaled to [0, 1] for display: (H, W) if grey (or ``gray=True``), else (H, W, 3).

    Accepts (H, W), channels first (C, H, W) or last (H, W, C) with C in {1, 3, 4} (an alpha
    channel is dropped), or (1, C, H, W). Any range: :math:`(x - \\min x)/(\\max x - \\min x)`.
    ``gray=True`` turns RGB into its luminance, so that red and blue stay for relevance.

    >>> image_for_display(np.array([[0.0, 5.0], [10.0, 5.0]]), (2, 2))
    array([[0. , 0.5],
           [1. , 0.5]])
    """
    array = drop_batch(to_numpy(image, name), name, 3)
    if array.ndim == 3:
        if array.shape[0] in (1, 3, 4) and array.shape[1:] == tuple(size):
            array = np.moveaxis(array, 0, -1)
        elif not (array.shape[-1] in (1, 3, 4) and array.shape[:2] == tuple(size)):
            raise InputError(
                f"{name} has shape {array.shape}, which is not (C, H, W) or (H, W, C) with "
                f"C in (1, 3, 4) and (H, W) = {tuple(size)}, the size of the relevance map."
            )
        array = array[..., :3]
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif gray:
            array = array @ np.array([0.299, 0.587, 0.114])
    elif array.ndim != 2:
        raise InputError(f"{name} must be (H, W), (C, H, W) or (H, W, C), got shape {array.shape}.")
    if array.shape[:2] != tuple(size):
        raise InputError(
            f"{name} is {array.shape[0]}×{array.shape[1]} pixels but the relevance map is "
            f"{size[0]}×{size[1]}; pass the input that was explained."
        )
    low, high = array.min(), array.max()
    if high == low:
        return np.full(array.shape, 0.5)
    return (array - low) / (high - low)


def vector(values: Any, name: str) -> np.ndarray:
    """A 1-D float64 array; leading axes of size 1 (a batch of one) are dropped.

    >>> vector([[1.0, -2.0]], "values")
    array([ 1., -2.])
    """
    array = to_numpy(values, name)
    while array.ndim > 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0:
        raise InputError(
            f"{name} must be a non-empty 1-D array (one number per neuron), got shape "
            f"{array.shape}; flatten it first, e.g. {name}.flatten()."
        )
    return array


def matrix(values: Any, name: str) -> np.ndarray:
    """A 2-D float64 array (rows i, columns j); a 1-D array becomes one column (one neuron j).

    >>> matrix([1.0, 2.0], "messages").shape
    (2, 1)
    """
    array = to_numpy(values, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.size == 0:
        raise InputError(
            f"{name} must be a 2-D array (rows = inputs i, columns = outputs j) or a 1-D array "
            f"(one output neuron), got shape {array.shape}."
        )
    return array


def symmetric_limit(values: np.ndarray, percentile: float = 100.0) -> float:
    """The colour limit v of a symmetric range [−v, v]: the ``percentile`` of :math:`|R|`.

    Falls back to max |R| when the percentile is 0 (sparse maps), and to 1 when all is zero.

    >>> symmetric_limit(np.array([-4.0, 1.0, 2.0]))
    4.0
    >>> symmetric_limit(np.zeros(3))
    1.0
    """
    check_percentile(percentile)
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    if magnitude.size == 0:
        return 1.0
    limit = float(np.percentile(magnitude, percentile))
    if limit == 0.0:
        limit = float(magnitude.max())
    return limit if limit > 0.0 else 1.0


def check_percentile(percentile: float) -> None:
    """Raise InputError unless 0 < percentile ≤ 100."""
    if not isinstance(percentile, int | float | np.integer | np.floating) or not (
        0 < float(percentile) <= 100
    ):
        raise InputError(
            f"percentile must be a number in (0, 100], got {percentile!r}; 99.5 clips the "
            "brightest 0.5 % of pixels, 100 shows the full range."
        )
