r"""Book-keeping during the modified backward pass: one :class:`Booking` per layer call.

Every layer's backward writes what it received, :math:`\sum_j R_j`, what it passed on,
:math:`\sum_i R_i`, and what its bias and its stabiliser absorbed, as per-sample tensors on
the model's device (no transfer per layer). :meth:`Recorder.ledger` turns them into a
:class:`~lrp_tutor.ledger.Ledger` in forward order once the pass is over.

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

__all__ = ["Booking", "Recorder", "per_sample_sum"]


def per_sample_sum(t: Tensor) -> Tensor:
    """:math:`\\sum` over everything but the batch dimension (as float64)."""
    return t.reshape(t.shape[0], -1).sum(1).to(torch.float64)


@dataclass
class Booking:
    """The books of one call of one layer (filled in by its backward)."""

    name: str
    label: str
    order: float
    keep: bool
    relevance_out: Tensor | None = None
    relevance_in: Tensor | None = None
    bias: Tensor | None = None
    stabilizer: Tensor | None = None
    relevance: Tensor | tuple[Tensor, ...] | None = field(default=None, repr=False)

    def book(
        self,
        r_out: Tensor,
        r_in: Tensor | tuple[Tensor, ...],
        bias: Tensor | None = None,
        stabilizer: Tensor | None = None,
    ) -> None:
        """Record :math:`R_{out}`, :math:`R_{in}` and the absorbed relevance of this call."""
        n = r_out.shape[0]
        zero = torch.zeros(n, dtype=torch.float64, device=r_out.device)
        parts = r_in if isinstance(r_in, tuple) else (r_in,)
        self.relevance_out = per_sample_sum(r_out)
        self.relevance_in = sum((per_sample_sum(r) for r in parts), zero)
        self.bias = zero if bias is None else bias
        self.stabilizer = zero if stabilizer is None else stabilizer
        if self.keep:
            self.relevance = r_in

    @property
    def booked(self) -> bool:
        return self.relevance_out is not None


class Recorder:
    """Hands out :class:`Booking` s in forward order and collects them into a ledger."""

    def __init__(self, keep_layers: bool) -> None:
        self.keep_layers = keep_layers
        self.bookings: list[Booking] = []
        self._calls: dict[str, int] = {}

    def new(self, name: str, kind: str, order: float | None = None) -> Booking:
        """A booking for the next call of module ``name``; repeated calls get ``#2``, ``#3``…"""
        name = name or "model"  # the model itself is the layer
        count = self._calls.get(name, 0) + 1
        self._calls[name] = count
        key = name if count == 1 else f"{name}#{count}"
        order = float(len(self.bookings)) if order is None else order
        booking = Booking(key, f"{key} ({kind})", order, self.keep_layers)
        self.bookings.append(booking)
        return booking

    def _booked(self) -> list[Booking]:
        return sorted((b for b in self.bookings if b.booked), key=lambda b: b.order)

    def ledger(self) -> Ledger:
        """The :class:`~lrp_tutor.ledger.Ledger` of every layer that was passed, forward order."""
        booked = self._booked()
        if not booked:
            return Ledger([])
        values = torch.stack(
            [torch.stack([b.relevance_out, b.relevance_in, b.bias, b.stabilizer]) for b in booked]
        ).cpu()
        entries = [
            LedgerEntry(b.label, *(v.numpy() for v in row))
            for b, row in zip(booked, values, strict=True)
        ]
        return Ledger(entries)

    def layers(self) -> dict[str, Tensor | tuple[Tensor, ...]]:
        """The relevance at each layer's input, keyed by module name (forward order)."""
        return {b.name: b.relevance for b in self._booked() if b.relevance is not None}
