"""The main job: ``make demo`` / ``lrp-tutor demo``.

Explains two shipped MNIST test digits (the shipped digits CNN) and a photographic texture
mosaic (the shipped brick / grass / gravel CNN) with three rules, prints the conservation
ledger, and writes one PNG figure. Everything runs offline in seconds on a CPU.

>>> sorted(RULES)[:3]
['alphabeta', 'epsilon', 'epsilon_alpha2_beta1']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import composites, rules, zoo
from .composites import Composite
from .errors import InputError
from .fast import explain

__all__ = ["RULES", "DEFAULT_RULES", "run_demo"]

# name -> a function of the input range (low, high) giving a Rule or a Composite
RULES: dict[str, Callable[[float, float], rules.Rule | Composite]] = {
    "lrp0": lambda low, high: rules.LRP0(),
    "epsilon": lambda low, high: rules.Epsilon(0.25),
    "gamma": lambda low, high: rules.Gamma(0.25),
    "alphabeta": lambda low, high: rules.AlphaBeta(2.0, 1.0),
    "zplus": lambda low, high: rules.ZPlus(),
    "epsilon_plus_flat": lambda low, high: composites.epsilon_plus_flat(),
    "epsilon_gamma_box": lambda low, high: composites.epsilon_gamma_box(low, high),
    "epsilon_alpha2_beta1": lambda low, high: composites.epsilon_alpha2_beta1(),
}
"""The rules and composites the demo knows, by the name given to ``--rule``."""

DEFAULT_RULES = ("epsilon", "alphabeta", "epsilon_gamma_box")

_TITLES = {
    "lrp0": "LRP-0",
    "epsilon": "LRP-ε (ε = 0.25)",
    "gamma": "LRP-γ (γ = 0.25)",
    "alphabeta": "LRP-αβ (α=2, β=1)",
    "zplus": "LRP-z⁺",
    "epsilon_plus_flat": "ε / z⁺ / flat",
    "epsilon_gamma_box": "ε / γ / z^B",
    "epsilon_alpha2_beta1": "ε / α2β1",
}


def _pick(names: Sequence[str] | None) -> list[str]:
    names = list(names or DEFAULT_RULES)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise InputError(
            f"Unknown --rule {', '.join(map(repr, unknown))}; choose from {', '.join(RULES)}."
        )
    return names


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as error:
        raise InputError(
            f"--device {name!r} is not a torch device; use --device cpu (or cuda, cuda:1, mps)."
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available here; use --device cpu.")
    return device


def _destination(out: str | Path) -> Path:
    """``out`` as a Path, its folder created; refused before any work when matplotlib cannot
    write its format (an OSError propagates when the folder cannot be created)."""
    from matplotlib.figure import Figure

    out = Path(out)
    formats = Figure().canvas.get_supported_filetypes()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise InputError(
            f"--out {str(out)!r}: cannot write a figure of type {suffix or '(no suffix)'!r}; "
            f"end the name in one of {', '.join('.' + f for f in sorted(formats))}, e.g. .png."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def run_demo(
    out: str | Path = "lrp_demo.png",
    rules: Sequence[str] | None = None,
    device: str = "cpu",
    verbose: bool = True,
) -> Path:
    """Explain shipped digits and a texture photograph with three rules; save one figure.

    Parameters
    ----------
    out : path
        Where to write the PNG.
    rules : names from :data:`RULES`, optional
        Default: ε (0.25), αβ (α=2, β=1) and the composite ε/γ/z^B.
    device : str
        A torch device.

    Returns
    -------
    Path
        The figure written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import viz

    names, dev = _pick(rules), _device(device)
    out = _destination(out)
    say = print if verbose else (lambda *args, **kwargs: None)

    digits, labels = zoo.mnist_samples()
    digits = digits[[0, 6]].to(dev)  # a 0 and a 3
    mosaic, _ = zoo.texture_mosaic()
    cases = [
        ("digit", zoo.mnist_cnn().to(dev), digits[:1], None),
        ("digit", zoo.mnist_cnn().to(dev), digits[1:], None),
        ("texture", zoo.textures_cnn().to(dev), mosaic.to(dev), 0),  # explain "brick"
    ]

    fig, axes = _grid(len(cases), len(names) + 1)
    for row, (kind, model, x, target) in enumerate(cases):
        low, high = float(x.min()), float(x.max())
        image = x[0].detach().cpu().numpy()
        axes[row][0].imshow(image[0], cmap="gray")
        axes[row][0].set_axis_off()
        for col, name in enumerate(names, start=1):
            how = RULES[name](low, high)
            key = "composite" if isinstance(how, Composite) else "rule"
            result = explain(model, x, target=target, **{key: how})
            cls = int(result.target[0])
            label = zoo.TEXTURE_CLASSES[cls] if kind == "texture" else str(cls)
            logit = float(result.output[0, cls])
            total = float(result.relevance[0].sum())
            say(
                f"{kind} → class {label}, rule {name}: f_c(x) = {logit:.4f}, "
                f"Σ R = {total:.4f}, absorbed = {float(result.ledger.absorbed[0]):.4f}"
            )
            if row == 0 and col == 1:
                say(result.ledger)
                say(result.ledger.check(tolerance=1e-4))
            viz.heatmap(
                result.relevance[0].cpu(), ax=axes[row][col], colorbar=False, title=_TITLES[name]
            )
        axes[row][0].set_title(f"{kind}: explain {label}")

    fig.suptitle("LRP on shipped models: red = evidence for the class, blue = against")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    say(f"wrote {out}")
    return out


def _grid(rows: int, cols: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.0 * rows), squeeze=False)
    fig.subplots_adjust(hspace=0.45, wspace=0.15)
    plt.close(fig)
    return fig, axes
