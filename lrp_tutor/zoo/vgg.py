"""VGG-16 in plain torch, with torchvision's module structure and parameter names.

``features`` is an ``nn.Sequential`` of 3×3 convolutions (padding 1) with in-place ReLUs and
2×2 max-pools, ``avgpool`` an ``AdaptiveAvgPool2d((7, 7))``, ``classifier`` the sequence
Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear. Parameter names are therefore
``features.0.weight`` … ``features.28.bias``, ``classifier.0.weight`` … ``classifier.6.bias``,
so torchvision's state_dict loads as it is.

>>> import torch
>>> with torch.device("meta"):
...     model = vgg16()
>>> model.classifier[6].weight.shape
torch.Size([1000, 4096])
"""

from __future__ import annotations

import torch
from torch import nn

from .pretrained import load_pretrained

VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
"""Output channels of each 3×3 convolution of VGG-16 ("D" in the paper); "M" a max-pool."""


def vgg_features(config: tuple[int | str, ...], batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part of a VGG network described by ``config``."""
    layers: list[nn.Module] = []
    channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network: ``features``, ``avgpool``, flatten, ``classifier``.

    Initialised like torchvision: convolutions Kaiming-normal (fan_out, ReLU) with zero bias,
    batch norms weight 1 bias 0, linear layers N(0, 0.01²) with zero bias.
    """

    def __init__(
        self,
        features: nn.Sequential,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, 0.0, 0.01)
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def vgg16(pretrained: bool = False, num_classes: int = 1000) -> VGG:
    """VGG-16 (Simonyan & Zisserman 2015) with torchvision's structure and names.

    Parameters
    ----------
    pretrained : bool
        Load torchvision's ImageNet weights (needs torchvision, and a network the first
        time); otherwise raise :class:`~lrp_tutor.errors.WeightsError` saying how to load a
        local file: ``model.load_state_dict(torch.load(path, weights_only=True))``.
    num_classes : int
        Outputs of the last linear layer (1000 for ImageNet).

    Returns
    -------
    VGG in eval mode.
    """
    model = VGG(vgg_features(VGG16_CONFIG), num_classes=num_classes, init_weights=not pretrained)
    if pretrained:
        load_pretrained(model, "vgg16", num_classes)
    return model.eval()
