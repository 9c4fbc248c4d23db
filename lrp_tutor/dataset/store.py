"""The relevance store: one Zarr group on disk that holds the explanation of a data set.

Layout (store format 2; N samples, C classes, chunked by ``chunk_size`` S along the first
axis, so that chunk k of every array holds samples ``[kS, (k+1)S)``)::

    relevance  (N, *input_shape)  R_i of every input, in the model's dtype
    samples    (N, 4 + C)         float64, one row per sample: the explained class c, the
                                  data set's label y (-1 where it has none), Σ_i R_i, what
                                  bias and ε absorbed (the ledger's total), then the C logits
    done       (⌈N/S⌉,)           chunk k is finished (written last, one file per chunk)

A chunk is three writes (relevance, its rows of ``samples``, its ``done`` flag), in this
order; Zarr writes each chunk file atomically. The per-sample numbers share one table so that
a chunk costs one small write, not five; :class:`RelevanceStore` reads them back as separate
lazy arrays (``store.target``, ``store.label``, ``store.total``, ``store.absorbed``,
``store.output``) in their own dtypes. The table's ``columns`` attribute names its columns.

The group's attributes record what was explained: the model's class and the SHA-256 of its
parameters and buffers, the rule or composite, the seed, the target, N, B and the package
version, the batch size B of each call of ``explain`` and S (a multiple of B). A store is
only ever continued by the same explanation; anything else is refused.

>>> import tempfile
>>> path = tempfile.mkdtemp() + "/r.zarr"
>>> meta = {"n": 3, "batch_size": 2, "input_shape": [4], "classes": 2, "dtype": "float32"}
>>> store = RelevanceStore.create(path, meta)
>>> store.n_chunks, store.chunk_range(1), store.complete
(2, (2, 3), False)
>>> store.samples.attrs["columns"]
['target', 'label', 'total', 'absorbed', 'output[0]', 'output[1]']
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import StoreError

FORMAT = 2
"""The version of the store layout; a store of another format is refused (format 1, of
earlier versions, kept every per-sample number in an array of its own)."""

ARRAYS = ("relevance", "target", "output", "label", "total", "absorbed")
"""What a store holds per sample: the arrays of a :class:`RelevanceStore` and the values
:meth:`RelevanceStore.write_chunk` takes."""

SCALARS = ("target", "label", "total", "absorbed")
"""The per-sample numbers in the first columns of the ``samples`` table; the logits follow."""

_INTEGER = {"target", "label"}  # stored in float64 (exact below 2**53), read as int64

IDENTITY = (
    "format",
    "model_class",
    "model_checksum",
    "rule",
    "composite",
    "init",
    "target",
    "n",
    "batch_size",
    "chunk_size",
    "input_shape",
    "classes",
    "dtype",
)
"""The attributes that must agree before a store is continued."""


def _zarr() -> Any:
    if importlib.util.find_spec("zarr") is None:
        raise ImportError(
            "The relevance store needs the package 'zarr' (version 3), which is not installed. "
            "Install it with: pip install 'zarr>=3.0.8,<4' (Python 3.11 or newer)."
        )
    import zarr

    return zarr


def model_checksum(model: nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of the model's parameters and buffers.

    Two models get the same checksum exactly when their state_dicts are equal bit for bit
    (wherever they live: the bytes are read on the CPU).

    >>> net = nn.Linear(2, 1)
    >>> model_checksum(net) == model_checksum(net)
    True
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_class(model: nn.Module) -> str:
    """The import path of the model's class, e.g. ``torch.nn.modules.container.Sequential``."""
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}"


class Column:
    """One per-sample quantity of the ``samples`` table (``target``, ``label``, ``total``,
    ``absorbed`` or the logits ``output``), read lazily like a ``zarr.Array``.

    Indexing (``store.target[10:20]``, ``store.output[mask]``, ``store.output[3, 2]``) reads
    only the chunks it needs and returns numpy in the quantity's own dtype;
    ``np.asarray(store.label)`` reads it all. Rows not yet written read as -1 (target, label)
    or NaN.
    """

    def __init__(self, table: Any, name: str, columns: int | slice, dtype: Any) -> None:
        self._table, self.name, self._columns = table, name, columns
        self.dtype = np.dtype(dtype)
        width = () if isinstance(columns, int) else (columns.stop - columns.start,)
        self.shape: tuple[int, ...] = (int(table.shape[0]), *width)
        self.chunks: tuple[int, ...] = (int(table.chunks[0]), *width)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        rows, rest = (key[0], key[1:]) if key else (slice(None), ())
        if rows is Ellipsis:
            rows = slice(None)
        if isinstance(rows, (int, np.integer, slice)):
            block = np.asarray(self._table[rows, self._columns])
        else:
            block = self._table.get_orthogonal_selection((np.asarray(rows), self._columns))
        if self.name in _INTEGER:
            block = np.where(np.isnan(block), -1, block)
        block = block.astype(self.dtype, copy=False)
        if rest:
            lead = (slice(None),) if block.ndim == self.ndim else ()
            block = block[(*lead, *rest)]
        return block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<Column '{self.name}' shape={self.shape} dtype={self.dtype}>"


