"""What do the store, the data loading and torchrun cost? explain_dataset vs. a plain loop.

Measured side by side in one run, with the shipped MNIST CNN (float32) on N images of 28×28
held in memory (the Clever Hans data repeated), for each batch size B of ``--batches``:

- ``loop``: ``lt.explain(model, x[i:i+B])`` over the in-memory batches, relevance to numpy;
- ``store``: ``lt.explain_dataset(model, TensorDataset(x, y), store=…)`` into a fresh Zarr
  store (DataLoader, explain, every array written, chunks marked done);

both in one process with ``--threads`` torch threads (median of ``--repeats``, interleaved),
and prints images per second and the store's overhead (target ≤ 10 %). The store costs a
fixed few milliseconds per chunk (seven small Zarr writes, in a background thread), so its
share shrinks as the batch or the model grows: this CNN explains 128 images in ~30 ms. Then:

- ``torchrun 2×1``: ``python -m torch.distributed.run --nproc_per_node=2`` of this script's
  worker, each process with 1 thread, timed from the first barrier to the last (process
  start-up and import excluded), against the same in one process with 1 thread: the scaling
  efficiency is speedup / 2;
- ``spray``: SpRAy on 10,000 heatmaps of 28×28 (target: under a minute).

Usage::

    python benchmarks/bench_dataset.py
    python benchmarks/bench_dataset.py --n 2048 --repeats 1 --batches 128 --spray 2000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

import lrp_tutor as lt


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    hans = lt.zoo.clever_hans()
    repeat = -(-n // len(hans.data))
    return hans.images.repeat(repeat, 1, 1, 1)[:n].contiguous(), hans.labels.repeat(repeat)[:n]


def plain_loop(model, x: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        lt.explain(model, x[i : i + batch]).relevance.detach().cpu().numpy()
    return time.perf_counter() - start


def into_store(model, data, batch: int, folder: str) -> float:
    path = tempfile.mkdtemp(dir=folder)
    start = time.perf_counter()
    lt.explain_dataset(model, data, store=path, batch_size=batch, progress=False)
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: time explain_dataset between two barriers; rank 0 prints."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    x, y = images(args.n)
    model = lt.zoo.mnist_cnn()
    lt.explain(model, x[:2])  # warm-up, as in the single process
    dist.barrier()
    start = time.perf_counter()
    lt.explain_dataset(
        model, TensorDataset(x, y), store=args.store, batch_size=args.batch, progress=False
    )
    dist.barrier()
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        print(f"WORKER_SECONDS {seconds:.6f}", flush=True)
    dist.destroy_process_group()


def torchrun_seconds(args: argparse.Namespace, folder: str) -> float:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        __file__, "--worker",
    ]  # fmt: skip
    # the worker's settings travel in the environment (torchrun would take --n for its own)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "BENCH_SETTINGS": f"{args.n} {args.batch} {tempfile.mkdtemp(dir=folder)}",
    }
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(s for s in run.stdout.splitlines() if s.startswith("WORKER_SECONDS"))
    return float(line.split()[1])


def spray_seconds(n: int) -> tuple[float, str]:
    rng = np.random.default_rng(0)
    R = rng.normal(0, 0.05, (n, 28, 28))
    group = rng.integers(0, 4, n)
    for g in range(4):
        R[group == g, 6 * g : 6 * g + 6, 6 * g : 6 * g + 6] += 1.0
    start = time.perf_counter()
    result = lt.analysis.spray(R)
    return time.perf_counter() - start, repr(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="images")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spray", type=int, default=10_000, help="heatmaps for SpRAy (0: skip)")
    parser.add_argument("--no-torchrun", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.store = None
    if args.worker:
        n, batch, store = os.environ["BENCH_SETTINGS"].split(" ", 2)
        args.n, args.batch, args.store = int(n), int(batch), store
        worker(args)
        return

    x, y = images(args.n)
    data = TensorDataset(x, y)
    model = lt.zoo.mnist_cnn()
    print(f"mnist_cnn, {args.n} images of 28×28 in memory, torch {torch.__version__}")
    torch.set_num_threads(args.threads)
    print(f"  one process, {args.threads} torch thread(s):")
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            plain_loop(model, x[: batch * 2], batch)  # warm-up
            loops, stores = [], []
            for _ in range(args.repeats):
                loops.append(plain_loop(model, x, batch))
                stores.append(into_store(model, data, batch, folder))
            loop, store = statistics.median(loops), statistics.median(stores)
            print(
                f"    batch {batch:4d}: loop of explain() {args.n / loop:6.0f} img/s, "
                f"explain_dataset {args.n / store:6.0f} img/s, store overhead "
                f"{100 * (store / loop - 1):+.1f} % (target ≤ 10 %)"
            )
        if not args.no_torchrun:
            args.batch = args.batches[-1]
            torch.set_num_threads(1)
            one = statistics.median(
                into_store(model, data, args.batch, folder) for _ in range(args.repeats)
            )
            two = statistics.median(torchrun_seconds(args, folder) for _ in range(args.repeats))
            print(
                f"  torchrun, batch {args.batch}: 1 process × 1 thread {args.n / one:6.0f} img/s, "
                f"2 processes × 1 thread {args.n / two:6.0f} img/s: speedup {one / two:.2f}×, "
                f"scaling efficiency {100 * one / two / 2:.0f} %"
            )
    if args.spray:
        seconds, summary = spray_seconds(args.spray)
        print(f"  spray on {args.spray} heatmaps of 28×28: {seconds:.1f} s (target < 60 s)")
        print(f"    {summary}")
    print(f"(cpu count {os.cpu_count()}; {Path(__file__).name})")


if __name__ == "__main__":
    main()
