"""How much more than a gradient does LRP cost? Time and peak memory, side by side.

For VGG16 and ResNet18 (random weights, 224×224 inputs, batches 1 and 8), and ResNet-50,
MobileNetV2, EfficientNet-B0, DenseNet-121 and ConvNeXt-T (batch 8; torchvision's model code,
where torchvision imports), this script measures, interleaved in one run, the median time of

- a plain gradient: one forward pass and ``torch.autograd.grad`` with respect to the input,
- ``lrp_tutor.explain`` with ε, epsilon_plus_flat, epsilon_alpha2_beta1 (αβ), z⁺ and γ,

and prints each median over the gradient's, together with the peak memory above the
memory in use before the call (CPU: peak resident set size, read from /proc with large
allocations returned to the system at once; CUDA: ``torch.cuda.max_memory_allocated``).
On a CPU each model is timed in a process of its own: how fast a method runs there depends
on the state the allocator was left in (freed memory goes back to the system, fresh memory
is paid in page faults), so one model's runs would bias the next model's ratios.

Targets: ε ≤ 1.2×, epsilon_plus_flat ≤ 1.5×, αβ ≤ 2.0× the gradient's time on VGG16 and
ResNet18; ε ≤ 1.3×, epsilon_plus_flat ≤ 1.6× on the other CNNs (their operations: gates,
normalisations, in-place sums); extra peak memory (LRP's peak minus the gradient's) ≤ 1.5× the
gradient's peak.

Zennit and Captum, where they import, are timed in the same interleaved loop and measured in
the same memory child process, and printed in a second table below ours: median, over the
gradient's ("× grad"), over ours with the same rules ("× ours"), and peak memory (the targets
are ours alone):

- ``zennit ε``, ``zennit epsilon_plus_flat``, ``zennit αβ``: ``zennit.attribution.Gradient``
  with a uniform ``Epsilon(1e-6)`` (a ``LayerMapComposite`` on convolutions and linear layers,
  plus Zennit's base map: activations pass, residual sums and average pools normalised,
  as in its own composites), ``EpsilonPlusFlat`` and ``EpsilonAlpha2Beta1``, seeded like
  ours with the target logit (one-hot of the argmax times the logit). ResNet18 gets Zennit's
  ResNet canonizer (merged batch norms, a ``Sum`` module for ``out += identity``); Zennit
  recognises torchvision's block classes by ``isinstance``, so the canonizer here is adapted to
  lrp_tutor.zoo's blocks, which have torchvision's attribute names. Each timed call creates
  the composite, its canonizers and the ``Gradient`` attributor, registers them and removes
  them again: that is what a user pays per call (ours builds and removes its hooks per call).
- ``captum ε``, ``captum z⁺``: ``captum.attr.LRP`` with ``EpsilonRule(1e-6)`` and
  ``Alpha1_Beta0_Rule`` on every convolution and linear layer (Captum's defaults elsewhere), on
  a deep copy of the model, since Captum sets a ``rule`` attribute on layers (it removes it
  after each call, so the timed call sets the rules again). Captum needs the class up front:
  it gets the predicted class, computed once outside the timed call. Captum keeps every
  layer's inputs until its next call; the timed call drops them, so that they do not count
  in the memory in use before the next call. VGG16 only: Captum's LRP has no rule for
  residual additions unless the model's forward uses its ``Addition_Module``; on ResNet18 the
  script runs it once and prints what comes out instead (no error, relevance far off).

Before timing, each third-party method is compared with ours for the same rule on the first
batch: the sums of relevance and max |R_theirs − R_ours| / max |R_ours|. Where a library does
not import, one line says why ("zennit not importable: …"; Zennit 0.5.1 imports torchvision,
which has to import next to this torch).

Usage::

    python benchmarks/bench_explain.py                      # CPU, 2 threads
    python benchmarks/bench_explain.py --repeats 2 --models resnet18 --batches 1
    python benchmarks/bench_explain.py --device cuda
    PYTHONPATH=DIR python benchmarks/bench_explain.py      # with zennit and captum in DIR
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import importlib
import importlib.metadata
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from lrp_tutor import composites, zoo
from lrp_tutor.fast import explain
from lrp_tutor.rules import Epsilon, Gamma, ZPlus

TARGETS = {"ε": 1.2, "epsilon_plus_flat": 1.5, "αβ": 2.0}
CNN_TARGETS = {"ε": 1.3, "epsilon_plus_flat": 1.6}
"""The targets of the CNNs beyond VGG16 and ResNet18."""
MEMORY_TARGET = 1.5
ZOO = ("vgg16", "resnet18", "resnet50")
TORCHVISION = ("mobilenet_v2", "efficientnet_b0", "densenet121", "convnext_tiny")
DEFAULT_RUNS = {"vgg16": (1, 8), "resnet18": (1, 8)} | {m: (8,) for m in ("resnet50", *TORCHVISION)}

#: Each third-party method, and our method with the same rules.
OURS = {
    "zennit ε": "ε",
    "zennit epsilon_plus_flat": "epsilon_plus_flat",
    "zennit αβ": "αβ",
    "captum ε": "ε",
    "captum z⁺": "z⁺",
}


# ----------------------------------------------------------------------------- models


def build(name: str) -> tuple[nn.Module, str]:
    """VGG16, ResNet18/50 from lrp_tutor.zoo (torchvision's layout), the others from
    torchvision's own model code; random weights."""
    if name in ZOO:
        return getattr(zoo, name)(), "lrp_tutor.zoo"
    import torchvision.models as tvm

    return tvm.get_model(name, weights=None), "torchvision"


def _torchvision_models_only() -> None:
    """torchvision's compiled operators do not load beside a torch build other than its own
    (here, torch's CPU build); its model code needs none of them. Stub the two modules that
    register them, before the first import (as tests/conftest.py does)."""
    import types

    if "torchvision" not in sys.modules:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))


