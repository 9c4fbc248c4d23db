"""Deterministic training recipes for the shipped zoo models.

``scripts/train_zoo.py`` runs these recipes and writes the weight files; the slow tests run
one of them again and check that it reaches the shipped accuracy. Training is on the CPU
with 2 threads, fixed seeds and ``torch.use_deterministic_algorithms(True)``; the global
torch settings and random state are restored afterwards.

The training loss is the cross-entropy of the logits, minimised with Adam in mini-batches
whose order comes from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from . import digits, splits, textures, watermark
from .splits import Split

STORAGE_DTYPE = torch.float16
"""The dtype of the shipped weight files (the loaders convert to float32)."""


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained: architecture, data split and optimiser settings."""

    name: str
    architecture: Callable[[], nn.Sequential]
    data: Callable[[], Split]
    epochs: int
    batch_size: int
    lr: float
    augment: bool = False
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("digits_mlp", digits.digits_mlp_architecture, splits.digits_split, 40, 32, 1e-3),
        Recipe("digits_cnn", digits.digits_cnn_architecture, splits.digits_split, 40, 32, 1e-3),
        Recipe("mnist_mlp", digits.mnist_mlp_architecture, splits.mnist_split, 15, 64, 1e-3),
        Recipe("mnist_cnn", digits.mnist_cnn_architecture, splits.mnist_split, 15, 64, 1e-3),
        Recipe(
            "clever_hans_cnn",
            digits.mnist_cnn_architecture,
            watermark.clever_hans_split,
            10,
            64,
            1e-3,
        ),
        Recipe(
            "textures_cnn",
            textures.textures_cnn_architecture,
            splits.texture_split,
            30,
            32,
            2e-3,
            augment=True,
        ),
    ]
}
"""Every shipped model by name."""


@contextlib.contextmanager
def deterministic(seed: int, threads: int = 2) -> Iterator[None]:
    """Seed torch, use deterministic algorithms and ``threads`` threads; restore afterwards."""
    rng_state = torch.get_rng_state()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    old_threads = torch.get_num_threads()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_rng_state(rng_state)
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(old_threads)


def cut_and_mix(
    x: torch.Tensor, y: torch.Tensor, classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste the left or top part of another patch of the batch into each patch.

    The target becomes the mix of the two classes in proportion to their areas, so that a
    class score (the average of local scores under global average pooling) follows how
    much of the image shows the class: a mosaic of textures is then explained region by
    region. Returns the patches and the target probabilities (N, classes).
    """
    n, side = x.shape[0], x.shape[-1]
    partner = torch.randperm(n, generator=generator)
    cut = torch.randint(side // 4, 3 * side // 4 + 1, (n,), generator=generator)
    vertical = torch.rand(n, generator=generator) < 0.5
    mixed = torch.rand(n, generator=generator) < 0.5
    position = torch.arange(side)
    inside_cols = position[None, None, :] < cut[:, None, None]  # (n, 1, side)
    inside_rows = position[None, :, None] < cut[:, None, None]  # (n, side, 1)
    pasted = torch.where(vertical[:, None, None], inside_cols, inside_rows) & mixed[:, None, None]
    x = torch.where(pasted[:, None], x[partner], x)
    share = pasted.float().mean(dim=(1, 2))
    target = (1 - share)[:, None] * nn.functional.one_hot(y, classes)
    target = target + share[:, None] * nn.functional.one_hot(y[partner], classes)
    return x, target


def jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and contrast/brightness changes of grey patches in [0, 1].

    A texture must then be told by its structure, not by its mean brightness:
    x' = clip(a·(x − m) + m + b), a ∈ [0.6, 1.4], b ∈ [−0.2, 0.2], m the patch mean.
    """
    n = x.shape[0]
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    a = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    b = -0.2 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (a * (x - m) + m + b).clamp(0.0, 1.0)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """The fraction of ``x`` that ``model`` classifies as ``y``."""
    correct = sum(
        int((model(x[i : i + batch]).argmax(dim=1) == y[i : i + batch]).sum())
        for i in range(0, len(y), batch)
    )
    return correct / len(y)


def stored(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict as it is written to disk: ``STORAGE_DTYPE``, contiguous, CPU."""
    return {
        k: v.detach().to("cpu", STORAGE_DTYPE).contiguous() for k, v in model.state_dict().items()
    }


def serialize(state: dict[str, torch.Tensor]) -> bytes:
    """The bytes of ``torch.save(state)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def train(name: str) -> tuple[nn.Sequential, float]:
    """Train the zoo model ``name`` from its seed; return it (eval mode) and its held-out
    accuracy **after** rounding its weights to the storage dtype, as a user will load it."""
    recipe = RECIPES[name]
    x_train, y_train, x_held, y_held = recipe.data()
    with deterministic(recipe.seed):
        model = recipe.architecture()
        classes = model[-1].out_features
        generator = torch.Generator().manual_seed(recipe.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(recipe.epochs):
            order = torch.randperm(len(y_train), generator=generator)
            for start in range(0, len(order), recipe.batch_size):
                index = order[start : start + recipe.batch_size]
                x, target = x_train[index], y_train[index]
                if recipe.augment:
                    x = jitter(x, generator)
                    x, target = cut_and_mix(x, target, classes, generator)
                optimizer.zero_grad()
                loss_fn(model(x), target).backward()
                optimizer.step()
        model.eval()
        model.load_state_dict({k: v.float() for k, v in stored(model).items()})
        return model, accuracy(model, x_held, y_held)
