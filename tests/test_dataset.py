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
    assert store.complete and len(store) == N and store.batch_size == 5
    # by default a chunk is the fewest batches that hold 4 MiB, but at most an 8th of the
    # data set (and at least one batch): here one batch
    assert store.chunk_size == 5 and store.n_chunks == 5
    if target == 2:
        assert (np.asarray(store.target[:]) == 2).all()
    attrs = store.attrs
    assert attrs["model_checksum"] == lt.dataset.model_checksum(model)
    assert attrs["rule"] == repr(rule) and attrs["lrp_tutor_version"] == lt.__version__
    assert attrs["model_class"].endswith("Sequential")


def test_open_store_reads_lazily_and_a_dataloader_gives_its_batch_size(tmp_path):
    model, dataset = small_cnn(), data()
    loader = DataLoader(dataset, batch_size=7, shuffle=False)
    lt.explain_dataset(model, loader, store=tmp_path / "s", chunk_size=14, progress=False)
    store = lt.open_store(tmp_path / "s")
    assert store.batch_size == 7 and store.chunk_size == 14
    assert store.relevance.chunks[0] == 14 and store.target.chunks == (14,)
    assert store.relevance.shape == (N, 1, 8, 8)
    blocks = list(store.iter_chunks())
    assert [(a, b) for a, b, _ in blocks] == [(0, 14), (14, 23)]
    np.testing.assert_array_equal(np.concatenate([b for *_, b in blocks]), store.relevance[:])
    labels = [b for *_, b in store.iter_chunks("label")]
    np.testing.assert_array_equal(np.concatenate(labels), dataset.tensors[1].numpy())
    assert "2/2 chunks done" in repr(store)
    x = dataset.tensors[0]
    for rows in (slice(14, 21), slice(21, 23)):  # the second chunk: a batch of 7, one of 2
        e = lt.explain(model, x[rows])
        np.testing.assert_allclose(store.relevance[rows], e.relevance.numpy(), rtol=1e-12)


def test_the_per_sample_arrays_read_like_zarr_arrays(tmp_path):
    model = small_cnn().float()
    dataset = TensorDataset(data().tensors[0].float())  # no labels
    store = lt.explain_dataset(model, dataset, store=tmp_path / "s", batch_size=4, progress=False)
    e = lt.explain(model, dataset.tensors[0])
    assert store.samples.attrs["columns"][:5] == [
        "target",
        "label",
        "total",
        "absorbed",
        "output[0]",
    ]
    assert (store.target.shape, store.target.dtype, store.target.ndim) == ((N,), np.int64, 1)
    assert (store.output.shape, store.output.dtype) == ((N, 3), np.float32)
    assert store.total.dtype == store.absorbed.dtype == np.float64 and len(store.label) == N
    np.testing.assert_array_equal(np.asarray(store.label), -np.ones(N, dtype=np.int64))
    np.testing.assert_array_equal(np.asarray(store.target), e.target.numpy())
    np.testing.assert_allclose(store.output[:], e.output.numpy(), rtol=1e-5)
    mask = e.target.numpy() == 1
    np.testing.assert_array_equal(store.target[mask], e.target.numpy()[mask])
    np.testing.assert_array_equal(store.output[[3, 1], 2], store.output[:][[3, 1], 2])
    assert store.output[5, 2] == store.output[:][5, 2] and store.target[-1] == e.target[-1]
    assert "Column 'output'" in repr(store.output)


