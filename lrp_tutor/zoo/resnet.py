r"""ResNet-18 and ResNet-50 in plain torch, with torchvision's structure and parameter names.

A residual block computes :math:`\mathrm{relu}(F(x) + \mathrm{identity}(x))`, where the
branch *F* is conv–bn–relu–conv–bn (``BasicBlock``) or conv1×1–bn–relu–conv3×3–bn–relu–
conv1×1–bn (``Bottleneck``), and the identity is *x* itself or, where the shape changes,
``downsample(x)`` (a strided 1×1 convolution and a batch norm). As in torchvision the sum is
written ``out += identity`` in ``forward``; LRP's residual canonizer recognises the blocks by
their attributes ``conv1``, ``bn1``, ``relu``, ``conv2``, ``bn2`` (``conv3``, ``bn3``),
``downsample`` and ``stride``.

>>> import torch
>>> with torch.device("meta"):
...     model = resnet50()
>>> model.layer1[0].downsample[0].weight.shape
torch.Size([256, 64, 1, 1])
"""

from __future__ import annotations

import torch
from torch import nn

from .pretrained import load_pretrained


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a skip connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand by 4, and a skip (ResNet-50)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """Stem (7×7 conv, bn, relu, 3×3 max-pool), four stages of blocks, global average pool,
    ``fc``. Initialised like torchvision: convolutions Kaiming-normal (fan_out, ReLU), batch
    norms weight 1 bias 0, ``fc`` torch's default; ``zero_init_residual`` zeroes the last
    batch norm of every branch."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(arch: str, block, layers: list[int], pretrained: bool, num_classes: int) -> ResNet:
    model = ResNet(block, layers, num_classes=num_classes)
    if pretrained:
        load_pretrained(model, arch, num_classes)
    return model.eval()


def resnet18(pretrained: bool = False, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (He et al. 2016): ``BasicBlock`` × [2, 2, 2, 2], torchvision's names.

    Parameters
    ----------
    pretrained : bool
        Load torchvision's ImageNet weights (needs torchvision, and a network the first
        time); otherwise raise :class:`~lrp_tutor.errors.WeightsError` saying how to load a
        local file: ``model.load_state_dict(torch.load(path, weights_only=True))``.
    num_classes : int
        Outputs of ``fc`` (1000 for ImageNet).

    Returns
    -------
    ResNet in eval mode.
    """
    return _resnet("resnet18", BasicBlock, [2, 2, 2, 2], pretrained, num_classes)


def resnet50(pretrained: bool = False, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (He et al. 2016): ``Bottleneck`` × [3, 4, 6, 3], stride on the 3×3
    convolution as in torchvision (arguments as :func:`resnet18`)."""
    return _resnet("resnet50", Bottleneck, [3, 4, 6, 3], pretrained, num_classes)
