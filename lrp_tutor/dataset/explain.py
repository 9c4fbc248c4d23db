"""explain_dataset: a whole data set through :func:`lrp_tutor.explain`, into a Zarr store.

The data set is cut into chunks of S consecutive samples (``chunk_size``, a multiple of the
batch size B: by default the fewest batches that hold at least 4 MiB of relevance, since a
Zarr write costs a few milliseconds of CPU however small the chunk, but at most an 8th of
the data set, so that processes under torchrun share it evenly); chunk k holds
samples ``[kS, min((k+1)S, N))``, is explained in batches of B (one call of ``explain`` each)
and written at once: its relevance, its rows of the per-sample table, then its ``done`` flag.
So a run that stops (an exception, Ctrl-C, a killed process) is continued by calling again
with the same store: finished chunks are skipped, and since every chunk is cut into the same
batches as before, the store ends up exactly as an uninterrupted run leaves it. Under
``torchrun`` each process takes every WORLD_SIZE-th chunk.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
)
from torch.utils.data.dataloader import default_collate

from ..errors import InputError, StoreError
from ..fast import explain
from .sharding import Shard, local_device, process_group, shard_of
from .store import RelevanceStore, model_checksum, model_class


def _package_version() -> str:
    from .. import __version__

    return __version__


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``x`` or ``(x, y, …)`` → ``(x, y or None)``."""
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise InputError("The data set returned an empty item; items must be x or (x, y).")
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _as_dataset(data: Any, batch_size: int, num_workers: int) -> tuple[Dataset, dict[str, Any]]:
    """The map-style data set behind ``data`` and how to load it (a DataLoader's own batch
    size, workers and collate function win over the arguments)."""
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            raise InputError(
                "explain_dataset stores sample i of the data set in row i, so it needs the data "
                f"in order; this DataLoader uses {type(data.sampler).__name__} (shuffle=True?). "
                "Pass a DataLoader with shuffle=False, or the Dataset itself."
            )
        loading = {
            "batch_size": data.batch_size or batch_size,
            "num_workers": data.num_workers,
            "collate_fn": data.collate_fn,
            "pin_memory": data.pin_memory,
        }
        data = data.dataset
    else:
        loading = {"batch_size": batch_size, "num_workers": num_workers}
        loading["collate_fn"] = default_collate
        loading["pin_memory"] = False
    if isinstance(data, IterableDataset) or not hasattr(data, "__len__"):
        raise InputError(
            "explain_dataset needs a map-style Dataset (with __len__ and __getitem__), so that "
            "chunks can be skipped and shared between processes; got "
            f"{type(data).__name__}."
        )
    if int(loading["batch_size"]) < 1:
        raise InputError(f"batch_size must be at least 1, got {loading['batch_size']}.")
    return data, loading


def _target_spec(target: Any) -> Any:
    if target is None:
        return "predicted"
    if isinstance(target, str):
        if target != "label":
            raise InputError(f"target must be None, an int or 'label', got {target!r}.")
        return "label"
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    raise InputError(f"target must be None, an int or 'label', got {target!r}.")


def _batch_target(spec: Any, y: torch.Tensor | None) -> Any:
    if spec == "predicted":
        return None
    if spec == "label":
        if y is None:
            raise InputError("target='label' needs a data set of (x, y) items; it has only x.")
        return torch.as_tensor(y).reshape(-1).long()
    return spec


CHUNK_BYTES = 4 << 20
"""The least relevance (in bytes) a chunk holds by default: Zarr's advice for chunk sizes,
and enough that a write's fixed cost is small next to explaining the chunk."""


SHARES = 8
"""A default chunk is at most 1/SHARES of the data set, so that up to SHARES processes under
torchrun get equal shares of the work."""


