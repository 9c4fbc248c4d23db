"""What does LRP for attention cost, next to a gradient? Time and peak memory, in one run.

Two transformers with random weights, float32:

- **ViT-B/16** (``lrp_tutor.zoo.vit_b_16``, torchvision's architecture), 224×224, batch 8;
- a **Llama-style decoder** (Hugging Face's ``LlamaForCausalLM``: 8 layers, width 512,
  8 heads, SiLU-gated MLP of width 1376, RMSNorm, rotary embeddings), 256 tokens, batch 1,
  explained from ``inputs_embeds`` at the last token.

For each, interleaved in one loop, the median time of a plain input gradient (forward and
``torch.autograd.grad`` of the target logit), ``lt.explain`` with ``attn_lrp()`` and with
``cp_lrp()``, each printed over the gradient's; then the peak memory of each above the memory
in use before it, each measured in a fresh process after one warm-up call (CPU: peak
resident set size from /proc, with large freed blocks returned to the system at once;
CUDA: the allocator's peak),
LRP's extra peak (its peak minus the gradient's) over the gradient's.

Targets (issue 17): AttnLRP ≤ 1.5×, CP-LRP ≤ 1.3× the gradient's time, extra peak memory
≤ 1.5× the gradient's.

With ``--lxt`` (run by the Python of an environment that has LXT 2.1, e.g. ``.venv-lxt``,
whose transformers is < 5), LXT's efficient implementation is timed beside ours: each LXT
rule in a child process (LXT patches classes for good), which times the gradient first, then
patches and times LXT's gradient × input, and prints the ratio.

Usage::

    python benchmarks/bench_attention.py                     # CPU, 2 threads
    python benchmarks/bench_attention.py --models llama --repeats 3
    .venv-lxt/bin/python benchmarks/bench_attention.py --lxt
    python benchmarks/bench_attention.py --device cuda
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))  # transformers imports torchvision

import lrp_tutor as lt  # noqa: E402
from lrp_tutor import zoo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import peak_memory  # noqa: E402

SIZES = {
    "vit": dict(batch=8),
    "llama": dict(layers=8, width=512, heads=8, mlp=1376, tokens=256),
}


def build(name: str, small: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """The model (random weights, eval) and an input; ``small``: a tiny size for the tests."""
    torch.manual_seed(0)
    if name == "vit":
        if small:
            model = zoo.VisionTransformer(32, 16, 2, 2, 32, 64, num_classes=10)
            x = torch.randn(2, 3, 32, 32)
        else:
            model = zoo.vit_b_16()
            x = torch.randn(SIZES["vit"]["batch"], 3, 224, 224)
        nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero
        return model.eval(), x
    from transformers import LlamaConfig, LlamaForCausalLM

    s = dict(layers=2, width=32, heads=4, mlp=64, tokens=8) if small else SIZES["llama"]
    config = LlamaConfig(
        vocab_size=1000, hidden_size=s["width"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
        intermediate_size=s["mlp"], attn_implementation="eager",
    )  # fmt: skip
    model = zoo.FromEmbeddings(LlamaForCausalLM(config)).eval()
    return model, torch.randn(1, s["tokens"], s["width"])


def gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = model(x)
    target = out.detach().argmax(1, keepdim=True)
    return torch.autograd.grad(out.gather(1, target).sum(), x)[0]


def methods(model: nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    return {
        "gradient": lambda x: gradient(model, x),
        "attn_lrp": lambda x: lt.explain(model, x, composite=lt.composites.attn_lrp()),
        "cp_lrp": lambda x: lt.explain(model, x, composite=lt.composites.cp_lrp()),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timings(table: dict, x: torch.Tensor, repeats: int, device: str) -> dict[str, float]:
    """Median seconds per method, the methods interleaved (after one warm-up call each)."""
    times: dict[str, list[float]] = {name: [] for name in table}
    for fn in table.values():
        fn(x)
    for _ in range(repeats):
        for name, fn in table.items():
            _sync(device)
            start = time.perf_counter()
            fn(x)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def memory_in_child(name: str, method: str, args: argparse.Namespace) -> float:
    """Peak memory (MiB) of one call above what was in use before it, in a fresh process
    (after one warm-up call there), so that no other method's memory is counted."""
    command = [sys.executable, __file__, "--memory-child", name, method]
    command += ["--device", args.device, "--threads", str(args.threads)]
    command += ["--small"] if args.small else []
    # large freed blocks go back to the system at once, so that the resident set size follows
    # the memory in use (as in bench_explain.py); without it, glibc keeps the warm-up's heap
    # and the second call's peak shows only what did not fit in it
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _memory_child(name: str, method: str, args: argparse.Namespace) -> float:
    model, x = build(name, args.small)
    model, x = model.to(args.device), x.to(args.device)
    fn = methods(model)[method]
    fn(x)
    return peak_memory(lambda: fn(x), args.device)


