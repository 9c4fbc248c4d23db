"""Smoke test of benchmarks/bench_explain.py at a tiny size: it runs and prints every row.

No timing is asserted (the numbers depend on the machine); the test checks the table's shape:
a ratio for ε, epsilon_plus_flat and αβ for every model and batch, and for Zennit and Captum
either their rows or the line saying why they do not import.
"""

from __future__ import annotations

import importlib.util
import re
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_explain.py"
MODELS = ("resnet18", "vgg16")
ROW = re.compile(r"^ {4}(\S+(?: \S+)?)\s+\d+ms\s+(-?[\d.]+)×", re.MULTILINE)


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_explain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ratios(text: str) -> dict[tuple[str, int], dict[str, float]]:
    """``{(model, batch): {method: median over the gradient's}}`` from the printed tables."""
    tables: dict[tuple[str, int], dict[str, float]] = {}
    for section in re.split(r"^(?=\S+ \(lrp_tutor\.zoo\))", text, flags=re.MULTILINE)[1:]:
        model = section.split()[0]
        for part in re.split(r"^(?=  batch \d+:)", section, flags=re.MULTILINE)[1:]:
            batch = int(re.match(r"  batch (\d+):", part).group(1))
            tables[(model, batch)] = {m: float(r) for m, r in ROW.findall(part)}
    return tables


@pytest.fixture(scope="module")
def output() -> str:
    bench = _load_script()
    threads = torch.get_num_threads()
    args = ["--size", "32", "--repeats", "1", "--batches", "1", "--threads", str(threads)]
    buffer = StringIO()
    try:
        with redirect_stdout(buffer):
            bench.main([*args, "--models", *MODELS])
    finally:
        torch.set_num_threads(threads)  # main() sets the thread count of this process
    return buffer.getvalue()


def test_every_model_and_batch_has_our_ratios(output: str) -> None:
    tables = _ratios(output)
    assert set(tables) == {(model, 1) for model in MODELS}, output
    for key, ratios in tables.items():
        for method in ("ε", "epsilon_plus_flat", "αβ"):
            assert ratios.get(method, 0) > 0, f"no ratio for {method} in {key}:\n{output}"


def test_third_party_rows_or_why_not(output: str) -> None:
    tables = _ratios(output)
    for library in ("zennit", "captum"):
        if f"{library} not importable: " in output:
            assert not any(m.startswith(library) for t in tables.values() for m in t), output
            continue
        assert re.search(rf"^{library} \S+: timed$", output, re.MULTILINE), output
        for (model, _), ratios in tables.items():
            if library == "captum" and model == "resnet18":
                assert "captum: skipped on resnet18" in output, output
                assert not any(m.startswith("captum") for m in ratios), output
                continue
            names = ("ε", "epsilon_plus_flat", "αβ") if library == "zennit" else ("ε", "z⁺")
            for name in names:
                assert ratios.get(f"{library} {name}", 0) > 0, f"{library} {name}:\n{output}"


def test_attention_benchmark_prints_every_row() -> None:
    """benchmarks/bench_attention.py at a tiny size: a ratio per method and model."""
    spec = importlib.util.spec_from_file_location(
        "bench_attention", SCRIPT.parent / "bench_attention.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = StringIO()
    with redirect_stdout(out):
        module.main(["--small", "--repeats", "1", "--threads", "1"])
    text = out.getvalue()
    for model in ("vit", "llama"):
        section = text.split(f"\n{model} (input")[1].split("\n\n")[0]
        rows = re.findall(r"^ {4}(\w+)\s+\d+ms\s+([\d.]+)×", section, re.MULTILINE)
        assert [name for name, _ in rows] == ["gradient", "attn_lrp", "cp_lrp"]
        assert all(float(ratio) > 0 for _, ratio in rows)
