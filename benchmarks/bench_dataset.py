"""What do the store, the data loading and torchrun cost? explain_dataset vs. a plain loop.

Measured side by side in one run, with the shipped MNIST CNN (float32) on N images of 28×28
held in memory (the Clever Hans data repeated), for each batch size B of ``--batches``:

- ``loop``: ``lt.explain(model, x[i:i+B])`` over the in-memory batches, relevance to numpy;
- ``store``: ``lt.explain_dataset(model, TensorDataset(x, y), store=…)`` into a fresh Zarr
  store (store created, DataLoader, explain, relevance and the per-sample table written in a
  background thread, chunks marked done, store reopened);

both in one process with ``--threads`` torch threads, interleaved in alternating order,
``--repeats`` times. It prints images per second (median) and the store's overhead (the
median of the ratios of the runs side by side) in wall-clock time (target ≤ 10 %) and
in CPU time (all threads of the process: what the store costs even where its background
writes overlap the next batch; less sensitive to other load on the machine). Then:

- ``torchrun``: ``python -m torch.distributed.run --nproc_per_node=2`` of this script's
  worker, every process with 1 torch thread (OMP_NUM_THREADS=1), timed from the first
  barrier to the last (process start-up and import excluded), against one process with 1
  torch thread: scaling efficiency = throughput of 2 processes / (2 × throughput of 1). The
  same for the plain loop (each process explains every second batch) shows what the machine
  itself allows: on a machine with 2 cores and other work running, it is below 100 %.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

import lrp_tutor as lt


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    hans = lt.zoo.clever_hans()
    repeat = -(-n // len(hans.data))
    return hans.images.repeat(repeat, 1, 1, 1)[:n].contiguous(), hans.labels.repeat(repeat)[:n]


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (every thread of this process) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain_loop(model, x: torch.Tensor, batch: int, rank: int = 0, world: int = 1) -> None:
    for i in range(rank * batch, len(x), world * batch):
        lt.explain(model, x[i : i + batch]).relevance.detach().cpu().numpy()


def into_store(model, data, batch: int, folder: str) -> None:
    path = tempfile.mkdtemp(dir=folder)
    lt.explain_dataset(model, data, store=path, batch_size=batch, progress=False)


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: time the loop or explain_dataset between two barriers."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    settle_malloc()
    dist.init_process_group("gloo")
    x, y = images(args.n)
    model = lt.zoo.mnist_cnn()
    warm = TensorDataset(x[: 2 * args.batch], y[: 2 * args.batch])
    plain_loop(model, warm.tensors[0], args.batch)  # warm-up, as in the single process
    lt.explain_dataset(
        model, warm, store=args.store + "-warm", batch_size=args.batch, progress=False
    )
    dist.barrier()
    start = time.perf_counter()
    if args.mode == "loop":
        plain_loop(model, x, args.batch, dist.get_rank(), dist.get_world_size())
    else:
        lt.explain_dataset(
            model, TensorDataset(x, y), store=args.store, batch_size=args.batch, progress=False
        )
    dist.barrier()
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        print(f"WORKER_SECONDS {seconds:.6f}", flush=True)
    dist.destroy_process_group()


def torchrun_seconds(args: argparse.Namespace, mode: str, folder: str) -> float:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        __file__, "--worker",
    ]  # fmt: skip
    # the worker's settings travel in the environment (torchrun would take --n for its own)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "BENCH_SETTINGS": f"{args.n} {args.batch} {mode} {tempfile.mkdtemp(dir=folder)}",
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


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def settle_malloc() -> None:
    """Free one 25 MB block, so that glibc's malloc raises its mmap threshold now rather than
    at some moment during the measurements: before, explain()'s tensors are mapped and
    unmapped again and again (page faults, a third of its CPU time); after, it runs about
    1.5 times as fast. Every measurement of this script starts in the settled state."""
    block = np.ones(3 << 20)  # 25 MB: below glibc's largest threshold (32 MiB)
    del block


def malloc() -> str:
    """glibc's malloc settings from the environment (MALLOC_MMAP_THRESHOLD_, …), if any."""
    found = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")]
    return "malloc " + (" ".join(found) if found else "settled by freeing a 25 MB block")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="images")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torchrun-batch", type=int, default=64, help="0: skip torchrun")
    parser.add_argument("--spray", type=int, default=10_000, help="heatmaps for SpRAy (0: skip)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        n, batch, args.mode, args.store = os.environ["BENCH_SETTINGS"].split(" ", 3)
        args.n, args.batch = int(n), int(batch)
        worker(args)
        return

    settle_malloc()
    x, y = images(args.n)
    data = TensorDataset(x, y)
    model = lt.zoo.mnist_cnn()
    print(f"mnist_cnn, {args.n} images of 28×28 in memory, torch {torch.__version__}")
    print(f"  {os.cpu_count()} CPUs, {load()} at the start, {malloc()}")
    print(f"  one process, {args.threads} torch thread(s), median of {args.repeats}:")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            warm = TensorDataset(x[: 2 * batch], y[: 2 * batch])
            plain_loop(model, warm.tensors[0], batch)  # warm-up (and zarr imported)
            into_store(model, warm, batch, folder)
            loops, stores = [], []
            for i in range(args.repeats):  # interleaved, in alternating order
                runs = [
                    (loops, lambda b=batch: plain_loop(model, x, b)),
                    (stores, lambda b=batch: into_store(model, data, b, folder)),
                ]
                for times, run in runs[:: 1 if i % 2 == 0 else -1]:
                    times.append(timed(run))
            loop = [statistics.median(t) for t in zip(*loops, strict=True)]
            store = [statistics.median(t) for t in zip(*stores, strict=True)]
            # the overhead: median of the ratios of runs side by side (drifting load cancels)
            pairs = list(zip(stores, loops, strict=True))
            wall, cpu = (
                100 * (statistics.median(s[j] / o[j] for s, o in pairs) - 1) for j in (0, 1)
            )
            print(
                f"    batch {batch:4d}: loop of explain() {args.n / loop[0]:6.0f} img/s, "
                f"explain_dataset {args.n / store[0]:6.0f} img/s: store overhead "
                f"{wall:+.1f} % wall clock (target ≤ 10 %), {cpu:+.1f} % CPU time"
            )
        if args.torchrun_batch:
            args.batch = args.torchrun_batch
            torch.set_num_threads(1)
            print(
                f"  torchrun, batch {args.batch}, 1 torch thread in every process "
                f"(OMP_NUM_THREADS=1), median of {args.repeats}:"
            )
            for mode in ("loop", "store"):
                alone = {
                    "loop": lambda: plain_loop(model, x, args.batch),
                    "store": lambda: into_store(model, data, args.batch, folder),
                }[mode]
                ones: list[float] = []
                twos: list[float] = []
                for i in range(args.repeats):  # side by side, in alternating order
                    runs = [
                        (ones, lambda a=alone: timed(a)[0]),
                        (twos, lambda m=mode: torchrun_seconds(args, m, folder)),
                    ]
                    for times, run in runs[:: 1 if i % 2 == 0 else -1]:
                        times.append(run())
                one, two = statistics.median(ones), statistics.median(twos)
                pairs = zip(ones, twos, strict=True)
                efficiency = 100 * statistics.median(o / t / 2 for o, t in pairs)
                name = "loop of explain()" if mode == "loop" else "explain_dataset  "
                print(
                    f"    {name}: 1 process {args.n / one:6.0f} img/s, 2 processes "
                    f"{args.n / two:6.0f} img/s: speedup {one / two:.2f}×, scaling efficiency "
                    f"{efficiency:.0f} %"
                )
    if args.spray:
        seconds, summary = spray_seconds(args.spray)
        print(f"  spray on {args.spray} heatmaps of 28×28: {seconds:.1f} s (target < 60 s)")
        print(f"    {summary}")
    print(f"  {load()} at the end ({Path(__file__).name})")


if __name__ == "__main__":
    main()