def test_rows_not_yet_written_read_as_minus_one_or_nan(tmp_path):
    meta = {"n": 5, "batch_size": 2, "input_shape": [3], "classes": 2, "dtype": "float32"}
    store = lt.dataset.RelevanceStore.create(tmp_path / "s", meta)
    values = {
        "relevance": np.ones((2, 3), np.float32),
        "target": np.array([1, 0]),
        "output": np.array([[0.5, 1.5], [2.5, -1.0]], np.float32),
        "label": np.array([0, 1]),
        "total": np.array([1.0, 2.0]),
        "absorbed": np.array([0.25, 0.5]),
    }
    store.write_chunk(1, values)  # rows 2, 3
    assert store.done.tolist() == [False, True, False]
    np.testing.assert_array_equal(store.target[:], [-1, -1, 1, 0, -1])
    np.testing.assert_array_equal(store.label[:], [-1, -1, 0, 1, -1])
    np.testing.assert_array_equal(store.total[:], [np.nan, np.nan, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(store.output[2:4], values["output"])
    with pytest.raises(lt.StoreError, match="rows"):
        store.write_chunk(2, values)  # chunk 2 is the one row 4


def test_write_chunk_and_write_chunk_async_write_the_same(tmp_path):
    import asyncio

    meta = {"n": 4, "batch_size": 2, "input_shape": [2, 2], "classes": 3, "dtype": "float64"}
    rng = np.random.default_rng(0)
    values = {
        "relevance": rng.normal(size=(2, 2, 2)),
        "target": np.array([2, 0]),
        "output": rng.normal(size=(2, 3)),
        "label": np.array([2, 1]),
        "total": rng.normal(size=2),
        "absorbed": rng.normal(size=2),
    }
    one = lt.dataset.RelevanceStore.create(tmp_path / "sync", meta)
    two = lt.dataset.RelevanceStore.create(tmp_path / "async", meta)
    one.write_chunk(1, values)
    asyncio.run(two.write_chunk_async(1, values))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(one, name)[2:], values[name], err_msg=name)
        np.testing.assert_array_equal(getattr(two, name)[:], getattr(one, name)[:])
    assert one.done.tolist() == two.done.tolist() == [False, True]


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


@pytest.mark.parametrize("chunk", [4, 8])
def test_an_interrupted_run_is_resumed_to_the_same_content(tmp_path, chunk):
    model, dataset = small_cnn(), data()
    sizes = dict(batch_size=4, chunk_size=chunk, progress=False)
    whole = lt.explain_dataset(model, dataset, store=tmp_path / "whole", **sizes)
    flaky = Flaky(dataset, fail_at=13)  # the batch of items 12…15 fails
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="item 13"):
        lt.explain_dataset(model, flaky, store=tmp_path / "part", **sizes)
    assert_unchanged(before, snapshot(model))
    part = lt.open_store(tmp_path / "part")
    first = 12 // chunk  # the chunk that holds item 13 and the chunks after it are not done
    assert part.done.tolist() == [k < first for k in range(-(-N // chunk))]
    flaky.fail_at, flaky.reads = None, []
    resumed = lt.explain_dataset(model, flaky, store=tmp_path / "part", **sizes)
    # item 0: the probe; the chunk of item 13 is explained again from its start
    assert sorted(set(flaky.reads) - {0}) == list(range(first * chunk, N))
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
                               chunk_size=4, progress=False)
            """
        )
    )
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "s")], timeout=120)
    assert run.returncode == 3
    done = lt.open_store(tmp_path / "s").done
    assert not done[2:].any()  # chunk 2 holds item 9; chunks 0, 1 were written or queued
    sizes = dict(batch_size=4, chunk_size=4, progress=False)
    resumed = lt.explain_dataset(small_cnn(), data(), store=tmp_path / "s", **sizes)
    whole = lt.explain_dataset(small_cnn(), data(), store=tmp_path / "w", **sizes)
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
        ("chunk_size", dict(chunk_size=8)),
    ]
    for field, change in cases:
        args = dict(model=model, data=dataset, batch_size=4) | change
        with pytest.raises(lt.StoreError, match=field):
            lt.explain_dataset(
                args.pop("model"), args.pop("data"), store=path, progress=False, **args
            )
    for name, value in arrays(lt.open_store(path)).items():
        np.testing.assert_array_equal(value, kept[name], err_msg=name)
    with pytest.raises(lt.InputError, match="multiple of the batch size 4"):
        lt.explain_dataset(model, dataset, store=tmp_path / "t", batch_size=4, chunk_size=6)
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
        "--chunk-size",
        "8",  # chunks [0, 8) and [16, 23) in one process, [8, 16) in the other
        "--no-progress",
    ]
    run = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    two = lt.open_store(tmp_path / "two")
    assert two.complete
    one = lt.explain_dataset(
        small_cnn(), data(), store=tmp_path / "one", batch_size=4, chunk_size=8, progress=False
    )
    assert two.n_chunks == 3
    for name, value in arrays(one).items():
        np.testing.assert_allclose(arrays(two)[name], value, rtol=1e-12, atol=0, err_msg=name)
    assert two.attrs == {**one.attrs}


def test_an_error_while_writing_is_raised_and_the_run_resumes(tmp_path, monkeypatch):
    model, dataset = small_cnn(), data()
    sizes = dict(batch_size=4, chunk_size=4, progress=False)
    whole = lt.explain_dataset(model, dataset, store=tmp_path / "whole", **sizes)
    write = lt.dataset.RelevanceStore.write_chunk_async

    async def failing(self, k, values):
        if k == 1:
            raise OSError("disk full while writing chunk 1")
        await write(self, k, values)

    monkeypatch.setattr(lt.dataset.RelevanceStore, "write_chunk_async", failing)
    with pytest.raises(OSError, match="disk full"):  # raised in the caller, not lost
        lt.explain_dataset(model, dataset, store=tmp_path / "part", **sizes)
    done = lt.open_store(tmp_path / "part").done
    assert done[0] and not done[1]
    monkeypatch.undo()
    resumed = lt.explain_dataset(model, dataset, store=tmp_path / "part", **sizes)
    for name, value in arrays(whole).items():
        np.testing.assert_array_equal(arrays(resumed)[name], value, err_msg=name)


def test_the_last_chunk_write_error_is_raised_on_leaving(tmp_path, monkeypatch):
    model, dataset = small_cnn(), data()

    async def failing(self, k, values):
        raise OSError(f"cannot write chunk {k}")

    monkeypatch.setattr(lt.dataset.RelevanceStore, "write_chunk_async", failing)
    with pytest.raises(OSError, match="cannot write chunk 0"):  # the one and only chunk
        lt.explain_dataset(model, dataset, store=tmp_path / "s", progress=False)
    assert not lt.open_store(tmp_path / "s").done.any()


def test_the_default_chunk_holds_4_mebibytes_in_whole_batches_or_an_8th_of_the_data():
    from lrp_tutor.dataset.explain import _chunk_size

    assert _chunk_size(None, 64, 28 * 28 * 4, 60_000) == 21 * 64  # 21 × 200,704 B ≥ 4 MiB
    assert _chunk_size(None, 64, 28 * 28 * 4, 4096) == 8 * 64  # 8 chunks of 8 batches
    assert _chunk_size(None, 64, 3 * 224 * 224 * 4, 50_000) == 64  # one batch is 38 MB
    assert _chunk_size(None, 5, 512, 23) == 5  # at least one batch
    assert _chunk_size(128, 64, 4, 10**6) == 128
    assert _chunk_size(10**6, 4, 24, 10) == 12  # no chunk beyond the data (3 batches)
    with pytest.raises(lt.InputError, match="multiple"):
        _chunk_size(100, 64, 4, 10**6)


def test_a_store_of_another_format_is_refused_with_its_format(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "old"), mode="w", zarr_format=3)
    group.create_array("relevance", shape=(2, 3), dtype="float32")
    group.update_attributes({"format": 1, "model_checksum": "0" * 64, "n": 2, "batch_size": 1})
    with pytest.raises(lt.StoreError, match="format 1, written by another version"):
        lt.open_store(tmp_path / "old")
    with pytest.raises(lt.StoreError, match="format 1"):
        lt.explain_dataset(small_cnn(), data(), store=tmp_path / "old", progress=False)


def test_tensors_in_memory_are_sliced_with_the_dataloaders_result(tmp_path, monkeypatch):
    import lrp_tutor.dataset.explain as module

    model, dataset = small_cnn(), data()
    sizes = dict(batch_size=4, chunk_size=8, target="label", progress=False)
    collated = lt.explain_dataset(model, Flaky(dataset), store=tmp_path / "c", **sizes)

    class NoLoader(DataLoader):
        def __init__(self, *args, **kwargs):
            raise AssertionError("a TensorDataset is sliced, not loaded row by row")

    monkeypatch.setattr(module, "DataLoader", NoLoader)
    sliced = lt.explain_dataset(model, dataset, store=tmp_path / "s", **sizes)
    for name, value in arrays(collated).items():
        np.testing.assert_array_equal(arrays(sliced)[name], value, err_msg=name)
    with pytest.raises(AssertionError, match="sliced"):  # any other data set is loaded
        lt.explain_dataset(model, Flaky(dataset), store=tmp_path / "f", **sizes)
