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

from lrp_tutor import composites
from lrp_tutor.fast import explain
from lrp_tutor.rules import Epsilon, Gamma, ZPlus

TARGETS = {"ε": 1.2, "epsilon_plus_flat": 1.5, "αβ": 2.0}
MEMORY_TARGET = 1.5


# ----------------------------------------------------------------------------- models
# torchvision's VGG16 and ResNet18 layouts (parameter names and block structure), used when
# lrp_tutor.zoo does not provide builders.


def _vgg16() -> nn.Module:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v

    class VGG(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 1000),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))

    return VGG()


class _BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def _resnet18() -> nn.Module:
    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make(64, 1)
            self.layer2 = self._make(128, 2)
            self.layer3 = self._make(256, 2)
            self.layer4 = self._make(512, 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, 1000)

        def _make(self, planes: int, stride: int) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )
            blocks = [_BasicBlock(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes
            blocks.append(_BasicBlock(planes, planes))
            return nn.Sequential(*blocks)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def build(name: str) -> tuple[nn.Module, str]:
    """The zoo's builder if there is one, else the torchvision layout above."""
    try:
        from lrp_tutor import zoo

        builder = getattr(zoo, name)
        return builder(), "lrp_tutor.zoo"
    except (ImportError, AttributeError):
        return {"vgg16": _vgg16, "resnet18": _resnet18}[name](), "benchmark's own builder"


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
