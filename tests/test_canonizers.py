"""BatchNorm merged into the layer before it (or explained on its own), and residual blocks:
any addition the model's code performs is a join of branches."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from lrp_tutor import composites
from lrp_tutor.errors import UnsupportedLayerError
from lrp_tutor.fast import Sum, explain
from lrp_tutor.fast.canonizers import merge_batchnorm
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, ZPlus

f64 = torch.float64
RULES = [LRP0(), Epsilon(), Epsilon(0.1), ZPlus(), AlphaBeta(2, 1), Gamma(0.25), Flat()]


def randomise(bn: nn.Module, positive: bool = False) -> nn.Module:
    """Non-trivial running statistics and affine parameters (scales of both signs)."""
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if bn.affine:
            bn.weight.uniform_(0.5 if positive else -1.5, 1.5)
            bn.bias.uniform_(-1, 1)
    return bn


# ------------------------------------------------------------------------------ BatchNorm


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "layer, bn, shape",
    [
        (lambda b: nn.Linear(5, 3, bias=b), lambda a: nn.BatchNorm1d(3, affine=a), (4, 5)),
        (lambda b: nn.Conv1d(2, 3, 3, bias=b), lambda a: nn.BatchNorm1d(3, affine=a), (4, 2, 7)),
        (lambda b: nn.Conv2d(2, 3, 3, bias=b), lambda a: nn.BatchNorm2d(3, affine=a), (4, 2, 6, 6)),
    ],
)
def test_merged_layer_computes_the_pair(layer, bn, shape, affine, bias):
    torch.manual_seed(0)
    lin, norm = layer(bias).double(), randomise(bn(affine).double().eval())
    weight, b = merge_batchnorm(lin, norm, "bn")
    x = torch.randn(*shape, dtype=f64)
    expected = norm(lin(x))
    if isinstance(lin, nn.Linear):
        merged = x @ weight.T + b
    else:
        conv = nn.functional.conv1d if x.ndim == 3 else nn.functional.conv2d
        merged = conv(x, weight, b)
    torch.testing.assert_close(merged, expected, rtol=1e-12, atol=1e-12)
    assert weight is not lin.weight and not weight.requires_grad


def conv_bn_net(seed: int = 0, positive: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 3),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            randomise(m, positive)
    return net.double().eval()


def folded(net: nn.Sequential) -> nn.Sequential:
    """The same network written by hand without BatchNorm (its reference)."""
    layers, children = [], list(net.children())
    for k, m in enumerate(children):
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            continue
        nxt = children[k + 1] if k + 1 < len(children) else None
        if isinstance(nxt, nn.BatchNorm1d | nn.BatchNorm2d):
            w, b = merge_batchnorm(m, nxt, "bn")
            m = copy.deepcopy(m)
            m.weight = nn.Parameter(w.clone())
            m.bias = nn.Parameter(b.clone())
        layers.append(m)
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("batch", [1, 12])
@pytest.mark.parametrize("positive", [False, True], ids=["any scale", "positive scale"])
@pytest.mark.parametrize("rule", RULES + [composites.epsilon_plus_flat()], ids=repr)
def test_explaining_with_batchnorm_is_explaining_the_folded_network(rule, positive, batch):
    # a positive BatchNorm scale acts on the outputs (ρ(λw) = λρ(w)) where the activations
    # are smaller than the weight (batch 1: the second conv and the dense layer), otherwise
    # on the weights (batch 12: every layer)
    net = conv_bn_net(positive=positive)
    reference = folded(net)
    x = torch.randn(batch, 3, 8, 8, dtype=f64)
    kw = {"composite": rule} if isinstance(rule, composites.Composite) else {"rule": rule}
    e = explain(net, x, **kw)
    r = explain(reference, x, **kw)
    torch.testing.assert_close(e.output, r.output, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-10, atol=1e-12)
    assert [en.layer for en in e.ledger][:2] == ["0 (Conv2d+BatchNorm2d)", "2 (ReLU)"]
    assert len(e.ledger) == len(r.ledger)
    for mine, theirs in zip(e.ledger, r.ledger, strict=True):
        for field in ("relevance_out", "relevance_in", "bias", "stabilizer"):
            torch.testing.assert_close(
                getattr(mine, field), getattr(theirs, field), rtol=1e-10, atol=1e-12
            )
    assert e.ledger.holds(1e-10)


class FeedsOther(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(self.bn(y.clone()).mean((2, 3)))


@pytest.mark.parametrize(
    "model, label",
    [
        (nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.Flatten()), "0 (BatchNorm2d)"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2), nn.Flatten()),
            "2 (BatchNorm2d)",
        ),
        (FeedsOther(), "bn (BatchNorm2d)"),
    ],
    ids=["before a conv", "after a ReLU", "after a copy"],
)
def test_batchnorm_anywhere_is_a_per_channel_affine_map(model, label):
    """A BatchNorm that is not merged is explained on its own: z_j = λ_j x_j + shift_j under
    the ε-rule (composites.POOLING_RULE), the shift booked as a bias."""
    model = model.double().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            randomise(m)
    x = torch.randn(2, 1, 5, 5, dtype=f64)
    e = explain(model, x, rule=Epsilon())
    labels = [entry.layer for entry in e.ledger]
    assert label in labels
    assert e.ledger.holds(1e-10) and bool(torch.isfinite(e.relevance).all())
    entry = e.ledger[labels.index(label)]
    assert float(abs(entry.bias).max()) > 0  # the shift absorbs relevance, and it is booked
    # the same as the BatchNorm written as a depthwise 1×1 convolution with weight λ, bias shift
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                scale = (child.running_var + child.eps).rsqrt() * child.weight
                width = child.num_features
                conv = nn.Conv2d(width, width, 1, groups=width).double()
                with torch.no_grad():
                    conv.weight.copy_(scale.view(-1, 1, 1, 1))
                    conv.bias.copy_(child.bias - child.running_mean * scale)
                setattr(parent, child_name, conv)
    r = explain(twin, x, rule=Epsilon())
    torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-10, atol=1e-13)


def test_batchnorm_with_batch_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.raises(UnsupportedLayerError, match="BatchNorm") as info:
        explain(model.eval(), torch.randn(2, 1, 5, 5))
    assert "running statistics" in str(info.value)


# ------------------------------------------------------------------------------ ResNet
# torchvision's block structure, written out here so that the tests need no torchvision


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes: int = 5, width: int = 4) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(block, width, layers[0])
        self.layer2 = self._make(block, width * 2, layers[1], 2)
        self.layer3 = self._make(block, width * 4, layers[2], 2)
        self.layer4 = self._make(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def calibrated(model: nn.Module, x: torch.Tensor, shifts: bool) -> nn.Module:
    """Running statistics from data (activations of order one), BN shifts kept or zeroed."""
    model = model.double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()
        model(x)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                if shifts:
                    m.bias.uniform_(-0.3, 0.3)
                else:
                    m.running_mean.zero_()
                    m.bias.zero_()
        if not shifts:
            model.fc.bias.zero_()
    return model.eval()


@functools.cache
def _resnet(block, layers, shifts, seed):
    torch.manual_seed(seed)
    x = torch.randn(3, 3, 16, 16, dtype=f64)
    return calibrated(ResNet(block, layers), x, shifts), x


def resnet(block=BasicBlock, layers=(2, 2, 2, 2), shifts=False, seed=0):
    """A small calibrated ResNet and its input (built once; explain() leaves it as it was)."""
    return _resnet(block, tuple(layers), shifts, seed)


@pytest.mark.parametrize("block, layers", [(BasicBlock, (2, 2, 2, 2)), (Bottleneck, (1, 1, 1, 1))])
def test_resnet_conserves_relevance_under_epsilon(block, layers):
    model, x = resnet(block, layers)
    e = explain(model, x, rule=Epsilon())
    logits = e.output.gather(1, e.target[:, None])[:, 0]
    # without biases and BN shifts, only ε absorbs; a doubled or dropped branch would not pass
    torch.testing.assert_close(e.total, logits, rtol=1e-5, atol=0)
    assert e.ledger.holds(1e-10)
    assert all(float(abs(entry.bias).max()) == 0 for entry in e.ledger)
    labels = [entry.layer for entry in e.ledger]
    assert "layer1.0 (add)" in labels  # out += identity, seen as the operation it is
    assert "layer2.0.downsample.0 (Conv2d+BatchNorm2d)" in labels
    n_blocks = sum(layers)
    assert sum(label.endswith("(add)") for label in labels) == n_blocks


class SumBasicBlock(BasicBlock):
    """The same block with its addition in an lrp_tutor.fast.Sum: the reference."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add = Sum()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.add(out, identity))


