"""explain_dataset and the relevance store: same numbers as explain(), resume, refusals,
torchrun shards and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import lrp_tutor as lt
from lrp_tutor.dataset.store import ARRAYS
from tests.model_state import assert_unchanged, snapshot

pytest.importorskip("zarr")

N = 23  # not a multiple of the batch size: the last chunk is short


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 3),
        )
        .double()
        .eval()
    )


def data() -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, 8, 8, generator=generator, dtype=torch.float64)
    return TensorDataset(x, torch.arange(N) % 3)


class Flaky(Dataset):
    """A data set whose item ``fail_at`` raises (once ``armed``); counts what is read."""

    def __init__(self, base: Dataset, fail_at: int | None = None) -> None:
        self.base, self.fail_at, self.reads = base, fail_at, []

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        if i == self.fail_at:
            raise RuntimeError(f"item {i} is unreadable")
        self.reads.append(i)
        return self.base[i]


def arrays(store) -> dict[str, np.ndarray]:
    return {name: np.asarray(getattr(store, name)[:]) for name in ARRAYS}


@pytest.mark.parametrize("target", [None, 2, "label"])
def test_store_holds_what_explain_gives_batch_by_batch(tmp_path, target):
    model, dataset = small_cnn(), data()
    rule = lt.rules.Epsilon(0.1)
    before = snapshot(model)
    store = lt.explain_dataset(
        model,
        dataset,
        rule=rule,
        target=target,
        store=tmp_path / "s",
        batch_size=5,
        progress=False,
    )
    assert_unchanged(before, snapshot(model))
    x, y = dataset.tensors
    for start in range(0, N, 5):
        xb, yb = x[start : start + 5], y[start : start + 5]
        wanted = {None: None, 2: 2, "label": yb}[target]
        e = lt.explain(model, xb, target=wanted, rule=rule)
        rows = slice(start, start + 5)
        np.testing.assert_allclose(store.relevance[rows], e.relevance.numpy(), rtol=1e-12)
        np.testing.assert_array_equal(store.target[rows], e.target.numpy())
        np.testing.assert_allclose(store.output[rows], e.output.numpy(), rtol=1e-12)
        np.testing.assert_allclose(store.total[rows], e.total.numpy(), rtol=1e-12)
        np.testing.assert_allclose(store.absorbed[rows], e.ledger.absorbed, rtol=1e-12)
        np.testing.assert_array_equal(store.label[rows], yb.numpy())
    assert store.complete and len(store) == N and store.n_chunks == 5
    if target == 2:
        assert (np.asarray(store.target[:]) == 2).all()
    attrs = store.attrs
    assert attrs["model_checksum"] == lt.dataset.model_checksum(model)
    assert attrs["rule"] == repr(rule) and attrs["lrp_tutor_version"] == lt.__version__
    assert attrs["model_class"].endswith("Sequential")


def test_open_store_reads_lazily_and_a_dataloader_gives_its_batch_size(tmp_path):
    model, dataset = small_cnn(), data()
    loader = DataLoader(dataset, batch_size=7, shuffle=False)
    lt.explain_dataset(model, loader, store=tmp_path / "s", progress=False)
    store = lt.open_store(tmp_path / "s")
    assert store.batch_size == 7 and store.relevance.chunks[0] == 7
    assert store.relevance.shape == (N, 1, 8, 8)
    blocks = list(store.iter_chunks())
    assert [(a, b) for a, b, _ in blocks] == [(0, 7), (7, 14), (14, 21), (21, 23)]
    np.testing.assert_array_equal(np.concatenate([b for *_, b in blocks]), store.relevance[:])
    assert "4/4 chunks done" in repr(store)


def test_a_shuffled_loader_and_a_bad_target_are_refused(tmp_path):
    model, dataset = small_cnn(), data()
    with pytest.raises(lt.InputError, match="shuffle"):
        lt.explain_dataset(
            model, DataLoader(dataset, shuffle=True), store=tmp_path / "a", progress=False
        )
    with pytest.raises(lt.InputError, match="label"):
        lt.explain_dataset(model, dataset, target="labels", store=tmp_path / "b", progress=False)
    only_x = TensorDataset(dataset.tensors[0])
    with pytest.raises(lt.InputError, match="only x"):
        lt.explain_dataset(model, only_x, target="label", store=tmp_path / "c", progress=False)


def test_an_interrupted_run_is_resumed_to_the_same_content(tmp_path):
    model, dataset = small_cnn(), data()
    whole = lt.explain_dataset(
        model, dataset, store=tmp_path / "whole", batch_size=4, progress=False
    )
    flaky = Flaky(dataset, fail_at=13)  # chunk 3 (items 12…15) fails
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="item 13"):
        lt.explain_dataset(model, flaky, store=tmp_path / "part", batch_size=4, progress=False)
    assert_unchanged(before, snapshot(model))
    part = lt.open_store(tmp_path / "part")
    assert part.done.tolist() == [True, True, True, False, False, False]
    flaky.fail_at, flaky.reads = None, []
    resumed = lt.explain_dataset(
        model, flaky, store=tmp_path / "part", batch_size=4, progress=False
    )
    assert sorted(set(flaky.reads) - {0}) == list(range(12, N))  # item 0: the probe
    assert resumed.complete
    for name, value in arrays(whole).items():
        np.testing.assert_array_equal(arrays(resumed)[name], value, err_msg=name)


def test_a_killed_process_is_resumed(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
            import lrp_tutor as lt
            from tests.test_dataset import small_cnn, data, Flaky

            class Killer(Flaky):
                def __getitem__(self, i):
                    if i == 9:
                        os._exit(3)  # no cleanup at all, like SIGKILL
                    return super().__getitem__(i)

            lt.explain_dataset(small_cnn(), Killer(data()), store=sys.argv[1], batch_size=4,
                               progress=False)
            """
        )
    )
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "s")], timeout=120)
    assert run.returncode == 3
    done = lt.open_store(tmp_path / "s").done
    assert not done[2:].any()  # chunk 2 holds item 9; chunks 0, 1 were written or queued
    resumed = lt.explain_dataset(
        small_cnn(), data(), store=tmp_path / "s", batch_size=4, progress=False
    )
    whole = lt.explain_dataset(
        small_cnn(), data(), store=tmp_path / "w", batch_size=4, progress=False
    )
    for name, value in arrays(whole).items():
        np.testing.assert_array_equal(arrays(resumed)[name], value, err_msg=name)


