r"""Book-keeping during the modified backward pass: one :class:`Booking` per layer call.

Every layer's backward writes what it received, :math:`\sum_j R_j`, what it passed on,
:math:`\sum_i R_i`, and what its bias and its stabiliser absorbed, as per-sample tensors on
the model's device, in its dtype (no transfer or conversion per layer). Once the pass is
over, :meth:`Recorder.ledger` turns them into a float64 :class:`~lrp_tutor.ledger.Ledger`
in forward order.

Examples
--------
>>> import torch
>>> recorder = Recorder(keep_layers=False)
>>> booking = recorder.new("0", "Linear")
>>> booking.book(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.5]]), bias=torch.tensor([0.5]))
>>> recorder.ledger()
layer            Σ R_out        Σ R_in          bias             ε
0 (Linear)             3           2.5           0.5             0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..ledger import Ledger, LedgerEntry

__all__ = ["Booking", "Recorder", "Sums", "per_sample_sum"]


def per_sample_sum(t: Tensor, batch: int | None = None) -> Tensor:
    """:math:`\\sum` over everything but the batch dimension: one value per sample.

    Without ``batch``, the first dimension is the batch. With ``batch`` (the number of
    samples), a tensor that is not batch first is summed per sample too: ``(L, N, E)``
    (sequence-first attention: the batch is dimension 1), or a batch folded into the first
    dimension, batch outermost (Swin's windows, ``(N·W, …)``). Where no dimension fits, the
    total is spread evenly over the samples, so that the ledger's totals stay exact. (A
    sequence-first tensor whose sequence is as long as the batch reads as batch first.)

    >>> t = torch.arange(6.0).view(3, 2, 1)        # (L=3, N=2, E=1)
    >>> per_sample_sum(t, batch=2)
    tensor([6., 9.])
    """
    rows = t.shape[0] if t.ndim else 1
    if batch is None or rows == batch:
        return t.reshape(rows, -1).sum(1)
    if t.ndim > 1 and t.shape[1] == batch:
        return t.movedim(1, 0).reshape(batch, -1).sum(1)
    if rows % batch == 0:
        return t.reshape(batch, -1).sum(1)
    return t.sum().expand(batch) / batch


def _same_data(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same contiguous memory, unchanged (views alike)."""
    return (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and a.storage_offset() == b.storage_offset()
        and a.numel() == b.numel()
        and a.dtype == b.dtype
        and a.is_contiguous()
        and b.is_contiguous()
        and a._version == b._version
    )


class Sums:
    """Per-sample sums of relevance tensors, the last one remembered.

    What a layer passes on, :math:`R_i`, is what the layer below receives as its
    :math:`R_j` (reshaped at most), so the two books share one sum. The last tensor is held
    until the next one comes, so its memory cannot be reused by another tensor meanwhile.
    """

    def __init__(self) -> None:
        self._last: tuple[Tensor, Tensor] | None = None

    def __call__(self, t: Tensor, batch: int | None = None) -> Tensor:
        last = self._last
        if last is not None and _same_data(t, last[0]) and last[0].shape == t.shape:
            return last[1]
        total = per_sample_sum(t, batch)
        self._last = (t, total)
        return total


@dataclass
class Booking:
    """The books of one call of one layer (filled in by its backward)."""

    name: str
    label: str
    order: float
    keep: bool
    sums: Sums = field(default_factory=Sums, repr=False)
    relevance_out: Tensor | None = None
    relevance_in: Tensor | None = None
    bias: Tensor | None = None
    stabilizer: Tensor | None = None
    relevance: Tensor | tuple[Tensor, ...] | None = field(default=None, repr=False)
    batch: int | None = None  # samples per batch (None: rows are samples)

    def _sum(self, t: Tensor) -> Tensor:
        return self.sums(t, self.batch)

    def book(
        self,
        r_out: Tensor,
        r_in: Tensor | tuple[Tensor, ...],
        bias: Tensor | None = None,
        stabilizer: Tensor | None = None,
    ) -> None:
        """Record :math:`R_{out}`, :math:`R_{in}` and the absorbed relevance of this call
        (None: nothing absorbed; else one value per sample: :func:`per_sample_sum` with
        :attr:`batch`)."""
        parts = r_in if isinstance(r_in, tuple) else (r_in,)
        self.relevance_out = self._sum(r_out)
        self.relevance_in = self._sum(parts[0])
        for r in parts[1:]:
            self.relevance_in = self.relevance_in + self._sum(r)
        self.bias, self.stabilizer = bias, stabilizer
        if self.keep:
            self.relevance = r_in

    def book_unchanged(self, r_out: Tensor, r_in: Tensor) -> None:
        """Record a layer that passes relevance on unchanged (``r_in`` is ``r_out`` reshaped):
        :math:`\\sum_i R_i = \\sum_j R_j`, summed once."""
        self.relevance_out = self.relevance_in = self._sum(r_out)
        if self.keep:
            self.relevance = r_in

    @property
    def booked(self) -> bool:
        return self.relevance_out is not None


class Recorder:
    """Hands out :class:`Booking` s in forward order and collects them into a ledger."""

    def __init__(self, keep_layers: bool, batch: int | None = None) -> None:
        self.keep_layers = keep_layers
        self.batch = batch
        self.bookings: list[Booking] = []
        self._calls: dict[str, int] = {}
        self._sums = Sums()  # shared by the bookings of one backward pass

    def new(self, name: str, kind: str, order: float | None = None) -> Booking:
        """A booking for the next call of module ``name``; repeated calls get ``#2``, ``#3``…"""
        name = name or "model"  # the model itself is the layer
        count = self._calls.get(name, 0) + 1
        self._calls[name] = count
        key = name if count == 1 else f"{name}#{count}"
        order = float(len(self.bookings)) if order is None else order
        booking = Booking(
            key, f"{key} ({kind})", order, self.keep_layers, self._sums, batch=self.batch
        )
        self.bookings.append(booking)
        return booking

    def _booked(self) -> list[Booking]:
        return sorted((b for b in self.bookings if b.booked), key=lambda b: b.order)

    def ledger(self) -> Ledger:
        """The :class:`~lrp_tutor.ledger.Ledger` of every layer that was passed, forward order."""
        booked = self._booked()
        if not booked:
            return Ledger([])
        zero = torch.zeros_like(booked[0].relevance_out)
        columns = [
            zero if v is None else v.to(zero.dtype)
            for b in booked
            for v in (b.relevance_out, b.relevance_in, b.bias, b.stabilizer)
        ]
        values = torch.stack(columns).to(torch.float64).cpu().numpy()
        values = values.reshape(len(booked), 4, -1)  # one transfer, then views
        entries = [LedgerEntry(b.label, *row) for b, row in zip(booked, values, strict=True)]
        return Ledger(entries, dtype=zero.dtype)

    def layers(self) -> dict[str, Tensor | tuple[Tensor, ...]]:
        """The relevance at each layer's input, keyed by module name (forward order)."""
        return {b.name: b.relevance for b in self._booked() if b.relevance is not None}
