"""explain() gives the user's model back exactly as it was, also when it raises half-way."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_state import assert_unchanged, snapshot
from torch import nn

from lrp_tutor import composites
from lrp_tutor.errors import LRPError
from lrp_tutor.fast import Sum, explain
from lrp_tutor.rules import LRP0, AlphaBeta, Epsilon, Flat, Gamma, Pass, ZPlus


def explain_quietly(model, x, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return explain(model, x, **kwargs)


# ------------------------------------------------------------------------------ models


class Block(nn.Module):
    """A torchvision-style residual block (out += identity)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Net(nn.Module):
    def __init__(self, middle: nn.Module | None = None, add: str = "block") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(True))
        self.block = Block(4)
        self.middle = middle if middle is not None else nn.Identity()
        self.add = add
        self.sum = Sum()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.side = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        h = self.stem(x)
        if self.add == "block":
            h = self.block(h)
        elif self.add == "sum":
            h = self.sum(h, self.side(h))
        elif self.add == "plus":
            h = h + self.side(h)
        return self.head(self.middle(h))


def prepared(model: nn.Module) -> nn.Module:
    """Random statistics, a user hook, a frozen parameter, a mixed train/eval state."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    first.register_forward_hook(lambda module, args, out: None)
    first.register_forward_pre_hook(lambda module, args: None)
    first.weight.requires_grad_(False)
    model.train()
    for m in list(model.modules())[::3]:
        m.eval()
    return model


X = torch.randn(2, 2, 6, 6)

CASES = [
    ("ok", Net(), {}),
    ("ok αβ", Net(), {"rule": AlphaBeta()}),
    ("ok sum", Net(add="sum"), {"composite": composites.epsilon_plus_flat()}),
    ("ok layers", Net(), {"rule": ZPlus(), "keep_layers": True}),
    ("LSTM in the middle", Net(middle=nn.LSTM(6, 6)), {}),
    ("ok upsample in the middle", Net(middle=nn.Upsample(scale_factor=2)), {}),
    ("LPPool in the middle", Net(middle=nn.LPPool1d(2, 1)), {}),
    ("ok plain addition", Net(add="plus"), {}),
    ("target out of range", Net(), {"target": 7}),
    ("float target", Net(), {"target": 1.5}),
    ("Pass on a layer", Net(), {"composite": composites.by_name({"head.2": Pass()})}),
    ("composite without rule", Net(), {"composite": composites.Composite(first=Flat())}),
    ("both rule and composite", Net(), {"rule": LRP0(), "composite": composites.uniform(LRP0())}),
]


@pytest.mark.parametrize("what, model, kwargs", CASES, ids=[c[0] for c in CASES])
def test_model_comes_back_unchanged(what, model, kwargs):
    model = prepared(model)
    before = snapshot(model)
    fired = []
    model.stem[0].register_forward_hook(lambda module, args, out: fired.append(1))
    before = snapshot(model)
    try:
        e = explain_quietly(model, X, **kwargs)
        assert what.startswith("ok"), f"{what} should have raised"
        assert e.relevance.shape == X.shape
    except LRPError:
        assert not what.startswith("ok")
    assert_unchanged(before, snapshot(model))
    fired.clear()
    try:
        model(X)  # the user's own hooks still run, and only once per call
    except (RuntimeError, ValueError):
        pass  # e.g. the LSTM cannot take an image: the model itself fails
    assert fired == [1]


@pytest.mark.parametrize("x", [X * float("nan"), X.long(), X[0], torch.randn(2, 3, 6, 6)])
def test_bad_input_leaves_the_model_alone(x):
    model = prepared(Net())
    before = snapshot(model)
    with pytest.raises(LRPError):
        explain_quietly(model, x)
    assert_unchanged(before, snapshot(model))


def test_a_model_that_fails_inside_its_forward_is_restored():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            self.relu(self.fc(x))
            raise RuntimeError("bug in the user's forward")

    model = prepared(Broken())
    before = snapshot(model)
    with pytest.raises(LRPError, match="bug in the user's forward"):
        explain_quietly(model, torch.randn(2, 4))
    assert_unchanged(before, snapshot(model))


# ------------------------------------------------------------------------------ property


LAYERS = st.sampled_from(
    ["linear", "linear-nobias", "relu", "relu-inplace", "tanh", "bn", "dropout", "identity"]
    + ["softmax", "sum"]
)


class WithSum(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.add = Sum()

    def forward(self, x):
        return self.add(self.fc(x), x)


def build(kinds: list[str], width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for kind in kinds:
        layers.append(
            {
                "linear": lambda: nn.Linear(width, width),
                "linear-nobias": lambda: nn.Linear(width, width, bias=False),
                "relu": nn.ReLU,
                "relu-inplace": lambda: nn.ReLU(inplace=True),
                "tanh": nn.Tanh,
                "bn": lambda: nn.BatchNorm1d(width),
                "dropout": lambda: nn.Dropout(0.3),
                "identity": nn.Identity,
                "softmax": lambda: nn.Softmax(1),
                "sum": lambda: WithSum(width),
            }[kind]()
        )
    layers.append(nn.Linear(width, 3))
    return nn.Sequential(*layers)


RULES = st.sampled_from([None, LRP0(), Epsilon(0.1), ZPlus(), AlphaBeta(), Gamma(), Flat()])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(LAYERS, min_size=0, max_size=5),
    width=st.integers(2, 5),
    input_width=st.integers(2, 5),
    batch=st.integers(1, 3),
    target=st.one_of(st.none(), st.integers(-1, 4)),
    rule=RULES,
    training=st.lists(st.booleans(), min_size=12, max_size=12),
    frozen=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_model_unchanged(
    kinds, width, input_width, batch, target, rule, training, frozen, dtype, seed
):
    torch.manual_seed(seed)
    model = build(kinds, width).to(dtype)
    for m, mode in zip(model.modules(), training, strict=False):
        m.training = mode
    if frozen:
        for p in list(model.parameters())[::2]:
            p.requires_grad_(False)
    x = torch.randn(batch, input_width, dtype=dtype)
    before = snapshot(model)
    try:
        e = explain_quietly(model, x, target=target, rule=rule)
    except LRPError:
        pass
    else:
        assert e.relevance.shape == x.shape and e.relevance.dtype == dtype
        assert torch.isfinite(e.relevance).all()
    assert_unchanged(before, snapshot(model))
