"""How much more than a gradient does LRP cost? Time and peak memory, side by side.

For VGG16 and ResNet18 (random weights, 224×224 inputs, batches 1 and 8) this script
measures, interleaved in one run, the median time of

- a plain gradient: one forward pass and ``torch.autograd.grad`` with respect to the input,
- ``lrp_tutor.explain`` with ε, epsilon_plus_flat, epsilon_alpha2_beta1 (αβ), z⁺ and γ,

and prints each median over the gradient's, together with the peak memory above the
memory in use before the call (CPU: peak resident set size, read from /proc with large
allocations returned to the system at once; CUDA: ``torch.cuda.max_memory_allocated``).

Targets: ε ≤ 1.2×, epsilon_plus_flat ≤ 1.5×, αβ ≤ 2.0× the gradient's time; extra peak memory
(LRP's peak minus the gradient's) ≤ 1.5× the gradient's peak.

Usage::

    python benchmarks/bench_explain.py                      # CPU, 2 threads
    python benchmarks/bench_explain.py --repeats 2 --models resnet18 --batches 1
    python benchmarks/bench_explain.py --device cuda
"""

from __future__ import annotations

import argparse
import gc
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
MEMORY_TARGET = 1.5


# ----------------------------------------------------------------------------- models


def build(name: str) -> tuple[nn.Module, str]:
    """VGG16 or ResNet18 with torchvision's layout, from lrp_tutor.zoo (random weights)."""
    return getattr(zoo, name)(), "lrp_tutor.zoo"


# ----------------------------------------------------------------------------- measuring


def _gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = model(x)
    target = out.detach().argmax(1, keepdim=True)
    seed = torch.zeros_like(out).scatter_(1, target, out.detach().gather(1, target))
    return torch.autograd.grad(out, x, seed)[0]


def methods(model: nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    return {
        "gradient": lambda x: _gradient(model, x),
        "ε": lambda x: explain(model, x, rule=Epsilon()),
        "epsilon_plus_flat": lambda x: explain(model, x, composite=composites.epsilon_plus_flat()),
        "αβ": lambda x: explain(model, x, composite=composites.epsilon_alpha2_beta1()),
        "z⁺": lambda x: explain(model, x, rule=ZPlus()),
        "γ": lambda x: explain(model, x, rule=Gamma(0.25)),
    }


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


def measure_memory(args: argparse.Namespace) -> None:
    """(Child process) print the peak memory of every method, one line each."""
    torch.set_num_threads(args.threads)
    for name in args.models:
        for batch in args.batches:
            model, x, _ = _setup(name, batch, args)
            for method, fn in methods(model).items():
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
    command += ["--models", *args.models, "--batches", *map(str, args.batches)]
    command += ["--size", str(args.size), "--device", args.device]
    lines = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    table = {}
    for line in lines.splitlines():
        name, batch, method, value = line.split()
        table[(name, int(batch), method)] = float(value)
    return table


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = args.device
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    for other in ("zennit", "captum"):
        try:
            __import__(other)
            print(f"{other} is installed, but this benchmark does not time it yet.")
        except ImportError:
            print(f"{other} not installed: skipped.")
    print("measuring peak memory …", flush=True)
    memory_table = _memory_table(args)
    for name in args.models:
        for batch in args.batches:
            model, x, source = _setup(name, batch, args)
            if batch == args.batches[0]:
                print(f"\n{name} ({source}), {args.size}×{args.size}")
            table = methods(model)
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
            print(
                f"    {'method':<18} {'median':>9} {'× grad':>7} {'target':>10}"
                f" {'peak MiB':>9} {'extra/grad':>11}"
            )
            for method in table:
                if method == "gradient":
                    continue
                t = statistics.median(times[method])
                ratio = t / base_t
                target = TARGETS.get(method)
                mark = "" if target is None else ("ok" if ratio <= target else "MISS")
                extra = (memory[method] - base_m) / base_m if base_m > 0 else float("nan")
                memory_mark = "ok" if extra <= MEMORY_TARGET else "MISS"
                print(
                    f"    {method:<18} {t * 1e3:>7.0f}ms {ratio:>6.2f}× "
                    f"{(f'≤{target}' if target else ''):>5} {mark:<4}"
                    f"{memory[method]:>9.0f} {extra:>9.2f}× {memory_mark}"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet18"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here.")
    if args.memory_child:
        measure_memory(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