def _chunk_size(requested: int | None, batch: int, sample_bytes: int, n: int) -> int:
    """Samples per chunk: ``requested`` (a multiple of ``batch``; at most the data set's
    batches), or the fewest whole batches that hold :data:`CHUNK_BYTES` of relevance, but
    no more than 1/:data:`SHARES` of the data set's batches (and at least one batch)."""
    if requested is not None:
        if int(requested) < 1 or int(requested) % batch:
            raise InputError(
                f"chunk_size must be a positive multiple of the batch size {batch} (each chunk "
                f"is explained in whole batches), got {requested}."
            )
        return min(int(requested), -(-n // batch) * batch)  # no chunk beyond the data
    batches = -(-CHUNK_BYTES // max(1, batch * sample_bytes))
    return max(1, min(batches, -(-n // batch) // SHARES)) * batch


def _model_device(model: nn.Module) -> torch.device:
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _explain_batch(
    model: nn.Module, batch: Any, spec: Any, device: torch.device, how: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Explain one loaded batch; its rows of the arrays of the store, as numpy."""
    x, y = _unpack(batch)
    x = torch.as_tensor(x).to(device, non_blocking=True)
    e = explain(model, x, target=_batch_target(spec, y), **how)
    label = np.full(x.shape[0], -1, dtype=np.int64)
    if y is not None:
        label = torch.as_tensor(y).reshape(-1).long().cpu().numpy()
    return {
        "relevance": e.relevance.detach().cpu().numpy(),
        "target": e.target.cpu().numpy().astype(np.int64),
        "output": e.output.detach().cpu().numpy(),
        "label": label,
        "total": e.total.detach().double().cpu().numpy(),
        "absorbed": np.asarray(e.ledger.absorbed, dtype=np.float64),
    }


def _describe(
    model: nn.Module,
    dataset: Dataset,
    loading: dict[str, Any],
    spec: Any,
    how: dict[str, Any],
    device: torch.device,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """The identity of this run (what the store's attributes must match): one sample is
    explained to learn the input shape, the number of classes and the dtype."""
    first = _unpack(loading["collate_fn"]([dataset[0]]))
    x = torch.as_tensor(first[0]).to(device)
    probe = explain(model, x, target=_batch_target(spec, first[1]), **how)
    relevance = probe.relevance.detach()
    batch = int(loading["batch_size"])
    sample_bytes = relevance[0].numel() * relevance.element_size()
    return {
        "model_class": model_class(model),
        "model_checksum": model_checksum(model),
        "rule": repr(how["rule"]) if how["rule"] is not None else None,
        "composite": repr(how["composite"]) if how["composite"] is not None else None,
        "init": how["init"],
        "target": spec,
        "n": len(dataset),
        "batch_size": batch,
        "chunk_size": _chunk_size(chunk_size, batch, sample_bytes, len(dataset)),
        "input_shape": list(relevance.shape[1:]),
        "classes": int(probe.output.shape[1]),
        "dtype": str(relevance.cpu().numpy().dtype),
        "lrp_tutor_version": _package_version(),
        "torch_version": torch.__version__,
    }


def _open_or_create(
    path: Path, meta: dict[str, Any], shard: Shard
) -> tuple[RelevanceStore, np.ndarray]:
    """Rank 0 creates the store or checks the existing one; then every other process opens
    it. The store, and which chunks are done (none in a store just created). A refusal on
    rank 0 is raised in every process (no process is left waiting)."""
    problem, store, created = None, None, False
    if shard.rank == 0:
        try:
            if path.exists() and any(path.iterdir()):
                store = RelevanceStore.open(path, mode="r+")
                store.check_same(meta)
            else:
                store, created = RelevanceStore.create(path, meta), True
        except StoreError as error:
            problem = str(error)
    problem, created = shard.broadcast((problem, created))
    if problem is not None:
        raise StoreError(problem)
    if store is None:
        store = RelevanceStore.open(path, mode="r+")
    return store, (np.zeros(store.n_chunks, dtype=bool) if created else store.done)


def explain_dataset(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    rule: Any = None,
    composite: Any = None,
    target: int | str | None = None,
    store: str | Path,
    batch_size: int = 64,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    init: str = "logit",
) -> RelevanceStore:
    r"""Explain every sample of ``data`` and write the result into a Zarr store.

    For each batch of B consecutive samples: ``e = explain(model, x, target, rule,
    composite)``; row i of the store holds :math:`R(x_i)`, :math:`c_i`, :math:`f(x_i)`,
    :math:`\sum_d R_d(x_i)` and what was absorbed on the way.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits; it comes back exactly as it was.
    data : Dataset or DataLoader
        Map-style; items ``x`` or ``(x, y)``. A DataLoader must not shuffle; its batch size,
        workers and collate function are used.
    rule, composite : optional
        As in :func:`lrp_tutor.explain`.
    target : None, int or "label"
        The predicted class (None), one class for all, or the data set's ``y``.
    store : path
        A directory. If it holds a store of the same explanation, unfinished chunks are
        added (resume); a store of another model, rule, target or data length is refused.
    batch_size : int
        Samples per call of ``explain``.
    chunk_size : int, optional
        Samples per chunk of the store: the unit of writing, resuming and sharding between
        processes; a multiple of ``batch_size``. Default: the fewest whole batches that hold
        at least 4 MiB of relevance (a store chunk per batch would cost more to write), but
        at most an 8th of the data set (so that up to 8 processes get equal shares).
    device : optional
        Where to explain (default: the model's; under torchrun with CUDA, ``cuda:LOCAL_RANK``).
        A model elsewhere is copied there, never moved.
    num_workers : int
        DataLoader workers.
    progress : bool
        A tqdm progress bar (in notebooks the widget); only rank 0 shows one.
    init : {"logit", "one"}
        The seed, as in :func:`lrp_tutor.explain`.

    Returns
    -------
    RelevanceStore

    Examples
    --------
    >>> import tempfile, torch
    >>> from torch.utils.data import TensorDataset
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    >>> data = TensorDataset(torch.randn(10, 3), torch.randint(0, 2, (10,)))
    >>> path = tempfile.mkdtemp() + "/r.zarr"
    >>> s = explain_dataset(net, data, store=path, batch_size=4, progress=False)
    >>> s.relevance.shape, s.complete
    ((10, 3), True)
    """
    spec = _target_spec(target)
    dataset, loading = _as_dataset(data, batch_size, num_workers)
    if len(dataset) == 0:
        raise InputError("The data set is empty.")
    how = {"rule": rule, "composite": composite, "init": init}
    path = Path(store)
    with process_group() as shard:
        where = local_device(shard, device, _model_device(model))
        work = model if where == _model_device(model) else copy.deepcopy(model).to(where)
        meta = _describe(work, dataset, loading, spec, how, where, chunk_size)
        relevance_store, done = _open_or_create(path, meta, shard)
        mine = shard_of(range(relevance_store.n_chunks), shard.rank, shard.world)
        pending = [k for k in mine if not done[k]]
        # every pending chunk in whole batches
        owner, batches, size = [], [], int(meta["batch_size"])
        for k in pending:
            start, stop = relevance_store.chunk_range(k)
            for first in range(start, stop, size):
                batches.append(list(range(first, min(first + size, stop))))
                owner.append(k)
        loader = _loader(dataset, batches, loading, where)
        bar = _progress_bar(
            total=sum(len(range(*relevance_store.chunk_range(k))) for k in mine),
            initial=sum(len(range(*relevance_store.chunk_range(k))) for k in mine if done[k]),
            enabled=progress and shard.rank == 0,
        )
        try:
            with ChunkWriter(relevance_store) as writer:
                for k, rows, batch in zip(owner, batches, loader, strict=True):
                    writer.add(k, rows[0], _explain_batch(work, batch, spec, where, how))
                    bar.update(len(rows))
        finally:
            bar.close()
        shard.barrier()
    return RelevanceStore.open(path, mode="r")


def _loader(
    dataset: Dataset, batches: list[list[int]], loading: dict[str, Any], device: torch.device
) -> Iterable[Any]:
    """The batches, loaded: by a DataLoader, or, for tensors in memory (a TensorDataset with
    the default collate function, no workers), as slices of the tensors: the same values as
    the DataLoader's stacked rows, without reading the rows one by one."""
    pin = bool(loading["pin_memory"]) and device.type == "cuda"
    if (
        type(dataset) is TensorDataset
        and loading["collate_fn"] is default_collate
        and not loading["num_workers"]
        and not pin
    ):
        tensors = dataset.tensors
        return ([t[rows[0] : rows[-1] + 1] for t in tensors] for rows in batches)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=loading["num_workers"],
        collate_fn=loading["collate_fn"],
        pin_memory=pin,
    )


class ChunkWriter:
    """Collects the batches of a chunk and writes the chunk in a background thread while the
    next batches are explained.

    A batch's arrays are copied into the chunk's buffers at once (so the memory of its
    explanation is let go and reused by the next one); buffers are reused from chunk to
    chunk. The thread runs an event loop of its own, in which each chunk is
    :meth:`RelevanceStore.write_chunk_async`: Zarr's file writes run concurrently, and the
    thread holds the GIL only briefly. At most ``depth`` chunks wait to be written. Leaving
    the ``with`` block (normally or by an exception, Ctrl-C included) waits until every
    submitted chunk is on disk, so that what was explained is kept (a chunk whose batches
    are not all in is not written); an error while writing is raised in the caller's
    thread (when the next chunk is submitted, or on leaving the block).
    """

    def __init__(self, store: RelevanceStore, depth: int = 2) -> None:
        self.store, self.depth = store, depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrp-store")
        self._pending: list[tuple[Future, dict[str, np.ndarray]]] = []
        self._free: list[dict[str, np.ndarray]] = []
        self._filling: dict[str, np.ndarray] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # used in the pool's thread only

    def add(self, k: int, first: int, values: dict[str, np.ndarray]) -> None:
        """Put the arrays of one batch, samples ``first, first + 1, …`` of chunk ``k``, in
        their place; a chunk is submitted for writing once its last batch is in."""
        start, stop = self.store.chunk_range(k)
        if self._filling is None:
            self._filling = self._free.pop() if self._free else {}
        buffers, at = self._filling, first - start
        for name, value in values.items():
            shape = (min(self.store.chunk_size, len(self.store)), *value.shape[1:])
            if name not in buffers or buffers[name].shape != shape:
                buffers[name] = np.empty(shape, dtype=value.dtype)
            buffers[name][at : at + len(value)] = value
        if at + len(values["relevance"]) == stop - start:
            self._submit(k, {name: array[: stop - start] for name, array in buffers.items()})

    def _submit(self, k: int, values: dict[str, np.ndarray]) -> None:
        """Queue chunk ``k``; wait for the oldest write while ``depth`` are queued."""
        buffers, self._filling = self._filling or {}, None
        while len(self._pending) >= self.depth:
            future, done = self._pending.pop(0)
            future.result()
            self._free.append(done)
        self._pending.append((self._pool.submit(self._write, k, values), buffers))

    def _write(self, k: int, values: dict[str, np.ndarray]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.store.write_chunk_async(k, values))

    def _close_loop(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for future, _ in self._pending:
                future.result()
        finally:
            self._pool.submit(self._close_loop)
            self._pool.shutdown(wait=True)


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, disable=not enabled, unit="img", desc="explain_dataset"
    )
