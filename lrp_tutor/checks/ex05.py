r"""Exercise 05: a composite for VGG-16 — which rule where, and why.

Montavon et al. (2019, *Layer-Wise Relevance Propagation: An Overview*, sec. 10.2) explain
VGG-16 with z^B at the pixels, LRP-γ in the lower convolutions, LRP-ε in the middle ones
and LRP-0 in the dense top layers. As in their tutorial, the middle layers' ε is relative:
0.25 times the RMS of the layer's z, per sample. With torchvision's layer names:

=========================  ===============================  ==================================
layers                     rule                             why
=========================  ===============================  ==================================
features.0                 ZBox(low, high)                  pixels are bounded, can be < 0
features.2 … features.14   Gamma(0.25)                      stable, favours positive evidence
features.17 … features.28  Epsilon(0.25, relative=True)     absorbs weak, contradicting
                                                            evidence, whatever the scale
classifier.0, .3, .6       LRP0()                           few, simple layers: faithful
=========================  ===============================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..composites import WEIGHTED, Composite
from ..rules import LRP0, Epsilon, Gamma, Rule, ZBox
from ._core import Case, Failure, as_array, as_pair, call, checker, compare, entry, numbered

__all__ = ["ex05_pixel_bounds", "ex05_composite", "vgg16_skeleton", "VGG16_CONVOLUTIONS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG16_CONVOLUTIONS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
"""Indices of the Conv2d layers in torchvision's ``vgg16().features``."""

_LOWER = [f"features.{i}" for i in VGG16_CONVOLUTIONS[1:7]]
_MIDDLE = [f"features.{i}" for i in VGG16_CONVOLUTIONS[7:]]
_TOP = ["classifier.0", "classifier.3", "classifier.6"]


def _weighted_names(model: Any) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, WEIGHTED)]


def vgg16_skeleton() -> Any:
    """VGG-16's layers without weights (on PyTorch's ``meta`` device): builds instantly.

    The same modules and names as ``lrp_tutor.zoo.vgg16()`` (torchvision's structure); use
    it to see the layer names and to resolve composites. It cannot compute anything.

    >>> model = vgg16_skeleton()
    >>> [name for name, m in model.named_modules() if type(m).__name__ == "Linear"]
    ['classifier.0', 'classifier.3', 'classifier.6']
    """
    import torch

    from ..zoo import vgg16

    with torch.device("meta"):
        model = vgg16()
    return model.eval()