class SumBottleneck(Bottleneck):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add = Sum()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(self.add(self.bn3(self.conv3(out)), identity))


@pytest.mark.parametrize(
    "block, reference, layers",
    [(BasicBlock, SumBasicBlock, (1, 2, 1, 1)), (Bottleneck, SumBottleneck, (1, 1, 1, 1))],
)
@pytest.mark.parametrize(
    "rule", [LRP0(), Epsilon(0.1), ZPlus(), Flat(), composites.epsilon_alpha2_beta1()], ids=repr
)
def test_torchvision_block_is_explained_as_if_it_had_a_sum(block, reference, layers, rule):
    model, x = resnet(block, layers, shifts=True, seed=1)
    torch.manual_seed(1)
    twin = ResNet(reference, layers).double()
    twin.load_state_dict(model.state_dict())
    twin.eval()
    kw = {"composite": rule} if isinstance(rule, composites.Composite) else {"rule": rule}
    e, r = explain(model, x, **kw), explain(twin, x, **kw)
    torch.testing.assert_close(e.output, model(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-10, atol=1e-12)
    # the same books, layer by layer (the twin's sum is the module "….add")
    mine = {entry.layer.split(" (")[0]: entry for entry in e.ledger}
    theirs = {entry.layer.split(" (")[0].removesuffix(".add"): entry for entry in r.ledger}
    assert mine.keys() == theirs.keys()
    for name, entry in mine.items():
        for field in ("relevance_out", "relevance_in", "bias", "stabilizer"):
            torch.testing.assert_close(
                getattr(entry, field), getattr(theirs[name], field), rtol=1e-9, atol=1e-11
            )
    assert e.ledger.holds(1e-10)


class ScaledShortcut(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += 2 * identity
        return self.relu(out)


class NoFinalRelu(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return out


class ReluBeforeAdd(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out) + identity


class ShortcutFromElsewhere(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += self.relu(identity)
        return self.relu(out)


@pytest.mark.parametrize(
    "block, label",
    [
        (ScaledShortcut, "layer1.0 (mul)"),
        (NoFinalRelu, "layer1.0 (add)"),
        (ReluBeforeAdd, "layer1.0 (add)"),
        (ShortcutFromElsewhere, "layer1.0.relu#3 (ReLU)"),
    ],
)
def test_any_residual_block_is_explained_as_its_code_reads(block, label):
    """Blocks that only look like torchvision's: each operation of their forward is explained
    (a scaled shortcut is a constant factor, the join a sum), relevance conserved."""
    model, x = resnet(block, (1, 1, 1, 1))
    e = explain(model, x, rule=Epsilon())
    labels = [entry.layer for entry in e.ledger]
    assert label in labels
    assert e.ledger.holds(1e-10)
    logits = e.output.gather(1, e.target[:, None])[:, 0]
    torch.testing.assert_close(e.total, logits, rtol=1e-5, atol=0)  # bias-free: ε only


class NoShortcutAttribute(nn.Module):
    def __init__(self, add: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.add = Sum() if add else None

    def forward(self, x):
        if self.add is not None:
            return self.relu(self.add(self.bn1(self.conv1(x)), x))
        return self.relu(self.bn1(self.conv1(x)) + x)


@pytest.mark.parametrize("rule", [Epsilon(), ZPlus(), Flat()], ids=repr)
def test_a_plain_addition_in_a_custom_block_is_a_sum(rule):
    torch.manual_seed(3)
    model = nn.Sequential(NoShortcutAttribute(), nn.Flatten(), nn.Linear(64, 2)).double().eval()
    randomise(model[0].bn1)
    twin = nn.Sequential(NoShortcutAttribute(add=True), nn.Flatten(), nn.Linear(64, 2)).double()
    twin.load_state_dict(model.state_dict())
    twin.eval()
    x = torch.randn(3, 4, 4, 4, dtype=f64)
    e, r = explain(model, x, rule=rule), explain(twin, x, rule=rule)
    torch.testing.assert_close(e.relevance, r.relevance, rtol=1e-12, atol=1e-14)
    assert "0 (add)" in [entry.layer for entry in e.ledger]
    assert "0.add (Sum)" in [entry.layer for entry in r.ledger]


def test_resnet_in_train_mode_is_explained_in_eval_mode_and_restored():
    model, x = resnet(layers=(1, 1, 1, 1), shifts=True)
    model = copy.deepcopy(model)
    expected = explain(model, x).relevance
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        got = explain(model, x).relevance
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert model.relu.inplace and model.layer1[0].relu.inplace
