"""How long a full didactic walk takes, next to a plain torch gradient of the same network.

A full walk of one sample through a 784-300-100-10 ReLU MLP: ``Walkthrough(...)`` (weights
copied to float64), ``forward``, ``backward`` and materialising every layer's four stages,
including every message matrix R_{i←j} (784×300, 300×100, 100×10). Target: < 50 ms.
The reference is one torch forward + backward (gradient of the target logit w.r.t. the input,
float32) of the same network, measured in the same run.

Usage: ``python benchmarks/bench_stepper.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lrp_tutor.stepper import Walkthrough

TARGET_MS = 50.0


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    ).eval()


def full_walk(model: nn.Sequential, x: np.ndarray) -> float:
    walk = Walkthrough(model).forward(x).backward()
    total = 0.0
    for step in walk.steps:
        total += step.messages.R_ij.sum() + step.aggregation.sum_in
        total += step.forward.z_j.sum() + step.stabilization.message_shift.sum()
    return total


def torch_gradient(model: nn.Sequential, x: torch.Tensor) -> float:
    x = x.clone().requires_grad_(True)
    out = model(x)
    out[0, int(out.argmax())].backward()
    return float(x.grad.sum())


def median_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function in ms; the functions take turns, so that both see
    the same load on a shared machine."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [1e3 * statistics.median(bucket) for bucket in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    model = mlp()
    rng = np.random.default_rng(0)
    x = rng.random(784)
    x_torch = torch.from_numpy(x).float()[None]
    walk_ms, grad_ms = median_ms(
        [lambda: full_walk(model, x), lambda: torch_gradient(model, x_torch)], args.repeats
    )
    verdict = "OK" if walk_ms < TARGET_MS else "TOO SLOW"
    print(
        f"stepper full walk, 784-300-100-10 MLP, 1 sample: {walk_ms:8.2f} ms (median of "
        f"{args.repeats}; target < {TARGET_MS:.0f} ms: {verdict})"
    )
    print(f"torch forward+backward gradient, same net:       {grad_ms:8.2f} ms")
    print(f"ratio stepper / torch gradient:                  {walk_ms / grad_ms:8.1f}x")


if __name__ == "__main__":
    main()