def _bounds(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


def _channels(a: np.ndarray) -> np.ndarray:
    """(3, 1, 1) broadcasts over (N, 3, H, W) just as well as (1, 3, 1, 1): accept it."""
    return a[None] if a.shape == (3, 1, 1) else a


_BOUNDS_SHAPE = (
    "numpy lines up the LAST axes: an array of shape (3,) would pair with the image's width, "
    "not with its channels. Reshape to (1, 3, 1, 1) so that it broadcasts over (N, 3, H, W)."
)


@checker("05.1", "pixel_bounds", "pixel_bounds(mean, std)")
def ex05_pixel_bounds(pixel_bounds: Callable) -> str:
    r"""Check Task 05.1: the bounds of a normalised pixel, :math:`(0 - \mu)/\sigma` and
    :math:`(1 - \mu)/\sigma`, shaped (1, 3, 1, 1).

    Examples
    --------
    >>> def pixel_bounds(mean, std):
    ...     mean = np.asarray(mean).reshape(1, 3, 1, 1)
    ...     std = np.asarray(std).reshape(1, 3, 1, 1)
    ...     return (0 - mean) / std, (1 - mean) / std
    >>> ex05_pixel_bounds(pixel_bounds).passed
    True
    """
    names = ("mean", "std")
    cases = numbered(
        [
            Case("ImageNet normalisation (tuples)", (IMAGENET_MEAN, IMAGENET_STD), names),
            Case(
                "other channel statistics (arrays)",
                (np.array([0.2, 0.5, 0.7]), np.array([0.1, 0.3, 0.25])),
                names,
            ),
        ],
        held_out=[Case("equal channels (lists)", ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]), names)],
    )
    for case in cases:
        mean, std = case.args
        low, high = _bounds(mean, std)
        m, s = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        got_low, got_high = as_pair(call(pixel_bounds, case), case, "(low, high)")
        got_low = _channels(as_array(got_low, case, "low, shape (1, 3, 1, 1)"))
        got_high = _channels(as_array(got_high, case, "high, shape (1, 3, 1, 1)"))
        if got_low.shape == low.shape and np.allclose(got_low, high) and np.allclose(got_high, low):
            raise Failure(f"{case.header()}\nYou returned (high, low); return (low, high).")
        raw = (
            "the network sees normalised pixels x̃ = (x − mean)/std, not raw pixels in [0, 1]: "
            "the smallest value a channel can take is (0 − mean)/std, the largest (1 − mean)/std."
        )
        label = entry("·", "channel")
        compare(
            got_low,
            low,
            case,
            what="low",
            label=label,
            shape_hint=" = (1, C, 1, 1)",
            variants=[
                (_BOUNDS_SHAPE, lambda m=m, s=s: (0 - m) / s),
                (raw, lambda: 0.0),
                (raw, lambda low=low: np.zeros_like(low)),
                (
                    "you swapped mean and std: low = (0 − mean)/std.",
                    lambda m=m, s=s: ((0 - s) / m).reshape(1, -1, 1, 1),
                ),
                (
                    "you multiplied by std; normalisation divides: (0 − mean)/std.",
                    lambda m=m, s=s: ((0 - m) * s).reshape(1, -1, 1, 1),
                ),
            ],
            hint="low = (0 − mean)/std per channel, shaped (1, 3, 1, 1).",
        )
        compare(
            got_high,
            high,
            case,
            what="high",
            label=label,
            shape_hint=" = (1, C, 1, 1)",
            variants=[
                (_BOUNDS_SHAPE, lambda m=m, s=s: (1 - m) / s),
                (raw, lambda: 1.0),
                (raw, lambda high=high: np.ones_like(high)),
                (
                    "you forgot the mean: high = (1 − mean)/std.",
                    lambda s=s: (1 / s).reshape(1, -1, 1, 1),
                ),
                (
                    "you swapped mean and std: high = (1 − mean)/std.",
                    lambda m=m, s=s: ((1 - s) / m).reshape(1, -1, 1, 1),
                ),
            ],
            hint="high = (1 − mean)/std per channel, shaped (1, 3, 1, 1).",
        )
    low, high = _bounds(IMAGENET_MEAN, IMAGENET_STD)
    return (
        f"Both cases agree. For ImageNet, low = {np.round(low.ravel(), 3).tolist()} and "
        f"high = {np.round(high.ravel(), 3).tolist()}: after normalisation pixels are negative "
        "as often as positive, which is why the pixel layer needs its own rule."
    )


_WHY = {
    "pixels": (
        "features.0 sees the pixels. They are bounded (low ≤ x̃ ≤ high) and can be negative "
        "after normalisation, so rules made for ReLU outputs (γ, z⁺) do not fit; z^B, "
        "ZBox(low, high), uses the box the pixels live in."
    ),
    "lower": (
        "the lower convolutions (features.2 … features.14) get LRP-γ with γ = 0.25: favouring "
        "positive contributions makes the explanation stable and spreads relevance over whole "
        "features instead of single noisy pixels."
    ),
    "middle": (
        "the middle convolutions (features.17 … features.28) get LRP-ε with ε = 0.25 relative "
        "to the layer, Epsilon(0.25, relative=True): the stabiliser adds 0.25·RMS(z) of the "
        "layer (per sample), so it absorbs weak and contradicting contributions — weak "
        "compared with the layer's typical |z_j| — whatever the scale of the activations, and "
        "only the salient evidence travels on."
    ),
    "top": (
        "the dense layers (classifier.0, .3, .6) get LRP-0: near the output there are few "
        "layers, the plain rule is faithful to the function there, and no noise has "
        "accumulated yet."
    ),
}


def _expected(low: np.ndarray, high: np.ndarray) -> dict[str, tuple[Rule, str]]:
    expected: dict[str, tuple[Rule, str]] = {"features.0": (ZBox(low, high), "pixels")}
    expected.update({name: (Gamma(0.25), "lower") for name in _LOWER})
    expected.update({name: (Epsilon(0.25, relative=True), "middle") for name in _MIDDLE})
    expected.update({name: (LRP0(), "top") for name in _TOP})
    return expected


