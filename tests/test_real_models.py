"""Real models, as researchers bring them: every classifier of torchvision.models but its
transformers (tests/test_attention.py explains ViT and Swin; MaxViT is not tested) and timm's
CNN families, built from their libraries' own code with random weights and randomised
BatchNorm statistics, in float64.

Three checks per model:

- **The books balance.** With ``epsilon_plus_flat()`` the relevance is finite and the ledger
  books every bit: :math:`|\\sum_i R_i + \\text{absorbed} - f_c| \\le 10^{-6} |f_c|`.
- **Nothing is lost or counted twice.** With every bias and BatchNorm shift zeroed and LRP-0
  on every operation (the fixed maps too: random weights make some of these networks' logits
  as small as 1e-45, where any absolute ε would absorb everything), nothing absorbs:
  :math:`\\sum_i R_i = f_c` to 1e-3 (a neuron with :math:`z_j = 0` exactly sends nothing).
- **LRP-0 is gradient × input** on bias-free networks of ReLUs, max pooling and linear maps,
  to 1e-12.

Zennit agrees on the models it has canonizers for (VGG, ResNet).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

import lrp_tutor as lt
from lrp_tutor import composites
from lrp_tutor.rules import LRP0

if os.environ.get("LRP_TUTOR_REQUIRE_MODELS"):  # make test: they are installed, never skipped
    import timm
    import torchvision.models as tvm
else:
    tvm = pytest.importorskip("torchvision.models")
    timm = pytest.importorskip("timm")

f64 = torch.float64
EVERYWHERE = composites.Composite(by_type={nn.Module: LRP0()}, default=LRP0())
"""LRP-0 for every operation: weighted layers, fixed maps, sums."""
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)

TORCHVISION = [
    name
    for name in tvm.list_models(module=tvm)
    if not name.startswith(("vit_", "swin_", "maxvit_"))
]
# one member of each CNN family of timm (its smallest), built from timm's own code
TIMM = [
    "resnet18",
    "resnet50d",
    "seresnet50",
    "ecaresnet50d",
    "skresnet18",
    "resnest14d",
    "res2net50_14w_8s",
    "resnetv2_50",
    "efficientnet_b0",
    "tf_efficientnet_b0",
    "efficientnet_lite0",
    "mixnet_s",
    "tinynet_a",
    "mobilenetv3_small_050",
    "mobilenetv4_conv_small",
    "lcnet_050",
    "fbnetc_100",
    "hardcorenas_a",
    "ghostnet_100",
    "rexnet_100",
    "regnetx_002",
    "regnety_002",
    "densenet121",
    "dla34",
    "dpn68",
    "cspresnet50",
    "cspdarknet53",
    "darknet17",
    "hrnet_w18_small",
    "nfnet_l0",
    "repvgg_a0",
    "mobileone_s0",
    "gernet_s",
    "ese_vovnet19b_dw",
    "selecsls42b",
    "xception41",
    "inception_v3",
    "vgg11",
    "convnext_atto",
    "convmixer_768_32",
]

# bias-free networks of ReLUs, max pooling and linear maps: LRP-0 is gradient × input
PIECEWISE_LINEAR = [
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "squeezenet1_1",
    "resnet18",
    "resnext50_32x4d",
    "densenet121",
    "googlenet",
    "regnet_x_400mf",
]


def size_of(name: str) -> int:
    """The smallest input (a square) the model's strides and kernels allow, about."""
    return 96 if "inception" in name else 64


def build_torchvision(name: str) -> nn.Module:
    kwargs = (
        {"aux_logits": False, "init_weights": False}
        if name in ("googlenet", "inception_v3")
        else {}
    )
    torch.manual_seed(0)
    return prepare(tvm.get_model(name, weights=None, **kwargs))


def build_timm(name: str) -> nn.Module:
    torch.manual_seed(0)
    return prepare(timm.create_model(name, pretrained=False))