class RelevanceStore:
    """A data set's relevance on disk (Zarr), read lazily.

    ``store.relevance`` is a ``zarr.Array``; ``store.target``, ``.label``, ``.total``,
    ``.absorbed`` and ``.output`` are :class:`Column` views of the per-sample table that
    behave alike. Indexing any of them (``store.relevance[10:20]``) reads only the chunks it
    needs and returns numpy; ``np.asarray(store.target)`` reads it all. Open an existing
    store with :func:`open_store`.
    """

    def __init__(self, group: Any, path: str | Path) -> None:
        self._group = group
        self.path = Path(path)
        self._arrays: dict[str, Any] = {}
        self._columns: dict[str, Column] = {}
        meta = self.attrs
        self._n, self._batch_size = int(meta["n"]), int(meta["batch_size"])
        self._chunk_size = int(meta.get("chunk_size", self._batch_size))
        self._dtype = np.dtype(meta["dtype"])

    def _array(self, name: str) -> Any:
        """The zarr array ``name``, opened once (opening reads its metadata from disk)."""
        if name not in self._arrays:
            self._arrays[name] = self._group[name]
        return self._arrays[name]

    def _column(self, name: str) -> Column:
        if name not in self._columns:
            table = self._array("samples")
            if name == "output":
                where: int | slice = slice(len(SCALARS), int(table.shape[1]))
            else:
                where = SCALARS.index(name)
            dtype = {"output": self._dtype, "target": np.int64, "label": np.int64}
            self._columns[name] = Column(table, name, where, dtype.get(name, np.float64))
        return self._columns[name]

    # -- creating and opening --------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any]) -> RelevanceStore:
        """Create an empty store at ``path`` for the explanation described by ``meta``.

        ``meta`` holds at least ``n``, ``batch_size``, ``input_shape``, ``classes`` and
        ``dtype`` (and ``chunk_size``, else the batch size); it is stored in the group's
        attributes together with ``format``.
        """
        zarr = _zarr()
        meta = {"chunk_size": int(meta["batch_size"]), **meta}
        n, size = int(meta["n"]), int(meta["chunk_size"])
        shape = tuple(int(d) for d in meta["input_shape"])
        classes = int(meta["classes"])
        columns = [*SCALARS, *(f"output[{j}]" for j in range(classes))]
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        arrays = {
            "relevance": ((n, *shape), (size, *shape), np.dtype(meta["dtype"]), 0, {}),
            "samples": ((n, len(columns)), (size, len(columns)), np.float64, np.nan, columns),
            "done": ((-(-n // size),), (1,), np.bool_, False, {}),
        }
        for name, (full, chunks, kind, fill, names) in arrays.items():
            group.create_array(
                name,
                shape=full,
                chunks=chunks,
                dtype=kind,
                fill_value=fill,
                compressors=None,
                attributes={"columns": names} if names else None,
            )
        # the attributes last and in one write (each ``attrs[key] = …`` rewrites zarr.json)
        group.update_attributes({"format": FORMAT, **meta, "input_shape": list(shape)})
        return cls(group, path)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> RelevanceStore:
        """Open the store at ``path`` (``mode="r"`` reads, ``"r+"`` lets chunks be written)."""
        zarr = _zarr()
        if not Path(path).exists():
            raise StoreError(f"There is no relevance store at {path}.")
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as error:  # not a Zarr group at all
            raise StoreError(f"{path} is not a relevance store: {error}") from error
        found = group.attrs.get("format")
        if isinstance(found, int) and found != FORMAT and "model_checksum" in group.attrs:
            raise StoreError(
                f"{path} is a relevance store of format {found}, written by another version "
                f"of lrp_tutor; this one reads format {FORMAT}. Explain the data set again "
                "into a new path (or open it with the version that wrote it)."
            )
        if found != FORMAT or "samples" not in group:
            raise StoreError(
                f"{path} is not a relevance store of lrp_tutor (format {FORMAT}); give "
                "explain_dataset a new path."
            )
        return cls(group, path)

    def check_same(self, meta: dict[str, Any]) -> None:
        """Raise :class:`StoreError` unless this store was written for the explanation
        described by ``meta`` (the keys of :data:`IDENTITY`)."""
        attrs = self.attrs
        expected = {**meta, "format": FORMAT}
        differ = [
            f"{key}: store has {attrs.get(key)!r}, this run has {expected.get(key)!r}"
            for key in IDENTITY
            if _plain(attrs.get(key)) != _plain(expected.get(key))
        ]
        if differ:
            raise StoreError(
                f"The relevance store at {self.path} was written for another explanation, and "
                "would be mixed with this one:\n  " + "\n  ".join(differ) + "\nGive another "
                "store path, or delete this store to start over."
            )

    # -- reading ---------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """What was explained: model class and checksum, rule, composite, target, version…"""
        return dict(self._group.attrs)

    @property
    def relevance(self) -> Any:
        """R_i of every input, (N, *input_shape), lazy (a ``zarr.Array``)."""
        return self._array("relevance")

    @property
    def samples(self) -> Any:
        """The per-sample table (N, 4 + classes) float64 as stored (a ``zarr.Array``); its
        attribute ``columns`` names the columns. Read it through the arrays below."""
        return self._array("samples")

    @property
    def target(self) -> Column:
        """The explained class of each sample, (N,) int64."""
        return self._column("target")

    @property
    def output(self) -> Column:
        """The logits, (N, classes), in the model's dtype."""
        return self._column("output")

    @property
    def label(self) -> Column:
        """The data set's label of each sample, -1 where it has none, (N,) int64."""
        return self._column("label")

    @property
    def total(self) -> Column:
        """Σ_i R_i per sample, (N,) float64."""
        return self._column("total")

    @property
    def absorbed(self) -> Column:
        """The relevance the bias terms and ε absorbed, per sample, (N,) float64."""
        return self._column("absorbed")

    def __len__(self) -> int:
        return self._n

    @property
    def batch_size(self) -> int:
        """The samples B of each call of ``explain``."""
        return self._batch_size

    @property
    def chunk_size(self) -> int:
        """The chunk length S along the sample axis (a multiple of B)."""
        return self._chunk_size

    @property
    def n_chunks(self) -> int:
        """⌈N / S⌉."""
        return -(-self._n // self._chunk_size)

    def chunk_range(self, k: int) -> tuple[int, int]:
        """The samples ``[start, stop)`` of chunk ``k``."""
        start = k * self._chunk_size
        return start, min(start + self._chunk_size, self._n)

    @property
    def done(self) -> np.ndarray:
        """Which chunks are finished (bool, one per chunk)."""
        return np.asarray(self._array("done")[:], dtype=bool)

    @property
    def complete(self) -> bool:
        """Whether every chunk is finished."""
        return bool(self.done.all())

    def iter_chunks(self, name: str = "relevance") -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, block)`` of array ``name`` (one of :data:`ARRAYS`, or
        ``samples``, ``done``), one chunk at a time."""
        array = getattr(self, name) if name in ARRAYS else self._array(name)
        for k in range(self.n_chunks):
            start, stop = self.chunk_range(k)
            yield start, stop, array[start:stop]

    # -- writing ---------------------------------------------------------------------------
    def _rows(self, k: int, values: dict[str, np.ndarray]) -> tuple[slice, np.ndarray, np.ndarray]:
        """Chunk ``k``'s rows, its relevance and its rows of the per-sample table."""
        start, stop = self.chunk_range(k)
        rows = stop - start
        for name in ARRAYS:
            if np.shape(values[name])[:1] != (rows,):
                raise StoreError(
                    f"chunk {k} of '{name}' has {np.shape(values[name])[:1]} rows, not {rows}."
                )
        table = np.empty((rows, int(self.samples.shape[1])), dtype=np.float64)
        for j, name in enumerate(SCALARS):
            table[:, j] = values[name]
        table[:, len(SCALARS) :] = np.asarray(values["output"]).reshape(rows, -1)
        return slice(start, stop), np.asarray(values["relevance"]), table

    def write_chunk(self, k: int, values: dict[str, np.ndarray]) -> None:
        """Write chunk ``k`` (``values`` holds every name of :data:`ARRAYS`): the relevance,
        then the chunk's rows of the per-sample table, then mark it finished (so a crash in
        between leaves it unfinished, to be written again)."""
        rows, relevance, table = self._rows(k, values)
        self._array("relevance")[rows] = relevance
        self._array("samples")[rows] = table
        self._array("done")[k] = True

    async def write_chunk_async(self, k: int, values: dict[str, np.ndarray]) -> None:
        """:meth:`write_chunk` as a coroutine, for an event loop of the caller's: the relevance
        and the table rows are written concurrently, the ``done`` flag after both."""
        rows, relevance, table = self._rows(k, values)
        await asyncio.gather(
            self._array("relevance").async_array.setitem(rows, relevance),
            self._array("samples").async_array.setitem(rows, table),
        )
        await self._array("done").async_array.setitem(k, True)

    def __repr__(self) -> str:
        attrs = self.attrs
        shape = "×".join(str(d) for d in attrs.get("input_shape", []))
        how = attrs.get("composite") or attrs.get("rule") or "the default rule"
        return (
            f"RelevanceStore({str(self.path)!r}, {len(self)} samples of {shape}, "
            f"{int(self.done.sum())}/{self.n_chunks} chunks done, {how}, "
            f"model {attrs.get('model_class', '?').rsplit('.', 1)[-1]})"
        )


def _plain(value: Any) -> Any:
    """Tuples become lists, so that attributes read back from JSON compare equal."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def open_store(path: str | Path) -> RelevanceStore:
    """Reopen the relevance store written by :func:`~lrp_tutor.explain_dataset` at ``path``.

    >>> open_store("/nonexistent/store.zarr")
    Traceback (most recent call last):
    ...
    lrp_tutor.errors.StoreError: There is no relevance store at /nonexistent/store.zarr.
    """
    return RelevanceStore.open(path, mode="r")
