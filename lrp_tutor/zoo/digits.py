"""Four small digit classifiers with shipped weights, all plain ``nn.Sequential``.

Inputs are images of shape (N, 1, H, W) with pixel values in [0, 1] (so the z^B rule takes
``low=0, high=1``); outputs are 10 logits.

============  ==========================================================  ==============
name          layers                                                      input
============  ==========================================================  ==============
digits_mlp    Flatten, 64-64-32-10 with ReLU                              sklearn 8×8
digits_cnn    conv3×3(16), ReLU, maxpool, conv3×3(32), ReLU, maxpool,     sklearn 8×8
              Flatten, Linear(128→10)
mnist_mlp     Flatten, 784-300-100-10 with ReLU (Montavon's tutorial)     MNIST 28×28
mnist_cnn     conv5×5(16), ReLU, maxpool, conv5×5(32), ReLU, maxpool,     MNIST 28×28
              Flatten, Linear(512→10)
============  ==========================================================  ==============

Their held-out accuracies are in ``lrp_tutor/zoo/weights/manifest.json`` and in
:func:`lrp_tutor.zoo.accuracy_of`.

>>> from lrp_tutor import zoo
>>> model = zoo.digits_mlp()
>>> x, y = zoo.digits_samples()
>>> model(x).shape
torch.Size([20, 10])
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .store import shipped_or_fresh


def digits_mlp_architecture() -> nn.Sequential:
    """Flatten, then 64 → 64 → 32 → 10 with ReLU between (sklearn's 8×8 digits)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def digits_cnn_architecture() -> nn.Sequential:
    """Two 3×3 convolutions with ReLU and 2×2 max-pooling, then one linear layer (8×8)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
    )


def mnist_mlp_architecture() -> nn.Sequential:
    """The 784-300-100-10 ReLU network of Montavon's LRP tutorial (MNIST 28×28)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def mnist_cnn_architecture() -> nn.Sequential:
    """Two 5×5 convolutions with ReLU and 2×2 max-pooling, then one linear layer (28×28)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def digits_mlp(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Sequential:
    """The MLP for sklearn's 8×8 digits, trained (default) or freshly initialised.

    Parameters
    ----------
    pretrained : bool
        Load the shipped weights (verified against their SHA-256) or keep torch's random init.
    weights_dir : path, optional
        Read the weights and ``manifest.json`` from this folder instead of the shipped one.

    Returns
    -------
    nn.Sequential in eval mode, float32.
    """
    return shipped_or_fresh("digits_mlp", digits_mlp_architecture(), pretrained, weights_dir)


def digits_cnn(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Sequential:
    """The small CNN for sklearn's 8×8 digits (arguments as :func:`digits_mlp`)."""
    return shipped_or_fresh("digits_cnn", digits_cnn_architecture(), pretrained, weights_dir)


def mnist_mlp(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Sequential:
    """Montavon's 784-300-100-10 MLP for MNIST (arguments as :func:`digits_mlp`)."""
    return shipped_or_fresh("mnist_mlp", mnist_mlp_architecture(), pretrained, weights_dir)


def mnist_cnn(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Sequential:
    """The small CNN for MNIST 28×28 (arguments as :func:`digits_mlp`)."""
    return shipped_or_fresh("mnist_cnn", mnist_cnn_architecture(), pretrained, weights_dir)
