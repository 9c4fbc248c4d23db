"""The relevance store: one Zarr group on disk that holds the explanation of a data set.

Layout (N samples, chunked by ``batch_size`` B along the first axis)::

    relevance  (N, *input_shape)  R_i of every input
    target     (N,)               the explained class c
    output     (N, classes)       the logits f(x)
    label      (N,)               the data set's y (-1 where the data set has none)
    total      (N,)               Σ_i R_i, per sample
    absorbed   (N,)               what bias and ε absorbed, per sample (the ledger's total)
    done       (⌈N/B⌉,)           chunk k is finished (written last, one file per chunk)

The group's attributes record what was explained: the model's class and the SHA-256 of its
parameters and buffers, the rule or composite, the seed, the target, N, B and the package
version. A store is only ever continued by the same explanation; anything else is refused.

>>> import tempfile
>>> path = tempfile.mkdtemp() + "/r.zarr"
>>> meta = {"n": 3, "batch_size": 2, "input_shape": [4], "classes": 2, "dtype": "float32"}
>>> store = RelevanceStore.create(path, meta)
>>> store.n_chunks, store.chunk_range(1), store.complete
(2, (2, 3), False)
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import StoreError

FORMAT = 1
"""The version of the store layout; a store of another format is refused."""

ARRAYS = ("relevance", "target", "output", "label", "total", "absorbed")
"""The per-sample arrays of a store, in the order they are written."""

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


class RelevanceStore:
    """A data set's relevance on disk (Zarr), read lazily.

    Every array attribute is a ``zarr.Array``: indexing it (``store.relevance[10:20]``) reads
    only the chunks it needs and returns numpy; ``np.asarray(store.target)`` reads it all.
    Open an existing store with :func:`open_store`.
    """

    def __init__(self, group: Any, path: str | Path) -> None:
        self._group = group
        self.path = Path(path)
        self._arrays: dict[str, Any] = {}

    def _array(self, name: str) -> Any:
        """The zarr array ``name``, opened once (opening reads its metadata from disk)."""
        if name not in self._arrays:
            self._arrays[name] = self._group[name]
        return self._arrays[name]

    # -- creating and opening --------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any]) -> RelevanceStore:
        """Create an empty store at ``path`` for the explanation described by ``meta``.

        ``meta`` holds at least ``n``, ``batch_size``, ``input_shape``, ``classes`` and
        ``dtype``; it is stored in the group's attributes together with ``format``.
        """
        zarr = _zarr()
        n, size = int(meta["n"]), int(meta["batch_size"])
        shape = tuple(int(d) for d in meta["input_shape"])
        dtype = np.dtype(meta["dtype"])
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        arrays = {
            "relevance": ((n, *shape), (size, *shape), dtype, 0),
            "target": ((n,), (size,), np.int64, -1),
            "output": ((n, int(meta["classes"])), (size, int(meta["classes"])), dtype, 0),
            "label": ((n,), (size,), np.int64, -1),
            "total": ((n,), (size,), np.float64, 0),
            "absorbed": ((n,), (size,), np.float64, 0),
            "done": ((-(-n // size),), (1,), np.bool_, False),
        }
        for name, (full, chunks, kind, fill) in arrays.items():
            group.create_array(
                name, shape=full, chunks=chunks, dtype=kind, fill_value=fill, compressors=None
            )
        group.attrs.update({"format": FORMAT, **meta, "input_shape": list(shape)})
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
        if group.attrs.get("format") != FORMAT or "relevance" not in group:
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
        """R_i of every input, (N, *input_shape), lazy."""
        return self._array("relevance")

    @property
    def target(self) -> Any:
        """The explained class of each sample, (N,)."""
        return self._array("target")

    @property
    def output(self) -> Any:
        """The logits, (N, classes)."""
        return self._array("output")

    @property
    def label(self) -> Any:
        """The data set's label of each sample, -1 where it has none, (N,)."""
        return self._array("label")

    @property
    def total(self) -> Any:
        """Σ_i R_i per sample, (N,) float64."""
        return self._array("total")

    @property
    def absorbed(self) -> Any:
        """The relevance the bias terms and ε absorbed, per sample, (N,) float64."""
        return self._array("absorbed")

    def __len__(self) -> int:
        return int(self.attrs["n"])

    @property
    def batch_size(self) -> int:
        """The chunk length B along the sample axis."""
        return int(self.attrs["batch_size"])

    @property
    def n_chunks(self) -> int:
        """⌈N / B⌉."""
        return -(-len(self) // self.batch_size)

    def chunk_range(self, k: int) -> tuple[int, int]:
        """The samples ``[start, stop)`` of chunk ``k``."""
        start = k * self.batch_size
        return start, min(start + self.batch_size, len(self))

    @property
    def done(self) -> np.ndarray:
        """Which chunks are finished (bool, one per chunk)."""
        return np.asarray(self._array("done")[:], dtype=bool)

    @property
    def complete(self) -> bool:
        """Whether every chunk is finished."""
        return bool(self.done.all())

    def iter_chunks(self, name: str = "relevance") -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, block)`` of array ``name``, one chunk at a time."""
        array = self._array(name)
        for k in range(self.n_chunks):
            start, stop = self.chunk_range(k)
            yield start, stop, array[start:stop]

    # -- writing ---------------------------------------------------------------------------
    def write_chunk(self, k: int, values: dict[str, np.ndarray]) -> None:
        """Write every array of chunk ``k``, then mark it finished (so a crash in between
        leaves it unfinished, to be written again)."""
        start, stop = self.chunk_range(k)
        for name in ARRAYS:
            value = np.asarray(values[name])
            if value.shape[0] != stop - start:
                raise StoreError(
                    f"chunk {k} of '{name}' has {value.shape[0]} rows, not {stop - start}."
                )
            self._array(name)[start:stop] = value
        self._array("done")[k] = True

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