def lxt_child(name: str, rule: str, repeats: int, small: bool) -> dict[str, float]:
    """Gradient, then LXT (patched for good): medians in seconds (run in a child process)."""
    torch.set_num_threads(torch.get_num_threads())
    model, x = build(name, small)
    plain = timings({"gradient": lambda x: gradient(model, x)}, x, repeats, "cpu")
    from lxt.efficient import monkey_patch

    if name == "vit":
        import lxt.efficient.models.vit_torch as maps
        from torchvision.models import vision_transformer

        monkey_patch(vision_transformer, maps.cp_LRP)
    else:
        import lxt.efficient.models.llama as maps
        from transformers.models.llama import modeling_llama

        monkey_patch(modeling_llama, maps.attnLRP if rule == "attn_lrp" else maps.cp_LRP)
    model, x = build(name, small)  # built again: torchvision's classes are patched now

    def lxt(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        out = model(x)
        target = out.detach().argmax(1, keepdim=True)
        out.gather(1, target).sum().backward()
        return x * x.grad

    theirs = timings({"lxt": lxt}, x, repeats, "cpu")
    return {"gradient": plain["gradient"], "lxt": theirs["lxt"]}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, {args.threads} threads, {args.repeats} repeats, float32")
    for name in args.models:
        model, x = build(name, args.small)
        model, x = model.to(args.device), x.to(args.device)
        table = methods(model)
        medians = timings(table, x, args.repeats, args.device)
        memory = {m: memory_in_child(name, m, args) for m in table}
        grad_t, grad_m = medians["gradient"], memory["gradient"]
        print(f"\n{name} (input {tuple(x.shape)})")
        print(f"    {'method':<10} {'median':>9} {'× grad':>8} {'peak MiB':>9} {'extra/grad':>11}")
        for m in table:
            extra = (
                "" if m == "gradient" or grad_m < 1 else f"{(memory[m] - grad_m) / grad_m:10.2f}×"
            )
            print(
                f"    {m:<10} {medians[m] * 1e3:8.0f}ms {medians[m] / grad_t:7.2f}× "
                f"{memory[m]:9.0f} {extra}"
            )
        if args.lxt:
            rules = ("cp_lrp",) if name == "vit" else ("attn_lrp", "cp_lrp")
            for rule in rules:
                command = [sys.executable, __file__, "--lxt-child", name, rule]
                command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
                command += ["--small"] if args.small else []
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"    LXT {rule}: failed: {done.stderr.strip().splitlines()[-1]}")
                    continue
                t = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"    {'LXT ' + rule:<10} {t['lxt'] * 1e3:8.0f}ms "
                    f"{t['lxt'] / t['gradient']:7.2f}×  (over its own gradient, same process)"
                )
        del model, x, table
        gc.collect()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--small", action="store_true", help="tiny models (the smoke test)")
    parser.add_argument("--lxt", action="store_true", help="time LXT 2.1 beside ours")
    parser.add_argument("--lxt-child", nargs=2, metavar=("MODEL", "RULE"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        torch.set_num_threads(args.threads)
        print(_memory_child(*args.memory_child, args))
        return
    if args.lxt_child:
        torch.set_num_threads(args.threads)
        print(json.dumps(lxt_child(*args.lxt_child, args.repeats, args.small)))
        return
    run(args)


if __name__ == "__main__":
    main()