def _rule_problem(got: Rule | None, want: Rule, low: np.ndarray, high: np.ndarray) -> str | None:
    """None when ``got`` is the rule ``want`` (up to an ε ≤ 1e-6 for LRP-0), else what differs."""
    if got is None:
        return "it has no rule."
    if isinstance(want, ZBox):
        if not isinstance(got, ZBox):
            return f"it got {got!r}, expected ZBox(low, high)."
        for name, value in (("low", low), ("high", high)):
            given = np.asarray(_numpy(getattr(got, name)), dtype=np.float64)
            try:
                ok = np.allclose(np.broadcast_to(given, value.shape), value)
            except ValueError:
                return f"ZBox's {name} has shape {given.shape}. {_BOUNDS_SHAPE}"
            if not ok:
                return (
                    f"ZBox got {name} = {np.round(given.ravel(), 3).tolist()}; pass the bounds "
                    "given to your function (the normalised ones from Task 05.1)."
                )
        return None
    if isinstance(want, LRP0):
        if type(got) in (LRP0, Epsilon) and got.epsilon <= 1e-6:
            return None
        return f"it got {got!r}, expected LRP0()."
    if type(got) is not type(want):
        return f"it got {got!r}, expected {want!r}."
    if isinstance(want, Gamma):
        if abs(got.gamma - want.gamma) > 1e-12:
            return f"it got {got!r}; the recipe uses γ = {want.gamma:g}."
        return None
    if abs(got.epsilon - want.epsilon) > 1e-12:
        weak = " — so small that it barely absorbs anything" if got.epsilon < 1e-3 else ""
        return f"it got {got!r}{weak}; the recipe uses ε = {want.epsilon:g}: {want!r}."
    if got.relative != want.relative:
        return (
            f"it got {got!r}, an absolute ε; the recipe's ε is relative to the layer: "
            f"{want!r} adds {want.epsilon:g}·RMS(z) of the layer's z (per sample) instead of "
            f"{want.epsilon:g}, so that it absorbs the same share of weak contributions "
            "whatever the scale of the activations."
        )
    return None


def _numpy(a: Any) -> Any:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else a


@checker("05.2", "vgg16_composite", "vgg16_composite(low, high)")
def ex05_composite(vgg16_composite: Callable) -> str:
    r"""Check Task 05.2: the composite gives every weighted layer of VGG-16 its rule.

    Examples
    --------
    >>> from lrp_tutor import composites
    >>> ex05_composite(lambda low, high: composites.montavon_vgg(vgg16_skeleton(), low, high)
    ...               ).passed
    True
    >>> result = ex05_composite(lambda low, high: composites.epsilon_gamma_box(low, high))
    >>> print(result.message.splitlines()[1])
    Layer features.17: it got Gamma(gamma=0.25), expected Epsilon(epsilon=0.25, relative=True).
    """
    cases = numbered(
        [
            Case(
                "VGG-16 with ImageNet bounds", _bounds(IMAGENET_MEAN, IMAGENET_STD), ("low", "high")
            )
        ],
        held_out=[
            Case(
                "VGG-16 with the bounds of other channel statistics",
                _bounds([0.3, 0.4, 0.5], [0.2, 0.25, 0.3]),
                ("low", "high"),
            )
        ],
    )
    for case in cases:
        _check_composite(vgg16_composite, case)
    return (
        "All 16 weighted layers get the right rule: features.0 ZBox (pixels), features.2–14 "
        "Gamma(0.25), features.17–28 Epsilon(0.25, relative=True), classifier.0/3/6 LRP-0 — "
        "the same as "
        "composites.montavon_vgg."
    )


def _check_composite(vgg16_composite: Callable, case: Case) -> None:
    """Raise :class:`Failure` unless ``vgg16_composite(low, high)`` gives every layer its rule."""
    low, high = case.args
    composite = call(vgg16_composite, case)
    if not isinstance(composite, Composite):
        hint = (
            " Wrap your dictionary: composites.by_name(your_dict)."
            if isinstance(composite, dict)
            else ""
        )
        raise Failure(
            f"{case.header()}\nYour function returned {type(composite).__name__}; expected a "
            f"lrp_tutor.composites.Composite (from Composite(...), by_name(...) or "
            f"by_type(...)).{hint}"
        )
    model = vgg16_skeleton()
    try:
        resolved = composite.resolve(model)
    except Exception as error:
        raise Failure(
            f"{case.header()}\nResolving your composite on VGG-16 failed: {error}"
        ) from None
    expected = _expected(low, high)
    for name in _weighted_names(model):
        want, group = expected[name]
        problem = _rule_problem(resolved.get(name), want, low, high)
        if problem:
            raise Failure(f"{case.header()}\nLayer {name}: {problem}\nWhy: {_WHY[group]}")
