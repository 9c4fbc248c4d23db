r"""The conservation ledger: where the relevance went, layer by layer.

For every layer the ledger books what arrived at its output, :math:`\sum_j R_j`, what it
passed on to its input, :math:`\sum_i R_i`, and what its bias and its stabiliser absorbed:

.. math::

    \sum_j R_j = \sum_i R_i + \underbrace{\sum_j \sum_p c_p
    \frac{\rho^p(b_j)}{\mathrm{stab}(z^p_j)} R_j}_{\text{bias}}
    + \underbrace{\sum_j \sum_p c_p
    \frac{\varepsilon\,\mathrm{sign}(z^p_j)}{\mathrm{stab}(z^p_j)} R_j}_{\text{stabiliser}}

Both paths (stepper and fast path) fill the same :class:`Ledger`, one :class:`LedgerEntry`
per layer, in forward order (``ledger[0]`` is the first layer, ``ledger[-1]`` the top one).
Every value is a float64 array with one number per sample of the batch.

Examples
--------
>>> import numpy as np
>>> entry = LedgerEntry("0 (Linear)", np.array([1.0]), np.array([0.7]),
...                     np.array([0.2]), np.array([0.1]))
>>> float(entry.residual[0])
0.0
>>> Ledger([entry]).check()
'Conservation holds: in every layer Σ R_out = Σ R_in + absorbed, up to 0 (tolerance 1e-10).'

The tolerance follows the dtype the relevance was computed in (``dtype=``): float64 books
balance to 1e-10, float32 books to about 1e-3 (:func:`default_tolerance`), both relative to
the largest relevance booked for the sample, so that "violated" means violated:

>>> rounded = LedgerEntry("0 (Linear)", np.array([2.0]), np.array([2.0 - 3e-7]), 0.0, 0.0)
>>> Ledger([rounded]).holds(), Ledger([rounded], dtype="float32").holds()
(False, True)
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LedgerEntry", "Ledger", "default_tolerance"]

FLOAT64_TOLERANCE = 1e-10
"""How closely float64 books balance (the stepper, and explain() of a float64 model)."""


def default_tolerance(dtype: Any = "float64") -> float:
    """The relative tolerance of conservation for relevance computed in ``dtype``.

    ``max(1e-10, 2**13 · eps)``: 1e-10 in float64, ≈ 9.8e-4 in float32. The 2¹³ units in the
    last place leave room for the rounding of sums over many inputs whose relevance cancels
    (αβ with a large α books 2α − 1 times the relevance it conserves). A real violation (a
    wrong rule, a forgotten bias) is off by a fraction of the relevance, far above either.

    Parameters
    ----------
    dtype : numpy or torch dtype, or its name
        E.g. ``torch.float32``, ``np.float64`` or ``"float32"``.

    >>> default_tolerance("float64"), round(default_tolerance(np.float32), 6)
    (1e-10, 0.000977)
    """
    try:
        kind = np.dtype(dtype)
    except TypeError:  # a torch dtype: torch.float32 → "float32"
        kind = np.dtype(str(dtype).removeprefix("torch."))
    eps = float(np.finfo(kind).eps)
    return max(FLOAT64_TOLERANCE, 2.0**13 * eps)


def _as_batch(value: object) -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


@dataclass
class LedgerEntry:
    """The books of one layer: Σ R_out = Σ R_in + bias + stabiliser (per sample).

    Attributes
    ----------
    layer : str
        The layer's name and type, e.g. ``"features.0 (Conv2d)"``.
    relevance_out : ndarray, shape (N,)
        :math:`\\sum_j R_j`, the relevance that arrived at the layer's output.
    relevance_in : ndarray, shape (N,)
        :math:`\\sum_i R_i`, the relevance the layer passed on to its input.
    bias : ndarray, shape (N,)
        The relevance absorbed by the bias terms.
    stabilizer : ndarray, shape (N,)
        The relevance absorbed by ε (and by neurons with a zero denominator under LRP-0).
    """

    layer: str
    relevance_out: np.ndarray
    relevance_in: np.ndarray
    bias: np.ndarray
    stabilizer: np.ndarray

    def __post_init__(self) -> None:
        for name in ("relevance_out", "relevance_in", "bias", "stabilizer"):
            setattr(self, name, _as_batch(getattr(self, name)))

    @property
    def absorbed(self) -> np.ndarray:
        """What bias and stabiliser took together."""
        return self.bias + self.stabilizer

    @property
    def residual(self) -> np.ndarray:
        """Σ R_out − Σ R_in − absorbed: zero up to rounding when the books balance."""
        return self.relevance_out - self.relevance_in - self.absorbed

    def __repr__(self) -> str:
        return (
            f"LedgerEntry({self.layer}: out={_fmt(self.relevance_out)} in={_fmt(self.relevance_in)}"
            f" bias={_fmt(self.bias)} stabilizer={_fmt(self.stabilizer)})"
        )


def _fmt(values: np.ndarray) -> str:
    if values.size == 1:
        return f"{values[0]:.6g}"
    return "[" + ", ".join(f"{v:.4g}" for v in values[:4]) + (", …]" if values.size > 4 else "]")


class Ledger(Sequence[LedgerEntry]):
    """The per-layer conservation books of one explanation (forward order).

    ``ledger[k]`` is the :class:`LedgerEntry` of layer *k*; ``ledger["features.0"]`` looks a
    layer up by name (the part before the type in brackets).

    Parameters
    ----------
    entries : sequence of LedgerEntry
        One per layer, forward order.
    dtype : numpy or torch dtype, or its name, optional
        The dtype the relevance was computed in (the entries themselves are float64); it sets
        the default tolerance of :meth:`holds` and :meth:`check`. None means float64.
    """

    def __init__(self, entries: Sequence[LedgerEntry], dtype: Any = None) -> None:
        self.entries = list(entries)
        self.dtype = dtype

    @property
    def tolerance(self) -> float:
        """The default tolerance of :meth:`holds`: :func:`default_tolerance` of the dtype."""
        return default_tolerance("float64" if self.dtype is None else self.dtype)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            for entry in self.entries:
                if entry.layer == key or entry.layer.split(" (")[0] == key:
                    return entry
            names = ", ".join(e.layer for e in self.entries)
            raise KeyError(f"No layer {key!r} in the ledger; it has: {names}.")
        return self.entries[key]

    @property
    def absorbed(self) -> np.ndarray:
        """Total relevance absorbed by all layers, per sample."""
        return sum((e.absorbed for e in self.entries), np.zeros(self._batch))

    @property
    def max_residual(self) -> float:
        """The largest |Σ R_out − Σ R_in − absorbed| over layers and samples."""
        if not self.entries:
            return 0.0
        return float(max(np.max(np.abs(e.residual)) for e in self.entries))

    @property
    def _batch(self) -> int:
        return self.entries[0].relevance_out.size if self.entries else 1

    @property
    def scale(self) -> np.ndarray:
        """Per sample, the largest magnitude booked in any layer (Σ R_out, Σ R_in, bias, ε):
        what a residual is compared with."""
        scale = np.zeros(self._batch)
        for e in self.entries:
            for v in (e.relevance_out, e.relevance_in, e.bias, e.stabilizer):
                scale = np.maximum(scale, np.abs(v))
        return scale

    def holds(self, tolerance: float | None = None) -> bool:
        """Whether every layer's books balance to ``tolerance``, relative to :attr:`scale`.

        The default, :attr:`tolerance`, follows the dtype the relevance was computed in:
        1e-10 in float64, about 1e-3 in float32 (:func:`default_tolerance`).
        """
        tolerance = self.tolerance if tolerance is None else tolerance
        allowed = tolerance * self.scale
        return all(np.all(np.abs(e.residual) <= allowed) for e in self.entries)

    def check(self, tolerance: float | None = None) -> str:
        """Say in words whether conservation holds, and by how much."""
        tolerance = self.tolerance if tolerance is None else tolerance
        if self.holds(tolerance):
            return (
                "Conservation holds: in every layer Σ R_out = Σ R_in + absorbed, "
                f"up to {self.max_residual:.3g} (tolerance {tolerance:.3g})."
            )
        worst = max(self.entries, key=lambda e: float(np.max(np.abs(e.residual))))
        return (
            f"Conservation is violated in layer {worst.layer}: Σ R_out − Σ R_in − absorbed = "
            f"{_fmt(worst.residual)} (tolerance {tolerance:.3g})."
        )

    def rows(self) -> list[tuple[str, float, float, float, float]]:
        """(layer, Σ R_out, Σ R_in, bias, stabiliser) of sample 0, in forward order."""
        return [
            (
                e.layer,
                float(e.relevance_out[0]),
                float(e.relevance_in[0]),
                float(e.bias[0]),
                float(e.stabilizer[0]),
            )
            for e in self.entries
        ]

    def __repr__(self) -> str:
        width = max([len(e.layer) for e in self.entries] + [5])
        head = f"{'layer':<{width}}  {'Σ R_out':>12}  {'Σ R_in':>12}  {'bias':>12}  {'ε':>12}"
        lines = [head]
        for layer, r_out, r_in, bias, stab in self.rows():
            lines.append(
                f"{layer:<{width}}  {r_out:>12.6g}  {r_in:>12.6g}  {bias:>12.6g}  {stab:>12.6g}"
            )
        if self._batch > 1:
            lines.append(f"(sample 0 of {self._batch})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(layer)}</td><td>{r_out:.6g}</td><td>{r_in:.6g}</td>"
            f"<td>{bias:.6g}</td><td>{stab:.6g}</td></tr>"
            for layer, r_out, r_in, bias, stab in self.rows()
        )
        return (
            "<table><tr><th>layer</th><th>Σ R_out</th><th>Σ R_in</th><th>bias</th>"
            f"<th>ε</th></tr>{cells}</table><p>{html.escape(self.check())}</p>"
        )
