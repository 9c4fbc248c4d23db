"""torchvision's ImageNet weights for the plain-torch VGG and ResNet builders.

Only when torchvision is importable and the weights are in its cache or can be downloaded;
otherwise a :class:`~lrp_tutor.errors.WeightsError` says how to load a local file instead.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from ..errors import WeightsError

TORCHVISION_WEIGHTS = "IMAGENET1K_V1"
"""The torchvision weights that ``pretrained=True`` asks for (those of ``pretrained=True``
in older torchvision)."""


def _local_file_hint(arch: str) -> str:
    return (
        f"To use a weight file you have (e.g. torchvision's {arch} ImageNet weights copied "
        f"from a machine with network): model = lrp_tutor.zoo.{arch}(); "
        "model.load_state_dict(torch.load(path, weights_only=True))"
    )


def torchvision_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """The state_dict of torchvision's ``arch`` with its ImageNet weights.

    Raises
    ------
    WeightsError
        torchvision is not installed, or the weights are not cached and cannot be downloaded.
    """
    try:
        models = importlib.import_module("torchvision.models")
    except ImportError as error:
        raise WeightsError(
            f"{arch}(pretrained=True) takes torchvision's ImageNet weights through torchvision, "
            f"which is not installed here. {_local_file_hint(arch)}"
        ) from error
    try:
        return getattr(models, arch)(weights=TORCHVISION_WEIGHTS).state_dict()
    except Exception as error:  # no network, a broken cache, an old torchvision
        raise WeightsError(
            f"torchvision could not provide the ImageNet weights of {arch} ({error!r}); they are "
            f"downloaded the first time, which needs a network. {_local_file_hint(arch)}"
        ) from error


def load_pretrained(model: nn.Module, arch: str, num_classes: int) -> nn.Module:
    """Load torchvision's ImageNet weights of ``arch`` into ``model`` (1000 classes only)."""
    if num_classes != 1000:
        raise WeightsError(
            f"{arch}(pretrained=True, num_classes={num_classes}): the ImageNet weights have "
            "1000 classes. Build with num_classes=1000 and replace the last linear layer."
        )
    state = torchvision_state_dict(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"torchvision's {arch} weights do not fit: {error}") from error
    return model
