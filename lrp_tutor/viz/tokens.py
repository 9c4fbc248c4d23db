r"""Token heatmaps: the relevance of each token of a text as a coloured background, in HTML.

Each token is a ``<span>`` whose background has the colour of its relevance :math:`R_t` on a
diverging colormap over the symmetric range :math:`[-v, v]`: white means no relevance, red
for the class, blue against it, the stronger the more saturated. Tokens are HTML-escaped
(also ``$``, so that a notebook's MathJax typesets nothing), there is no LaTeX anywhere, and
the text grows in lecture mode. A colour bar with the range :math:`\pm v` follows the text.

>>> html = token_heatmap_html(["the", "<cat>"], [0.5, -1.0])
>>> "&lt;cat&gt;" in html and "<cat>" not in html
True

In a notebook, :func:`token_heatmap` returns an object that Jupyter shows as the coloured text.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import to_hex

from ..errors import InputError
from . import style
from ._arrays import vector
from ._axes import colormap, number

__all__ = ["TokenHeatmap", "token_heatmap", "token_heatmap_html", "token_colors"]

BASE_FONT_PX = 16.0
"""Font size of the text in CSS pixels outside lecture mode (lecture mode multiplies it)."""


def _limit(R: np.ndarray, normalize: Any) -> float:
    """The colour limit v of :func:`token_heatmap_html`'s ``normalize``."""
    if isinstance(normalize, str):
        if normalize == "max":
            v = float(np.abs(R).max()) if R.size else 0.0
        elif normalize == "sum":
            v = float(np.abs(R).sum())
        else:
            raise InputError(
                f"normalize must be 'max', 'sum' or a positive number (the limit v), got "
                f"{normalize!r}."
            )
        return v if v > 0.0 else 1.0
    if isinstance(normalize, bool) or not isinstance(normalize, int | float | np.number):
        raise InputError(
            f"normalize must be 'max', 'sum' or a positive number (the limit v), got {normalize!r}."
        )
    if not np.isfinite(normalize) or not normalize > 0:
        raise InputError(f"normalize as a limit v must be a finite number > 0, got {normalize!r}.")
    return float(normalize)


def _tokens(tokens: Any) -> list[str]:
    if isinstance(tokens, str | bytes):
        raise InputError(
            "tokens must be a list of strings, one per token, got a single string; split it "
            "the way the model's tokenizer does (e.g. tokenizer.convert_ids_to_tokens(ids)), "
            "or text.split() for words."
        )
    if not isinstance(tokens, Sequence) and not hasattr(tokens, "__iter__"):
        raise InputError(f"tokens must be a list of strings, got {type(tokens).__name__}.")
    out = list(tokens)
    bad = [t for t in out if not isinstance(t, str)]
    if bad:
        raise InputError(
            f"tokens must be strings, got {type(bad[0]).__name__} ({bad[0]!r}); map ids to "
            "their text first."
        )
    return out


def token_colors(relevance: Any, *, cmap: Any = "bwr", normalize: Any = "max") -> list[str]:
    """The background colour ``#rrggbb`` of each token: the colormap at :math:`R_t / v`.

    >>> token_colors([1.0, 0.0, -1.0])
    ['#ff0000', '#fffefe', '#0000ff']
    """
    R = vector(relevance, "relevance")
    v = _limit(R, normalize)
    cm = colormap(cmap)
    positions = 0.5 + 0.5 * np.clip(R / v, -1.0, 1.0)
    return [to_hex(cm(float(p))) for p in positions]


def _escape(text: str) -> str:
    """HTML-escaped text in which MathJax finds no math (``$`` and ``\\`` as entities)."""
    return _html.escape(text, quote=True).replace("$", "&#36;").replace("\\", "&#92;")


def _legend(cm: Any, v: float, font_px: float) -> str:
    stops = ", ".join(to_hex(cm(float(p))) for p in np.linspace(0.0, 1.0, 11))
    small = 0.8 * font_px
    return (
        f'<div class="lrp-token-legend" style="display:flex;align-items:center;gap:0.5em;'
        f'margin-top:0.6em;font-size:{small:.1f}px">'
        f"<span>{_escape('−' + number(v))}</span>"
        f'<span style="display:inline-block;width:12em;height:0.9em;border:1px solid #888;'
        f'background:linear-gradient(to right, {stops})"></span>'
        f"<span>{_escape('+' + number(v))}</span>"
        "<span>relevance (red: for the class, blue: against)</span></div>"
    )


