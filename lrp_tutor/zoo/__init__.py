"""The model and data zoo: small trained models, real architectures, offline images.

Nothing here touches the network (except ``pretrained=True`` of the ImageNet architectures,
which asks torchvision).

Small models with shipped, checksummed weights (``nn.Sequential``, eval mode, float32):

* :func:`digits_mlp`, :func:`digits_cnn` — sklearn's 8×8 digits; :func:`digits_samples`
* :func:`mnist_mlp` (Montavon's 784-300-100-10), :func:`mnist_cnn` — MNIST 28×28;
  :func:`mnist_samples`
* :func:`textures_cnn` — brick / grass / gravel; :func:`texture_samples`,
  :func:`texture_mosaic`, :data:`TEXTURE_CLASSES`
* :func:`clever_hans` — an MNIST CNN that learned a watermark (``.model``, ``.data``,
  ``.marked``, ``.shortcut_class``): the data-set-level analysis has something to unmask

and one small Vision Transformer (not a Sequential; torchvision's module names):

* :func:`mnist_vit` — MNIST 28×28 as 4 × 4 patches of 7 × 7 pixels and a class token

and :class:`FromEmbeddings`, which makes a Hugging Face language model a classifier of its
input embeddings (what :func:`lrp_tutor.explain` explains).

Real architectures with torchvision's parameter names: :func:`vgg16`, :func:`resnet18`,
:func:`resnet50`, :func:`vit_b_16` (:class:`VisionTransformer` for any size); their inputs:
:func:`sample_images`, :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`, :func:`imagenet_bounds`.

>>> from lrp_tutor import zoo
>>> model = zoo.mnist_cnn()
>>> x, y = zoo.mnist_samples()
>>> bool((model(x).argmax(dim=1) == y).float().mean() >= 0.9)
True
"""

from __future__ import annotations

from .digits import digits_cnn, digits_mlp, mnist_cnn, mnist_mlp
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_bounds, imagenet_normalize
from .language import FromEmbeddings
from .photos import PHOTOS, SampleImages, sample_images
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from .samples import (
    digits_heldout,
    digits_samples,
    mnist_heldout,
    mnist_samples,
    texture_mosaic,
    texture_samples,
    textures_heldout,
)
from .splits import TEXTURE_CLASSES
from .store import read_manifest
from .textures import textures_cnn
from .vgg import VGG, vgg16
from .vit import VisionTransformer, mnist_vit, vit_b_16
from .watermark import CleverHans, clever_hans, clever_hans_cnn

MODELS = (
    "digits_mlp",
    "digits_cnn",
    "mnist_mlp",
    "mnist_cnn",
    "textures_cnn",
    "clever_hans_cnn",
    "mnist_vit",
)
"""The names of the models with shipped weights."""


def accuracy_of(name: str) -> float:
    """The held-out accuracy of the shipped model ``name``, as recorded in the manifest.

    >>> accuracy_of("digits_mlp") >= 0.95
    True
    """
    return float(read_manifest()["models"][name]["heldout_accuracy"])


__all__ = [
    "MODELS",
    "accuracy_of",
    "digits_mlp",
    "digits_cnn",
    "mnist_mlp",
    "mnist_cnn",
    "textures_cnn",
    "clever_hans_cnn",
    "mnist_vit",
    "FromEmbeddings",
    "clever_hans",
    "CleverHans",
    "TEXTURE_CLASSES",
    "digits_samples",
    "mnist_samples",
    "texture_samples",
    "texture_mosaic",
    "digits_heldout",
    "mnist_heldout",
    "textures_heldout",
    "vgg16",
    "resnet18",
    "resnet50",
    "vit_b_16",
    "VisionTransformer",
    "VGG",
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_bounds",
    "imagenet_normalize",
    "sample_images",
    "SampleImages",
    "PHOTOS",
]