def test_a_store_of_another_model_rule_or_length_is_refused(tmp_path):
    model, dataset = small_cnn(), data()
    path = tmp_path / "s"
    lt.explain_dataset(model, dataset, store=path, batch_size=4, progress=False)
    kept = arrays(lt.open_store(path))
    other = small_cnn()
    with torch.no_grad():
        other[0].bias[0] += 1e-9
    shorter = TensorDataset(*(t[:-1] for t in dataset.tensors))
    cases = [
        ("model_checksum", dict(model=other)),
        ("rule", dict(rule=lt.rules.ZPlus())),
        ("target", dict(target="label")),
        ("n:", dict(data=shorter)),
        ("batch_size", dict(batch_size=5)),
    ]
    for field, change in cases:
        args = dict(model=model, data=dataset, batch_size=4) | change
        with pytest.raises(lt.StoreError, match=field):
            lt.explain_dataset(
                args.pop("model"), args.pop("data"), store=path, progress=False, **args
            )
    for name, value in arrays(lt.open_store(path)).items():
        np.testing.assert_array_equal(value, kept[name], err_msg=name)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("not a store")
    with pytest.raises(lt.StoreError, match="not a relevance store"):
        lt.explain_dataset(model, dataset, store=tmp_path / "junk", progress=False)


HELPER = """
import torch
from tests.test_dataset import small_cnn, data

def model():
    return small_cnn()

def dataset():
    return data()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "dataset_helper.py").write_text(HELPER)
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join([str(tmp_path), root, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def test_cli_explains_a_dataset_named_by_import_path(tmp_path):
    command = [
        sys.executable,
        "-m",
        "lrp_tutor",
        "explain-dataset",
        "--model",
        "dataset_helper:model()",
        "--data",
        "dataset_helper:dataset()",
        "--store",
        str(tmp_path / "cli"),
        "--rule",
        "Epsilon(0.1)",
        "--target",
        "label",
        "--batch-size",
        "6",
        "--no-progress",
    ]
    run = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "4/4 chunks done" in run.stdout
    store = lt.open_store(tmp_path / "cli")
    direct = lt.explain_dataset(
        small_cnn(),
        data(),
        rule=lt.rules.Epsilon(0.1),
        target="label",
        store=tmp_path / "direct",
        batch_size=6,
        progress=False,
    )
    for name, value in arrays(direct).items():
        np.testing.assert_allclose(arrays(store)[name], value, rtol=1e-12, err_msg=name)


def test_torchrun_with_two_processes_writes_the_single_process_store(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "lrp_tutor",
        "explain-dataset",
        "--model",
        "dataset_helper:model()",
        "--data",
        "dataset_helper:dataset()",
        "--store",
        str(tmp_path / "two"),
        "--batch-size",
        "4",
        "--no-progress",
    ]
    run = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    two = lt.open_store(tmp_path / "two")
    assert two.complete
    one = lt.explain_dataset(
        small_cnn(), data(), store=tmp_path / "one", batch_size=4, progress=False
    )
    for name, value in arrays(one).items():
        np.testing.assert_allclose(arrays(two)[name], value, rtol=1e-12, atol=0, err_msg=name)
    assert two.attrs == {**one.attrs}
