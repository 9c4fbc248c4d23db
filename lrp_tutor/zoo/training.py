"""Deterministic training recipes for the shipped zoo models.

``scripts/train_zoo.py`` runs these recipes and writes the weight files; the slow tests run
one of them again and check that it reaches the shipped accuracy. Training is on the CPU
with 2 threads (the ViT: 1), fixed seeds and ``torch.use_deterministic_algorithms(True)``;
the global torch settings and random state are restored afterwards.

The training loss is the cross-entropy of the logits, minimised with Adam (AdamW with a
cosine schedule for the ViT) in mini-batches whose order comes from a seeded
``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from . import digits, splits, textures, vit, watermark
from .splits import Split

STORAGE_DTYPE = torch.float16
"""The dtype of the shipped weight files (the loaders convert to float32)."""


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained: architecture, data split and optimiser settings."""

    name: str
    architecture: Callable[[], nn.Module]
    data: Callable[[], Split]
    epochs: int
    batch_size: int
    lr: float
    augment: bool = False
    seed: int = 0
    shift: int = 0
    """Shift each training image by up to this many pixels in each direction (zero fill)."""
    weight_decay: float = 0.0
    """With weight decay > 0 the optimiser is AdamW (decoupled decay), otherwise Adam."""
    cosine: bool = False
    """Warm the learning rate up linearly over the first 5 % of steps, then decay it to 0
    along a half cosine (what a small transformer needs to train stably)."""
    threads: int = 2


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
            "mnist_vit",
            vit.mnist_vit_architecture,
            splits.mnist_split,
            80,
            64,
            2e-3,
            shift=2,
            weight_decay=0.05,
            cosine=True,
            threads=1,
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


def shift(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``most`` pixels up/down and left/right, zeros shifted in.

    >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> moved = shift(x, 1, torch.Generator().manual_seed(0))
    >>> moved.shape, bool(moved.sum() <= x.sum())
    (torch.Size([1, 1, 3, 3]), True)
    """
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (most, most, most, most))
    dy = torch.randint(0, 2 * most + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * most + 1, (n,), generator=generator)
    rows = torch.arange(h)[None] + dy[:, None]
    cols = torch.arange(w)[None] + dx[:, None]
    return padded[
        torch.arange(n)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def learning_rate(recipe: Recipe, step: int, steps: int) -> float:
    """The learning rate of ``step`` (of ``steps``): constant, or warm-up and half cosine.

    >>> r = Recipe("x", nn.Identity, lambda: None, 1, 1, 1.0, cosine=True)
    >>> [round(learning_rate(r, s, 100), 3) for s in (0, 5, 50, 100)]
    [0.0, 0.828, 0.5, 0.0]
    """
    if not recipe.cosine:
        return recipe.lr
    warmup = 0.05 * steps + 1
    return recipe.lr * min(1.0, step / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))


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


def train(name: str) -> tuple[nn.Module, float]:
    """Train the zoo model ``name`` from its seed; return it (eval mode) and its held-out
    accuracy **after** rounding its weights to the storage dtype, as a user will load it."""
    recipe = RECIPES[name]
    x_train, y_train, x_held, y_held = recipe.data()
    with deterministic(recipe.seed, recipe.threads):
        model = recipe.architecture()
        classes = getattr(model, "num_classes", None) or model[-1].out_features
        generator = torch.Generator().manual_seed(recipe.seed)
        if recipe.weight_decay > 0:
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
            )
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        steps = recipe.epochs * math.ceil(len(y_train) / recipe.batch_size)
        step = 0
        for _ in range(recipe.epochs):
            order = torch.randperm(len(y_train), generator=generator)
            for start in range(0, len(order), recipe.batch_size):
                index = order[start : start + recipe.batch_size]
                x, target = x_train[index], y_train[index]
                if recipe.augment:
                    x = jitter(x, generator)
                    x, target = cut_and_mix(x, target, classes, generator)
                if recipe.shift:
                    x = shift(x, recipe.shift, generator)
                if recipe.cosine:
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(recipe, step, steps)
                step += 1
                optimizer.zero_grad()
                loss_fn(model(x), target).backward()
                optimizer.step()
        model.eval()
        model.load_state_dict({k: v.float() for k, v in stored(model).items()})
        return model, accuracy(model, x_held, y_held)
