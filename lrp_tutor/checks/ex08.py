r"""Exercise 08: LRP for a whole network from scratch, in Montavon's four steps.

Every layer that has weights sends its relevance down in four steps (Montavon et al. 2019,
*Layer-Wise Relevance Propagation: An Overview*, sec. 10.2.2):

.. math::

    z = x\,\rho(W) + \rho(b), \qquad s = R_{out} / \mathrm{stab}(z), \qquad
    c = s\,\rho(W)^\top, \qquad R_{in} = x \odot c ,

with :math:`\mathrm{stab}(z) = z + \varepsilon\,\mathrm{sign}(z)`, sign(0) = +1, and 0/0 := 0.
Task 08.1 writes them for one dense layer in numpy, Task 08.2 loops them over the MNIST MLP
(784-300-100-10), Task 08.3 writes them with PyTorch's autograd for a VGG-style CNN:
``z = layer.forward(a); s = (R / stab(z)).detach(); (z * s).sum().backward(); c = a.grad``.
Tasks 08.2 and 08.3 are compared with :func:`lrp_tutor.explain` in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fast import explain
from ..rules import Epsilon, Gamma, Rule
from . import reference as ref
from ._core import Case, Failure, as_array, call, checker, compare, entry, numbered

__all__ = ["ex08_lrp_dense", "ex08_lrp_mlp", "ex08_lrp_cnn", "Rho", "mlp_layers"]


class Rho:
    r"""A weight modifier :math:`\rho` that a student's function applies to ``W`` and ``b``.

    ``Rho(0)`` is the identity (the ε-rule), ``Rho(γ)`` is :math:`w + \gamma w^+` (LRP-γ).

    >>> Rho(0.25)(np.array([-1.0, 2.0]))
    array([-1. ,  2.5])
    >>> Rho(0.0).label
    'rho: w ↦ w'
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)
        self.label = f"rho: w ↦ w + {self.gamma:g}·w⁺" if self.gamma else "rho: w ↦ w"

    def __call__(self, w: Any) -> Any:
        if self.gamma == 0:
            return w + 0.0 if isinstance(w, np.ndarray) else w
        return w + self.gamma * np.maximum(w, 0)

    def rule(self, eps: float) -> Rule:
        """The rule of the rule book that this ρ with this ε is."""
        return Gamma(self.gamma, epsilon=eps) if self.gamma else Epsilon(eps)