def prepare(model: nn.Module) -> nn.Module:
    """float64, eval mode, BatchNorm statistics and affine parameters of both signs."""
    model = model.double().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.uniform_(-0.2, 0.2, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5, generator=generator)
                    m.bias.uniform_(-0.2, 0.2, generator=generator)
    return model


def bias_free(model: nn.Module) -> nn.Module:
    """A copy with every bias zero and every BatchNorm shift β − λμ zero."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                if m.weight is not None:  # β = λμ, computed as the merge computes λμ: 0 left
                    scale = (m.running_var + m.eps).rsqrt() * m.weight
                    m.bias.copy_(m.running_mean * scale)
                else:
                    m.running_mean.zero_()
                continue
            bias = getattr(m, "bias", None)
            if isinstance(bias, nn.Parameter):
                bias.zero_()
    return model


def check(model: nn.Module, x: torch.Tensor) -> None:
    e = lt.explain(model, x, composite=composites.epsilon_plus_flat())
    assert bool(torch.isfinite(e.relevance).all())
    logit = e.seed
    gap = (e.total + torch.from_numpy(e.ledger.absorbed) - logit).abs()
    assert bool((gap <= 1e-6 * logit.abs()).all()), (gap, logit)

    free = bias_free(model)
    e = lt.explain(free, x, composite=EVERYWHERE)
    torch.testing.assert_close(e.total, e.seed, rtol=1e-3, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_every_torchvision_classifier(name):
    model = build_torchvision(name)
    torch.manual_seed(2)
    check(model, torch.randn(2, 3, size_of(name), size_of(name), dtype=f64))


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM)
def test_timm_cnn_families(name):
    model = build_timm(name)
    torch.manual_seed(2)
    size = 128 if name == "inception_v3" else size_of(name)
    check(model, torch.randn(2, 3, size, size, dtype=f64))


@pytest.mark.parametrize("name", PIECEWISE_LINEAR)
def test_lrp0_is_gradient_times_input_on_bias_free_relu_networks(name):
    model = bias_free(build_torchvision(name))
    torch.manual_seed(3)
    x = torch.randn(2, 3, size_of(name), size_of(name), dtype=f64)
    e = lt.explain(model, x, composite=EVERYWHERE)
    x_grad = x.clone().requires_grad_(True)
    logits = model(x_grad)
    picked = logits.gather(1, e.target[:, None]).sum()
    (gradient,) = torch.autograd.grad(picked, x_grad)
    expected = gradient * x
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(e.relevance, expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "resnet18", "resnet50"])
def test_zennit_agrees_where_it_has_canonizers(name):
    """Zennit's EpsilonPlusFlat with its VGG/ResNet canonizers gives our relevance.

    Zennit 0.5.1 merges a BatchNorm into the layer before it and leaves the BatchNorm as
    :math:`x/\\sqrt{1 + \\epsilon}` (running statistics 0 and 1, its ε kept), a factor
    1 − 5e-6 our merge does not have; with ε = 0 both compute the same network.
    """
    if not os.environ.get("LRP_TUTOR_REQUIRE_MODELS"):
        pytest.importorskip("zennit")
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    model = build_torchvision(name)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64, dtype=f64)
    e = lt.explain(model, x, composite=composites.epsilon_plus_flat())
    canonizer = VGGCanonizer() if name.startswith("vgg") else ResNetCanonizer()
    theirs = []
    for n in range(x.shape[0]):
        xn = x[n : n + 1].clone().requires_grad_(True)
        with EpsilonPlusFlat(canonizers=[canonizer]).context(model) as modified:
            out = modified(xn)
            seed = torch.zeros_like(out)
            seed[0, e.target[n]] = out[0, e.target[n]]
            (r,) = torch.autograd.grad(out, xn, seed)
        theirs.append(r)
    theirs = torch.cat(theirs)
    scale = float(theirs.abs().max())
    assert scale > 0
    torch.testing.assert_close(e.relevance, theirs, rtol=0, atol=1e-10 * scale)
