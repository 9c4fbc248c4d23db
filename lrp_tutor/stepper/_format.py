"""Numbers and small tables as text and HTML for the stages' ``repr`` and ``_repr_html_``.

Everything here only formats; nothing computes LRP.

>>> num(0.123456789)
'0.1235'
>>> short(np.array([1.0, -2.0, 3.0, 4.0, 5.0]))
'[1, -2, 3, 4, …] (5)'
>>> index_label(5, (2, 3))
'(1,2)'
"""

from __future__ import annotations

import html

import numpy as np

MAX_ROWS = 8
"""Inputs *i* listed per neuron in an HTML table before the rest is summarised."""

MAX_COLUMNS = 4
"""Output neurons *j* shown in an HTML stage before the rest is summarised."""


def num(value: float) -> str:
    """A number with 4 significant digits (``-0`` printed as ``0``)."""
    value = float(value)
    if value == 0:
        return "0"
    return f"{value:.4g}"


def signed(value: float) -> str:
    """A number in a product: negative numbers in brackets, ``(-2)``."""
    text = num(value)
    return f"({text})" if text.startswith("-") else text


def short(values: np.ndarray, count: int = 4) -> str:
    """The first few values of an array and its size, e.g. ``[1, 2, …] (10)``."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    shown = ", ".join(num(v) for v in flat[:count])
    if flat.size > count:
        return f"[{shown}, …] ({flat.size})"
    return f"[{shown}]"


def index_label(flat: int, shape: tuple[int, ...]) -> str:
    """The index of element ``flat`` of an array of ``shape``: ``3`` or ``(0,1,2)``; ``pad``
    for padding (−1)."""
    if flat < 0:
        return "pad"
    if len(shape) <= 1:
        return str(int(flat))
    return "(" + ",".join(str(int(k)) for k in np.unravel_index(int(flat), shape)) + ")"


def worst(values: np.ndarray) -> float:
    """The largest absolute value (0 for an empty array)."""
    values = np.asarray(values)
    return float(np.max(np.abs(values))) if values.size else 0.0


def esc(text: str) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def table(header: list[str], rows: list[list[str]]) -> str:
    """A small HTML table; cells are escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def box(title: str, *parts: str) -> str:
    """A stage's HTML: a title line and the given (already escaped) blocks."""
    return f"<div><p><b>{esc(title)}</b></p>{''.join(parts)}</div>"


def para(text: str) -> str:
    """An escaped paragraph."""
    return f"<p>{esc(text)}</p>"


def more(shown: int, total: int, what: str) -> str:
    """A note that only ``shown`` of ``total`` items are listed."""
    if shown >= total:
        return ""
    return para(f"… showing {shown} of {total} {what}.")