def _later(function: Callable, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """``function(*args, **kwargs)``, to be computed when a diagnosis needs it."""
    return lambda: function(*args, **kwargs)


def _sign(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1.0, -1.0)


def _safe(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    zero = denominator == 0
    return np.where(zero, 0.0, numerator / np.where(zero, 1.0, denominator))


# --------------------------------------------------------------------------------------
# Task 08.1: one dense layer.


def _dense_case(seed: int, n: int, n_in: int, n_out: int, gamma: float, eps: float) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    if gamma:  # LRP-γ is meant for ReLU outputs: x ≥ 0
        x = np.abs(x)
    W = rng.normal(size=(n_in, n_out))
    b = rng.normal(scale=0.5, size=n_out)
    R = rng.uniform(0.2, 1.5, (n, n_out))
    return x, W, b, R, Rho(gamma), eps


def _zero_neuron() -> tuple:
    """One sample whose neuron 0 has z_0 = 0 exactly (LRP-0: it sends nothing)."""
    x = np.array([[1.0, 2.0, -1.0, 0.5]])
    W = np.array([[1.0, 0.5, -1.0], [0.5, 1.0, 2.0], [2.0, -0.5, 1.0], [-1.0, 1.0, 0.5]])
    b = np.array([0.5, -0.25, 1.0])
    R = np.array([[1.0, 2.0, -0.5]])
    return x, W, b, R, Rho(0.0), 0.0


_DENSE_NAMES = ("x", "W", "b", "R_out", "rho", "eps")
_DENSE_SHAPES = (
    "x has shape (N, n_in), a batch; W (n_in, n_out); b (n_out,); R_out (N, n_out). The four "
    "steps: z = x @ rho(W) + rho(b) (N, n_out); s = R_out / stab(z); c = s @ rho(W).T "
    "(N, n_in); R_in = x * c."
)


def _four_steps(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    R: np.ndarray,
    rho: Callable,
    eps: float,
    *,
    bias: bool = True,
    rho_b: bool = True,
    rho_z: bool = True,
    rho_c: bool = True,
    transpose: bool = True,
    stab: bool = True,
    signed: bool = True,
    per_neuron: bool = True,
    times_x: bool = True,
) -> np.ndarray:
    """The four steps for a batch, with switches for the typical mistakes."""
    Wz = rho(W) if rho_z else W
    Wc = rho(W) if rho_c else W
    bz = (rho(b) if rho_b else b) if bias else 0.0
    z = x @ Wz + bz
    d = (z + eps * (_sign(z) if signed else 1.0)) if stab else z
    if per_neuron:
        s = _safe(R, d)
    else:
        s = _safe(R.sum(axis=1, keepdims=True), d.sum(axis=1, keepdims=True)) + 0 * R
    c = s @ (Wc.T if transpose else Wc)
    return x * c if times_x else c


def _dense_variants(x, W, b, R, rho, eps) -> list:  # noqa: ANN001
    def variant(**switches: bool) -> Callable[[], np.ndarray]:
        return lambda: _four_steps(x, W, b, R, rho, eps, **switches)

    gamma = rho.gamma
    return [
        ("you forgot the bias in z: z = x @ rho(W) + rho(b).", variant(bias=False)),
        (
            "you added b, not rho(b): the rule modifies the bias like the weights, "
            f"z = x @ rho(W) + rho(b) (here rho(b) = b + {gamma:g}·b⁺).",
            variant(rho_b=False),
        ),
        (
            "c = s @ W.T uses the plain weights; step 3 uses the modified ones too: "
            "c = s @ rho(W).T.",
            variant(rho_c=False),
        ),
        (
            "z = x @ W + b uses the plain weights; step 1 uses the modified ones: "
            "z = x @ rho(W) + rho(b).",
            variant(rho_z=False, rho_b=False),
        ),
        (
            "you never applied rho: use rho(W) in steps 1 and 3, rho(b) in step 1.",
            variant(rho_z=False, rho_c=False, rho_b=False),
        ),
        (
            "you multiplied s by rho(W) instead of rho(W).T (a transposed W). With W shaped "
            "(n_in, n_out), c_i = Σ_j ρ(w_ij)·s_j is s @ rho(W).T.",
            variant(transpose=False),
        ),
        (
            "you divided by z without the stabiliser: s = R_out / stab(z) with "
            "stab(z) = z + eps·sign(z), sign(0) = +1.",
            variant(stab=False),
        ),
        (
            "you added eps without its sign: for z < 0, z + eps moves the denominator towards "
            "0. stab(z) = z + eps·sign(z).",
            variant(signed=False),
        ),
        (
            "you used sums instead of one s_j per neuron: s = R_out / stab(z) element by "
            "element, one value per sample and output neuron, not Σ_j R_j / Σ_j stab(z_j).",
            variant(per_neuron=False),
        ),
        (
            "you returned c; the last step multiplies by the input: R_in = x * c.",
            variant(times_x=False),
        ),
    ]


@checker("08.1", "lrp_dense", "lrp_dense(x, W, b, R_out, rho, eps)")
def ex08_lrp_dense(lrp_dense: Callable) -> str:
    r"""Check Task 08.1: the four steps for one dense layer, a batch, with ρ and ε.

    Examples
    --------
    >>> def lrp_dense(x, W, b, R_out, rho, eps):
    ...     z = x @ rho(W) + rho(b)
    ...     d = z + eps * np.where(z >= 0, 1.0, -1.0)
    ...     s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    ...     return x * (s @ rho(W).T)
    >>> ex08_lrp_dense(lrp_dense).passed
    True
    """
    cases = numbered(
        [
            Case(
                "ε = 0.1, rho: w ↦ w, one sample", _dense_case(81, 1, 4, 3, 0.0, 0.1), _DENSE_NAMES
            ),
            Case(
                "LRP-γ (γ = 0.25) on ReLU outputs, a batch of 3, ε = 0.01",
                _dense_case(82, 3, 5, 3, 0.25, 0.01),
                _DENSE_NAMES,
            ),
            Case(
                "a square layer, a batch of 2 (catches W vs. W.T), ε = 0.05",
                _dense_case(83, 2, 3, 3, 0.0, 0.05),
                _DENSE_NAMES,
            ),
            Case(
                "ε = 0 (LRP-0) and a neuron with z_j = 0: it sends nothing",
                _zero_neuron(),
                _DENSE_NAMES,
            ),
        ],
        held_out=[
            Case(
                "LRP-γ (γ = 1), a batch of 4, a 6×2 layer, ε = 0.2",
                _dense_case(801, 4, 6, 2, 1.0, 0.2),
                _DENSE_NAMES,
            )
        ],
    )
    for case in cases:
        x, W, b, R, rho, eps = case.args
        rule = rho.rule(eps)
        expected = np.stack(
            [ref.dense_messages(x[n], W, b, R[n], rule).sum(axis=1) for n in range(len(x))]
        )
        got = as_array(call(lrp_dense, case, _DENSE_SHAPES), case, "R_in, shape (N, n_in)")
        compare(
            got,
            expected,
            case,
            what="R_in",
            label=entry("sample n", "input i"),
            shape_hint=" = (N, n_in)",
            variants=_dense_variants(x, W, b, R, rho, eps),
            nonfinite="A neuron with stab(z_j) = 0 sends nothing (0/0 := 0): "
            "np.divide(R_out, d, out=np.zeros_like(d), where=d != 0).",
            hint="Check the four steps: z = x @ rho(W) + rho(b); s = R_out / stab(z); "
            "c = s @ rho(W).T; R_in = x * c.",
        )
    return (
        f"All {len(cases)} cases agree with the rule book. One function covers LRP-0, ε and γ: "
        "only ρ and ε change. The neuron with z_j = 0 under LRP-0 sent nothing (0/0 := 0)."
    )


# --------------------------------------------------------------------------------------
# Task 08.2: the whole MLP, in numpy.


class Layers(list):
    """A list of ``(W, b)`` pairs, ``W`` shaped (n_in, n_out), that prints its sizes only."""

    def __repr__(self) -> str:
        sizes = [self[0][0].shape[0], *(W.shape[1] for W, _ in self)] if self else []
        return f"{len(self)} layers (W, b), sizes {'-'.join(map(str, sizes))}"


def mlp_layers(model: nn.Module) -> Layers:
    """The ``(W, b)`` of every ``nn.Linear`` of ``model``, float64, ``W`` shaped (n_in, n_out).

    >>> net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> mlp_layers(net)
    2 layers (W, b), sizes 3-2-1
    """
    return Layers(
        (
            m.weight.detach().double().numpy().T.copy(),
            m.bias.detach().double().numpy().copy(),
        )
        for m in model.modules()
        if isinstance(m, nn.Linear)
    )


def _as_model(layers: Layers) -> nn.Sequential:
    modules: list[nn.Module] = []
    for k, (W, b) in enumerate(layers):
        linear = nn.Linear(*W.shape).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if k < len(layers) - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules).eval()


def _mlp(
    layers: Layers,
    x: np.ndarray,
    eps: float,
    *,
    seed: str = "logit",
    relu: bool = True,
    bias: bool = True,
    stab: bool = True,
    stop: int = 0,
) -> np.ndarray:
    """Montavon's loop over the MLP, with switches for the typical mistakes."""
    A = [x]
    for k, (W, b) in enumerate(layers):
        z = A[-1] @ W + b
        A.append(np.maximum(z, 0) if relu and k < len(layers) - 1 else z)
    logits = A[-1]
    c = logits.argmax(axis=1)
    rows = np.arange(len(x))
    R = np.zeros_like(logits)
    if seed == "logit":
        R[rows, c] = logits[rows, c]
    elif seed == "one":
        R[rows, c] = 1.0
    elif seed == "all":
        R = logits.copy()
    elif seed == "softmax":
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        R[rows, c] = (p / p.sum(axis=1, keepdims=True))[rows, c]
    for k in reversed(range(stop, len(layers))):
        W, b = layers[k]
        R = _four_steps(A[k], W, b, R, Rho(0.0), eps, bias=bias, stab=stab)
    return R


def _random_mlp(seed: int, sizes: tuple[int, ...], n: int) -> tuple[Layers, np.ndarray]:
    rng = np.random.default_rng(seed)
    layers = Layers(
        (rng.normal(scale=1 / np.sqrt(a), size=(a, b)), rng.normal(scale=0.1, size=b))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    )
    return layers, rng.uniform(0.0, 1.0, (n, sizes[0]))


def _mnist_mlp(n: int, offset: int) -> tuple[Layers, np.ndarray]:
    from ..zoo import mnist_mlp, mnist_samples

    x, _ = mnist_samples()
    return mlp_layers(mnist_mlp()), x[offset : offset + 2 * n : 2].reshape(n, -1).double().numpy()


_MLP_NAMES = ("layers", "x", "eps")
_MLP_SHAPES = (
    "layers[k] = (W, b) with W shaped (n_in, n_out): the forward is a = max(0, a @ W + b) for "
    "every layer but the last (the logits); x has shape (N, 784)."
)


def _fresh(layers: Layers) -> Layers:
    return Layers((W.copy(), b.copy()) for W, b in layers)


@checker("08.2", "lrp_mlp", "lrp_mlp(layers, x, eps)")
def ex08_lrp_mlp(lrp_mlp: Callable) -> str:
    r"""Check Task 08.2: the ε-rule through a whole MLP, compared with ``lt.explain``.

    Examples
    --------
    >>> ex08_lrp_mlp(lambda layers, x, eps: _mlp(layers, x, eps)).passed
    True
    """
    cases = numbered(
        [
            Case(
                "a random 6-5-4-3 MLP, one sample, ε = 0.1",
                (*_random_mlp(84, (6, 5, 4, 3), 1), 0.1),
                _MLP_NAMES,
            ),
            Case(
                "the MNIST MLP (784-300-100-10), 3 digits, ε = 0.25",
                (*_mnist_mlp(3, 0), 0.25),
                _MLP_NAMES,
            ),
            Case("the MNIST MLP, 2 digits, ε = 0 (LRP-0)", (*_mnist_mlp(2, 7), 0.0), _MLP_NAMES),
        ],
        held_out=[
            Case(
                "a random 10-8-8-8-4 MLP, a batch of 3, ε = 0.5",
                (*_random_mlp(802, (10, 8, 8, 8, 4), 3), 0.5),
                _MLP_NAMES,
            )
        ],
    )
    for case in cases:
        layers, x, eps = case.args
        student = replace(case, args=(_fresh(layers), x, eps))
        got = as_array(call(lrp_mlp, student, _MLP_SHAPES), case, "R, shaped like x")
        for (W, b), (W0, b0) in zip(student.args[0], layers, strict=True):
            if not (np.array_equal(W, W0) and np.array_equal(b, b0)):
                raise Failure(
                    f"{case.header()}\nYour function changed the weights or biases in `layers` "
                    "in place. Build new arrays (rho(W) returns a new one), so that the network "
                    "stays as it was."
                )
        expected = explain(_as_model(layers), torch.from_numpy(x), rule=Epsilon(eps))
        variants = [
            (
                "you seeded R with 1 at the explained class. The course seeds the logit "
                "itself, R = f_c(x)·onehot(c), so that Σ_i R_i ≈ f_c(x).",
                _later(_mlp, layers, x, eps, seed="one"),
            ),
            (
                "you seeded R with all the logits; explain one class: R = f_c(x)·onehot(c), "
                "zero for every other class.",
                _later(_mlp, layers, x, eps, seed="all"),
            ),
            (
                "you seeded the softmax probability; explain the logit f_c(x), not softmax.",
                _later(_mlp, layers, x, eps, seed="softmax"),
            ),
            (
                "your forward pass left out the ReLU: the input of layer k + 1 is "
                "a = max(0, a @ W + b), and the four steps multiply by that a.",
                _later(_mlp, layers, x, eps, relu=False),
            ),
            (
                "you forgot the bias in z: z = a @ W + b in every layer.",
                _later(_mlp, layers, x, eps, bias=False),
            ),
            (
                "you divided by z without the stabiliser: stab(z) = z + eps·sign(z).",
                _later(_mlp, layers, x, eps, stab=False),
            ),
            (
                "your backward loop stopped one layer early: go down to the input, "
                "for k in reversed(range(len(layers))).",
                _later(_mlp, layers, x, eps, stop=1),
            ),
        ]
        compare(
            got,
            expected.relevance.numpy(),
            case,
            what="R at the input",
            label=entry("sample n", "pixel i"),
            shape_hint=" = (N, n_in), shaped like x",
            variants=variants,
            nonfinite="With eps = 0 a neuron with z_j = 0 sends nothing (0/0 := 0).",
            hint="Forward: keep every layer's input a (after the ReLU). Seed R = f_c(x)·onehot(c) "
            "with c the predicted class of each sample. Backward: for k from the last layer "
            "down to 0, R = lrp_dense(A[k], W, b, R, rho=identity, eps).",
        )
    layers, x, eps = cases[1].args
    R = _mlp(layers, x, eps)
    logit = (x @ layers[0][0] + layers[0][1]).clip(0)
    for W, b in layers[1:-1]:
        logit = (logit @ W + b).clip(0)
    logit = (logit @ layers[-1][0] + layers[-1][1]).max(axis=1)
    return (
        f"All {len(cases)} cases agree with lt.explain(model, x, rule=Epsilon(eps)) in float64. "
        f"In case 2 the first digit's logit is {logit[0]:.4f} and its pixels hold "
        f"Σ_i R_i = {R[0].sum():.4f}; biases and ε took the rest."
    )


# --------------------------------------------------------------------------------------
# Task 08.3: a VGG-style CNN, with PyTorch's autograd.


_WEIGHTED = (nn.Conv2d, nn.Linear)


def _cnn(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    detach: bool = True,
    stab: bool = True,
    bias: bool = True,
    pool: str = "winner",
    per_neuron: bool = True,
    times_x: bool = True,
    seed: str = "logit",
    relu: bool = True,
    single: bool = False,
) -> torch.Tensor:
    """Montavon's autograd trick over a flat ``nn.Sequential``, with switches for mistakes."""
    model = copy.deepcopy(model)
    layers = list(model)
    A = [x.detach()]
    with torch.no_grad():
        for layer in layers:
            A.append(layer(A[-1]))
    logits = A[-1]
    c = logits.argmax(dim=1)
    rows = torch.arange(len(x))
    R = torch.zeros_like(logits)
    R[rows, c] = logits[rows, c] if seed == "logit" else 1.0
    for layer, a in zip(reversed(layers), reversed(A[:-1]), strict=True):
        if isinstance(layer, nn.Flatten):
            R = R.reshape(a.shape)
            continue
        if not isinstance(layer, (*_WEIGHTED, nn.MaxPool2d)):
            if not relu:  # the ReLU handled with the trick and ε
                a = a.clone().requires_grad_(True)
                z = layer(a)
                s = (R / (z + eps * _torch_sign(z))).detach()
                (z * s).sum().backward()
                R = (a * a.grad).detach()
            continue
        a = a.clone().requires_grad_(True)
        if isinstance(layer, nn.MaxPool2d) and pool == "avg":
            layer = nn.AvgPool2d(layer.kernel_size, layer.stride)
        if isinstance(layer, _WEIGHTED) and not bias:
            layer.bias = None
        z = layer(a)
        e = eps if isinstance(layer, _WEIGHTED) or pool == "eps" else 0.0
        d = z + e * _torch_sign(z, single) if stab else z
        zero = d == 0
        if per_neuron:
            s = torch.where(zero, 0.0, R / torch.where(zero, 1.0, d))
        else:
            s = R.sum() / d.sum() * torch.ones_like(d)
        if detach:
            s = s.detach()
        (z * s).sum().backward()
        R = (a * a.grad if times_x or layer is not layers[0] else a.grad).detach()
    return R


def _torch_sign(z: torch.Tensor, single: bool = False) -> torch.Tensor:
    """sign(z) with sign(0) = +1, in z's dtype (``single``: in float32, a typical slip)."""
    sign = torch.where(z >= 0, 1.0, -1.0)  # float32: torch's default dtype for two numbers
    return sign if single else sign.to(z.dtype)


def _random_cnn(seed: int, channels: tuple[int, int], hidden: int, size: int) -> nn.Sequential:
    torch.manual_seed(seed)
    c1, c2 = channels
    model = nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (size // 2) ** 2, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 3),
    )
    with torch.no_grad():
        for m in model:
            if isinstance(m, _WEIGHTED):
                m.bias.normal_(0.0, 0.05)
    return model.double().eval()


def _cnn_case(kind: str, n: int, eps: float, seed: int = 0) -> tuple:
    from ..zoo import digits_cnn, digits_samples, mnist_cnn, mnist_samples

    if kind in ("digits", "mnist"):
        model, samples = (
            (digits_cnn, digits_samples) if kind == "digits" else (mnist_cnn, mnist_samples)
        )
        x, _ = samples()
        model = model().double()
        model.label = f"zoo.{kind}_cnn() in float64"
        return model, x[seed : seed + 3 * n : 3].double(), eps
    generator = torch.Generator().manual_seed(seed)
    model = _random_cnn(seed, (4, 6), 8, 6)
    model.label = "a random CNN: " + "-".join(type(m).__name__.replace("2d", "") for m in model)
    return model, torch.rand(n, 1, 6, 6, generator=generator).double(), eps


_CNN_NAMES = ("model", "x", "eps")
_CNN_SHAPES = (
    "x has shape (N, C, H, W); a Flatten layer turns (N, C, H, W) into (N, C·H·W): on the way "
    "back, reshape R to the shape of the Flatten's input."
)


@checker("08.3", "lrp_cnn", "lrp_cnn(model, x, eps)")
def ex08_lrp_cnn(lrp_cnn: Callable) -> str:
    r"""Check Task 08.3: the autograd trick through a VGG-style CNN, compared with ``lt.explain``.

    Examples
    --------
    >>> ex08_lrp_cnn(lambda model, x, eps: _cnn(model, x, eps)).passed
    True
    """
    cases = numbered(
        [
            Case(
                "a random VGG-style CNN (conv-relu-conv-relu-maxpool-linear-relu-linear), "
                "one 6×6 input, ε = 0.1",
                _cnn_case("random", 1, 0.1, seed=85),
                _CNN_NAMES,
            ),
            Case(
                "the zoo's digits CNN, 2 digits, ε = 0.25", _cnn_case("digits", 2, 0.25), _CNN_NAMES
            ),
            Case(
                "the zoo's digits CNN, 2 digits, ε = 0 (LRP-0)",
                _cnn_case("digits", 2, 0.0, 1),
                _CNN_NAMES,
            ),
        ],
        held_out=[
            Case(
                "the zoo's MNIST CNN (5×5 kernels), 2 digits, ε = 0.01",
                _cnn_case("mnist", 2, 0.01, 2),
                _CNN_NAMES,
            )
        ],
    )
    for case in cases:
        model, x, eps = case.args
        names = [n for n, _ in model.named_parameters()]
        before = [p.detach().clone() for p in model.parameters()]
        student = replace(case, args=(copy.deepcopy(model), x.clone(), eps))
        got = as_array(call(lrp_cnn, student, _CNN_SHAPES), case, "R, shaped like x")
        after = [p.detach() for p in student.args[0].parameters()]
        for name, p0, p1 in zip(names, before, after, strict=True):
            if not torch.equal(p0, p1):
                raise Failure(
                    f"{case.header()}\nYour function changed the model's parameter `{name}`. "
                    "Compute z = layer.forward(a) with the model as it is; never assign to its "
                    "weights."
                )
        expected = explain(model, x, rule=Epsilon(eps)).relevance.numpy()

        def variant(
            model: nn.Module = model, x: torch.Tensor = x, eps: float = eps, **switches: Any
        ):
            return _later(lambda: _cnn(model, x, eps, **switches).numpy())

        variants = [
            (
                "you did not detach s: (z * s).sum().backward() then also differentiates s = "
                "R / stab(z), and c is not ρ(W)ᵀs. Write s = (R / stab(z)).detach().",
                variant(detach=False),
            ),
            (
                "your stabiliser is float32: torch.where(z >= 0, 1.0, -1.0) makes a float32 "
                "tensor (torch's default dtype for plain numbers), so eps·sign(z) carries "
                "only 7 digits. Keep z's dtype: torch.where(z >= 0, 1.0, -1.0).to(z.dtype).",
                variant(single=True),
            ),
            (
                "you divided by z without the stabiliser: s = R / stab(z), "
                "stab(z) = z + eps·sign(z), in every Conv2d and Linear layer.",
                variant(stab=False),
            ),
            (
                "you forgot the bias in z: z = layer.forward(a) includes it (do not call "
                "F.conv2d or F.linear without the bias).",
                variant(bias=False),
            ),
            (
                "you stabilised the max pooling too: a pooling layer has no weights, its winner "
                "takes all of R. Use the trick there with eps = 0 (or route R to the arg-max).",
                variant(pool="eps"),
            ),
            (
                "you replaced max pooling by average pooling (as Montavon's tutorial does). "
                "lrp_tutor sends a pooled neuron's relevance to the winner: apply the trick "
                "to the MaxPool2d itself, with eps = 0.",
                variant(pool="avg"),
            ),
            (
                "you used sums instead of one s per neuron: s = R / stab(z) element by element "
                "(the shape of z), not R.sum() / stab(z).sum().",
                variant(per_neuron=False),
            ),
            (
                "you returned c at the input; the last step multiplies by the input: R = a * c.",
                variant(times_x=False),
            ),
            (
                "you seeded R with 1 at the explained class. The course seeds the logit "
                "itself, R = f_c(x)·onehot(c).",
                variant(seed="one"),
            ),
            (
                "you applied the ε-rule to the ReLU layers too: an element-wise activation "
                "passes relevance on unchanged (R_in = R_out).",
                variant(relu=False),
            ),
        ]
        compare(
            got,
            expected,
            case,
            what="R at the input",
            label=entry("sample n", "channel", "row", "column"),
            shape_hint=" = (N, C, H, W), shaped like x",
            variants=variants,
            nonfinite="A neuron with stab(z) = 0 (max pooling of zeros, or eps = 0) sends nothing: "
            "0/0 := 0, e.g. torch.where(d == 0, 0.0, R / torch.where(d == 0, 1.0, d)).",
            hint="Per layer, from the top: Conv2d and Linear: a = A[l].clone().requires_grad_(); "
            "z = layer.forward(a); s = (R / stab(z)).detach(); (z * s).sum().backward(); "
            "R = a * a.grad. MaxPool2d: the same with eps = 0. ReLU: R unchanged. Flatten: "
            "R.reshape(A[l].shape).",
        )
    model, x, eps = cases[1].args
    R = explain(model, x, rule=Epsilon(eps))
    return (
        f"All {len(cases)} cases agree with lt.explain(model, x, rule=Epsilon(eps)) in float64: "
        "four steps and one backward() per layer are all LRP needs. In case 2 the first digit's "
        f"logit is {R.seed[0].item():.4f} and its pixels hold Σ_i R_i = {R.total[0].item():.4f}."
    )