def token_heatmap_html(
    tokens: Sequence[str],
    relevance: Any,
    *,
    cmap: Any = "bwr",
    normalize: Any = "max",
    font_size: float | None = None,
    separator: str = " ",
    legend: bool = True,
    title: str | None = None,
) -> str:
    r"""The tokens as HTML, each on the colour of its relevance.

    Parameters
    ----------
    tokens : list of str
        One string per token, in order (HTML-escaped here; whitespace inside a token is kept).
    relevance : array or tensor
        One number per token: shape (T,) or (1, T). Sum the relevance of a token's embedding
        dimensions first (``R.sum(-1)``) to get it.
    cmap : str or Colormap, default "bwr"
        A diverging colormap whose centre means zero.
    normalize : "max", "sum" or float, default "max"
        The colour limit v of the symmetric range :math:`[-v, v]`: the largest
        :math:`|R_t|` ("max", the strongest token is fully saturated), :math:`\sum_t |R_t|`
        ("sum", each token's share of all relevance), or a number (the same scale for
        several texts). Relevance beyond v is drawn as at v.
    font_size : float, optional
        Text size in CSS pixels; default 16, times the scale in lecture mode.
    separator : str, default " "
        Put between tokens ("" for sub-word tokens that carry their own spaces).
    legend : bool, default True
        Add a colour bar from −v to +v under the text.
    title : str, optional
        A line above the text.

    Returns
    -------
    str
        An HTML fragment (a ``<div>``); every token's ``title`` shows its relevance on hover.

    Examples
    --------
    >>> html = token_heatmap_html(["a", "b"], [2.0, -1.0], legend=False)
    >>> html.count("<span"), "#ff0000" in html
    (2, True)
    """
    words = _tokens(tokens)
    R = vector(relevance, "relevance") if words else np.zeros(0)
    if R.size != len(words):
        raise InputError(
            f"relevance has {R.size} values but there are {len(words)} tokens; pass one "
            "relevance per token (sum over the embedding dimensions: R.sum(-1))."
        )
    if not isinstance(separator, str):
        raise InputError(f"separator must be a string, got {type(separator).__name__}.")
    if font_size is None:
        font_px = BASE_FONT_PX * style.current().scale
    elif isinstance(font_size, bool) or not isinstance(font_size, int | float) or font_size <= 0:
        raise InputError(f"font_size must be a number of pixels > 0, got {font_size!r}.")
    else:
        font_px = float(font_size)
    v = _limit(R, normalize)
    cm = colormap(cmap)
    colors = token_colors(R, cmap=cm, normalize=v) if words else []
    spans = []
    for word, value, color in zip(words, R, colors, strict=True):
        ink = "white" if abs(value) > 0.6 * v else "black"
        spans.append(
            f'<span class="lrp-token" style="background-color:{color};color:{ink};'
            f'padding:0.1em 0.15em;border-radius:0.2em;white-space:pre-wrap" '
            f'title="R = {_escape(number(float(value)))}">{_escape(word)}</span>'
        )
    weight = "bold" if style.current().lecture else "normal"
    parts = [
        f'<div class="lrp-token-heatmap" style="font-size:{font_px:.1f}px;line-height:1.9;'
        f'font-weight:{weight};color:black;background:white;padding:0.3em">'
    ]
    if title:
        parts.append(f'<div style="font-weight:bold">{_escape(title)}</div>')
    parts.append(f"<div>{_escape(separator).join(spans)}</div>")
    if legend:
        parts.append(_legend(cm, v, font_px))
    parts.append("</div>")
    return "".join(parts)


@dataclass(frozen=True)
class TokenHeatmap:
    """Tokens with their relevance, shown by Jupyter as coloured text (``_repr_html_``).

    ``str()`` gives a plain-text version: each token with its relevance.
    """

    tokens: tuple[str, ...]
    relevance: np.ndarray
    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return " ".join(
            f"{t}({number(float(r))})" for t, r in zip(self.tokens, self.relevance, strict=True)
        )

    def __repr__(self) -> str:
        return f"TokenHeatmap({len(self.tokens)} tokens: {self})"


def token_heatmap(tokens: Sequence[str], relevance: Any, **kwargs: Any) -> TokenHeatmap:
    """:func:`token_heatmap_html` as an object that a notebook cell shows as coloured text.

    >>> view = token_heatmap(["good", "bad"], [1.0, -0.5])
    >>> str(view)
    'good(1) bad(−0.5)'
    """
    html = token_heatmap_html(tokens, relevance, **kwargs)
    words = tuple(_tokens(tokens))
    R = vector(relevance, "relevance") if words else np.zeros(0)
    return TokenHeatmap(words, R, html)