_torchvision_models_only()


def has_residuals(model: nn.Module) -> bool:
    return any(isinstance(m, zoo.BasicBlock | zoo.Bottleneck) for m in model.modules())


# ----------------------------------------------------------------------------- methods


def _logit_seed(out: torch.Tensor) -> torch.Tensor:
    """One-hot of the predicted class times its logit (what ``explain`` starts from)."""
    target = out.detach().argmax(1, keepdim=True)
    return torch.zeros_like(out).scatter_(1, target, out.detach().gather(1, target))


def _gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = model(x)
    return torch.autograd.grad(out, x, _logit_seed(out))[0]


def ours(model: nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    return {
        "gradient": lambda x: _gradient(model, x),
        "ε": lambda x: explain(model, x, rule=Epsilon()),
        "epsilon_plus_flat": lambda x: explain(model, x, composite=composites.epsilon_plus_flat()),
        "αβ": lambda x: explain(model, x, composite=composites.epsilon_alpha2_beta1()),
        "z⁺": lambda x: explain(model, x, rule=ZPlus()),
        "γ": lambda x: explain(model, x, rule=Gamma(0.25)),
    }


def third_party(name: str) -> tuple[bool, str]:
    """``(True, "zennit 0.5.1")`` or ``(False, "zennit not importable: <reason>")``."""
    module = {"zennit": "zennit", "captum": "captum.attr"}[name]
    try:
        importlib.import_module(module)
    except Exception as error:  # e.g. torchvision (zennit imports it) failing next to torch
        reason = (str(error).strip().splitlines() or [""])[0]
        return False, f"{name} not importable: {type(error).__name__}: {reason}"
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return True, f"{name} {version}"


@functools.cache
def zennit_resnet_canonizer() -> type:
    """Zennit's ResNetCanonizer, recognising lrp_tutor.zoo's ``BasicBlock`` and ``Bottleneck``.

    Zennit's block canonizers test ``isinstance(module, torchvision...BasicBlock)``; these
    subclasses also accept zoo's blocks and give them Zennit's canonical forward (the same
    computation, with the residual sum as a ``zennit.layer.Sum`` module that takes a rule).
    """
    from zennit.canonizers import CompositeCanonizer, SequentialMergeBatchNorm
    from zennit.layer import Sum
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    def recognising(base: type, block: type) -> type:
        class BlockCanonizer(base):
            @classmethod
            def _attribute_map(cls, name, module):
                if isinstance(module, block):
                    return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
                return super()._attribute_map(name, module)

        return BlockCanonizer

    basic = recognising(ResNetBasicBlockCanonizer, zoo.BasicBlock)
    bottleneck = recognising(ResNetBottleneckCanonizer, zoo.Bottleneck)

    class ZooResNetCanonizer(CompositeCanonizer):
        def __init__(self) -> None:
            super().__init__((SequentialMergeBatchNorm(), bottleneck(), basic()))

    return ZooResNetCanonizer


def zennit_methods(model: nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    from zennit.attribution import Gradient
    from zennit.composites import (
        EpsilonAlpha2Beta1,
        EpsilonPlusFlat,
        LayerMapComposite,
        layer_map_base,
    )
    from zennit.rules import Epsilon as ZennitEpsilon
    from zennit.types import Convolution

    canonizer = zennit_resnet_canonizer() if has_residuals(model) else None

    def uniform_epsilon(canonizers: list) -> LayerMapComposite:
        rules = [(Convolution, ZennitEpsilon(1e-6)), (nn.Linear, ZennitEpsilon(1e-6))]
        return LayerMapComposite(layer_map_base() + rules, canonizers=canonizers)

    def attribution(make_composite: Callable) -> Callable[[torch.Tensor], object]:
        def call(x: torch.Tensor) -> torch.Tensor:
            composite = make_composite(canonizers=[canonizer()] if canonizer else [])
            with Gradient(model, composite) as attributor:  # registers, and removes on exit
                return attributor(x.detach(), _logit_seed)[1]

        return call

    return {
        "zennit ε": attribution(uniform_epsilon),
        "zennit epsilon_plus_flat": attribution(EpsilonPlusFlat),
        "zennit αβ": attribution(EpsilonAlpha2Beta1),
    }


def captum_methods(
    model: nn.Module, target: torch.Tensor
) -> dict[str, Callable[[torch.Tensor], object]]:
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule

    model = copy.deepcopy(model)  # Captum sets (and deletes) a `rule` attribute on layers
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]

    def attribution(make_rule: Callable) -> Callable[[torch.Tensor], object]:
        def call(x: torch.Tensor) -> torch.Tensor:
            for layer in weighted:
                layer.rule = make_rule()
            relevance = LRP(model).attribute(x.detach().requires_grad_(True), target=target)
            for layer in model.modules():  # Captum keeps each layer's inputs until the next
                layer.__dict__.pop("activations", None)  # call; drop them, as ours does
            return relevance

        return call

    return {
        "captum ε": attribution(lambda: EpsilonRule(epsilon=1e-6)),
        "captum z⁺": attribution(Alpha1_Beta0_Rule),
    }


def methods(
    model: nn.Module, x: torch.Tensor, libraries: tuple[str, ...] = ()
) -> dict[str, Callable[[torch.Tensor], object]]:
    """Every method to time at ``x``: the gradient, ours, and those of ``libraries``."""
    table = ours(model)
    zoo_model = any(isinstance(m, zoo.VGG | zoo.ResNet) for m in [model])
    if "zennit" in libraries and zoo_model:  # Zennit's canonizers know VGG and ResNet only
        table |= zennit_methods(model)
    if "captum" in libraries and zoo_model and not has_residuals(model):
        with torch.no_grad():
            target = model(x).argmax(1)
        table |= captum_methods(model, target)
    return table


def _relevance(result: object) -> torch.Tensor:
    return getattr(result, "relevance", result)  # ours return an Explanation


# ----------------------------------------------------------------------------- measuring


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_memory(fn: Callable[[], object], device: str) -> float:
    """Peak memory (MiB) above what was in use before ``fn()``."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del result
        return peak / 2**20
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:  # resets VmHWM to the current RSS
        clear.write("5")
    result = fn()
    peak = _rss_kb("VmHWM") - base
    del result
    return peak / 1024


def _setup(name: str, batch: int, args: argparse.Namespace):
    torch.manual_seed(0)
    model, source = build(name)
    model = model.to(args.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(batch, 3, args.size, args.size, device=args.device)
    return model, x, source


def _libraries() -> tuple[tuple[str, ...], list[str]]:
    """The third-party libraries that import, and one line about each."""
    found, lines = [], []
    for name in ("zennit", "captum"):
        ok, line = third_party(name)
        lines.append(line + (": timed" if ok else ""))
        if ok:
            found.append(name)
    return tuple(found), lines


def runs(args: argparse.Namespace) -> list[tuple[str, tuple[int, ...]]]:
    """(model, batches) to measure: the defaults, or what --models and --batches say."""
    names = args.models or list(DEFAULT_RUNS)
    return [(n, tuple(args.batches) if args.batches else DEFAULT_RUNS.get(n, (8,))) for n in names]


def measure_memory(args: argparse.Namespace) -> None:
    """(Child process) print the peak memory of every method, one line each."""
    torch.set_num_threads(args.threads)
    libraries, _ = _libraries()
    for name, batches in runs(args):
        for batch in batches:
            model, x, _ = _setup(name, batch, args)
            for method, fn in methods(model, x, libraries).items():
                fn(x)  # warm up
                peak = peak_memory(lambda fn=fn, x=x: fn(x), args.device)
                print(f"{name} {batch} {method} {peak}")


def _memory_table(args: argparse.Namespace) -> dict[tuple[str, int, str], float]:
    if args.device == "cuda":
        return {}
    # a child process in which large freed blocks go back to the system at once, so that the
    # resident set size follows the memory in use (timings are taken here, without it)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    command = [sys.executable, __file__, "--memory-child", "--threads", str(args.threads)]
    if args.models:
        command += ["--models", *args.models]
    if args.batches:
        command += ["--batches", *map(str, args.batches)]
    command += ["--size", str(args.size), "--device", args.device]
    lines = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    table = {}
    for line in lines.splitlines():
        name, batch, rest = line.split(" ", 2)
        method, value = rest.rsplit(" ", 1)  # third-party names contain a space
        table[(name, int(batch), method)] = float(value)
    return table


# ----------------------------------------------------------------------------- reporting


def _compare(theirs: Callable, reference: Callable, x: torch.Tensor) -> tuple[float, float, float]:
    """Σ R of theirs and of ours at ``x``, and max |R − R_ours| / max |R_ours|."""
    relevance = _relevance(theirs(x)).detach()
    ours_relevance = _relevance(reference(x)).detach()
    diff = (relevance - ours_relevance).abs().max() / ours_relevance.abs().max()
    return float(relevance.sum()), float(ours_relevance.sum()), float(diff)


def sanity(table: dict[str, Callable], x: torch.Tensor) -> None:
    """Print how close each third-party method comes to ours for the same rules at ``x``."""
    others = [m for m in table if m in OURS]
    if others:
        print(f"  same rules, batch {x.shape[0]}: Σ R theirs (ours), max|R − R_ours|/max|R_ours|")
    for method in others:
        total, ours_total, diff = _compare(table[method], table[OURS[method]], x)
        print(f"    {method:<26} Σ R {total:>10.4g} ({ours_total:.4g})   {diff:.2g}")
        if method == "captum z⁺":
            diff = _compare(table[method], table[OURS[method]], x.clamp(min=0))[2]
            print(
                f"    {'':<26} (captum's z⁺ is x·w⁺ also at signed pixels, ours x⁺w⁺ + x⁻w⁻;"
                f" at max(x, 0): {diff:.2g})"
            )


def captum_on_residuals(name: str, model: nn.Module, x: torch.Tensor) -> None:
    """Captum is not timed on residual networks: run it once and say what it does."""
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    why = (
        f"  captum: skipped on {name}: Captum's LRP has no rule for the residual addition"
        " `out += identity` (it needs Captum's Addition_Module in the model's forward)"
    )
    try:
        relevance = captum_methods(model, target)["captum ε"](x).detach()
    except Exception as error:
        print(f"{why}; it raises {type(error).__name__}: {error}")
        return
    ours_total = float(explain(model, x, rule=Epsilon()).relevance.sum())
    logit = float(logits.gather(1, target[:, None]).sum())
    print(
        f"{why}.\n  It raises no error but is silently wrong: captum ε's relevance sums to "
        f"{float(relevance.sum()):.3g}, ours to {ours_total:.3g} (the logit: {logit:.3g})."
    )


def report(
    table: dict[str, Callable],
    times: dict[str, list[float]],
    memory: dict[str, float],
    targets: dict[str, float] = TARGETS,
) -> None:
    """Print our table (with the targets) and, below it, the third-party methods'."""
    median = {m: statistics.median(t) for m, t in times.items()}
    base_t, base_m = median["gradient"], memory["gradient"]
    extra = {m: (memory[m] - base_m) / base_m if base_m > 0 else float("nan") for m in table}
    print(
        f"    {'method':<18} {'median':>9} {'× grad':>7} {'target':>10}"
        f" {'peak MiB':>9} {'extra/grad':>11}"
    )
    for method in table:
        if method == "gradient" or method in OURS:
            continue
        t = median[method]
        ratio = t / base_t
        target = targets.get(method)
        mark = "" if target is None else ("ok" if ratio <= target else "MISS")
        memory_mark = "ok" if extra[method] <= MEMORY_TARGET else "MISS"
        print(
            f"    {method:<18} {t * 1e3:>7.0f}ms {ratio:>6.2f}× "
            f"{(f'≤{target}' if target else ''):>5} {mark:<4}"
            f"{memory[method]:>9.0f} {extra[method]:>9.2f}× {memory_mark}"
        )
    others = [m for m in table if m in OURS]
    if others:
        print(
            f"    {'third party':<26} {'median':>9} {'× grad':>7} {'× ours':>7}"
            f" {'peak MiB':>9} {'extra/grad':>11}"
        )
    for method in others:
        t = median[method]
        print(
            f"    {method:<26} {t * 1e3:>7.0f}ms {t / base_t:>6.2f}× "
            f"{t / median[OURS[method]]:>6.2f}× {memory[method]:>9.0f} {extra[method]:>9.2f}×"
        )


def _header(device: str, threads: int, libraries: list[str]) -> None:
    print(f"torch {torch.__version__}, device {device}, threads {threads}")
    print("\n".join(libraries))


def run_each_model(args: argparse.Namespace) -> None:
    """Every model in a process of its own: on a CPU, how fast a method runs depends on the
    state that the allocator is left in (glibc returns freed memory to the system, and fresh
    memory is paid in page faults), so one model's runs would bias the next model's."""
    _header(args.device, args.threads, _libraries()[1])
    print("each model timed in a fresh process", flush=True)
    for name in args.models or list(DEFAULT_RUNS):
        command = [sys.executable, __file__, "--one-model", "--models", name]
        command += ["--device", args.device, "--repeats", str(args.repeats)]
        command += ["--size", str(args.size), "--threads", str(args.threads)]
        command += ["--batches", *map(str, args.batches)] if args.batches else []
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        print(done.stdout, end="", flush=True)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = args.device
    libraries, lines = _libraries()
    if not args.one_model:
        _header(device, torch.get_num_threads(), lines)
        print("measuring peak memory …", flush=True)
    memory_table = _memory_table(args)
    for name, batches in runs(args):
        for batch in batches:
            model, x, source = _setup(name, batch, args)
            table = methods(model, x, libraries)
            if batch == batches[0]:
                print(f"\n{name} ({source}), {args.size}×{args.size}")
                sanity(table, x)
                if "captum" in libraries and has_residuals(model):
                    captum_on_residuals(name, model, x)
            for fn in table.values():  # warm up (lazy initialisation, caches)
                fn(x)
            times: dict[str, list[float]] = {m: [] for m in table}
            for _ in range(args.repeats):
                for method, fn in table.items():
                    _sync(device)
                    start = time.perf_counter()
                    fn(x)
                    _sync(device)
                    times[method].append(time.perf_counter() - start)
            if device == "cuda":
                memory = {
                    m: peak_memory(lambda fn=fn, x=x: fn(x), device) for m, fn in table.items()
                }
            else:
                memory = {m: memory_table[(name, batch, m)] for m in table}
            base_t, base_m = statistics.median(times["gradient"]), memory["gradient"]
            print(f"  batch {batch}: gradient {base_t * 1e3:.0f} ms, peak +{base_m:.0f} MiB")
            report(table, times, memory, TARGETS if name in ("vgg16", "resnet18") else CNN_TARGETS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", help="default: " + " ".join(DEFAULT_RUNS))
    parser.add_argument("--batches", nargs="+", type=int, help="default: 1 and 8, or 8")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here.")
    if args.memory_child:
        measure_memory(args)
    elif args.device == "cpu" and not args.one_model and len(runs(args)) > 1:
        run_each_model(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
