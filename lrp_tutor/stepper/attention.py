r"""One attention layer, walked one head at a time (numpy, float64).

``nn.MultiheadAttention`` on one sample's tokens :math:`x` (shape (L, E)), self-attention,
head *h* with dimension :math:`d_h = E / H`; *i* is a query (output) token, *j* a key and
value token, *d* a dimension of the head:

.. math::

    q = x W_q^\top + b_q, \quad k = x W_k^\top + b_k, \quad v = x W_v^\top + b_v, \qquad
    S_{ij} = \mathrm{scale} \cdot \sum_d q_{id} k_{jd}, \quad
    A_{ij} = \frac{e^{S_{ij}}}{\sum_{j'} e^{S_{ij'}}}, \quad
    O_{id} = \sum_j A_{ij} v_{jd},

then the heads are concatenated and projected, :math:`y = O W_o^\top + b_o`. Relevance
flows back from :math:`R_y` in the order the operations ran:

* the **projections** are linear layers with the rule of ``nn.Linear``
  (:class:`~lrp_tutor.stepper.LayerStep`: Forward, Messages, Aggregation, Stabilization);
* :math:`A V`. **AttnLRP** (Achtibat et al. 2024): the uniform rule for a product of two
  activations, :math:`z_{ijd} = A_{ij} v_{jd}`, :math:`s_{id} = R_{O_{id}} /
  \mathrm{stab}(O_{id})`, half to each factor:

  .. math::

      R_{v_j \leftarrow o_i} = \tfrac12 \sum_d z_{ijd}\, s_{id}, \qquad
      R_{A_{ij}} = \tfrac12 \sum_d z_{ijd}\, s_{id} .

  **CP-LRP** (Ali et al. 2022): *A* is held constant, :math:`A V` is a linear map of the
  values and :math:`R_{v_j \leftarrow o_i} = \sum_d z_{ijd}\, s_{id}` takes it all;
* softmax (AttnLRP only): :math:`R_{S_{ij}} = S_{ij} (R_{A_{ij}} - A_{ij} \sum_{j'}
  R_{A_{ij'}})`, and the rest of each row is absorbed;
* the constant factor ``scale`` :math:`= 1/\sqrt{d_h}`, a linear map with one weight;
* :math:`Q K^\top`: the uniform rule again, :math:`z_{ijd} = q_{id} k_{jd}`,
  :math:`R_{q_{id}} = \tfrac12 \sum_j z_{ijd}\, s_{ij}`, :math:`R_{k_{jd}} = \tfrac12 \sum_i
  z_{ijd}\, s_{ij}` with :math:`s_{ij} = R_{P_{ij}} / \mathrm{stab}(P_{ij})`.

Every ε is the rule book's stabiliser, :math:`\mathrm{stab}(z) = z + \varepsilon\,
\mathrm{sign}(z)` with sign(0) = +1 (:meth:`lrp_tutor.rules.Part.stabilize`); which rule each
operation takes is :func:`lrp_tutor.composites.attention_rules`, as in the fast path. The
books close: :math:`\sum R_y = \sum R_x + \text{absorbed}`.

>>> import torch, lrp_tutor as lt
>>> torch.manual_seed(0) and None
>>> attention = torch.nn.MultiheadAttention(4, 2).eval()
>>> x = torch.randn(3, 4)
>>> walk = AttentionWalkthrough(attention).forward(x).backward(torch.ones(3, 4))
>>> walk.relevance.shape
(3, 4)
>>> books = walk.books()
>>> abs(books["R_out"] - books["R_in"] - books["absorbed"]) < 1e-10
True
>>> head = walk[0]
>>> head.messages.R_ij.shape  # R_{v_j ← o_i}: output token i (row) to value token j
(3, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import composites
from ..errors import InputError, RuleError, UnsupportedLayerError
from ..ledger import Ledger, LedgerEntry
from ..rules import Part, Rule, identity, safe_divide
from . import _format as f
from ._layers import LinearLayer, View, _numpy
from ._propagate import Propagation, modified_input, propagate
from .stages import TOLERANCE, _within
from .step import LayerStep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "AttentionWalkthrough",
    "AttentionHead",
    "QueryKey",
    "AttentionMatrix",
    "ValueMessages",
    "HeadBooks",
]


# --------------------------------------------------------------------------------------
# The linear maps of the layer, as stepper layers (so that propagate and LayerStep apply).


class Tokenwise(LinearLayer):
    r"""A projection applied to every token: :math:`z_{lj} = \sum_i x_{li} w_{ij} + b_j`,
    ``x`` of shape (L, n_in), ``w`` of shape (n_in, n_out) (Montavon's orientation).

    Its view of some outputs :math:`(l, j)` has as inputs all :math:`(l', i)` of the same
    tokens, with weight :math:`w_{ij}` where :math:`l' = l` and 0 elsewhere.
    """

    def __init__(self, name: str, module: nn.Module, w: np.ndarray, b: np.ndarray | None):
        super().__init__(name, module)
        self.w = w
        self.b = np.zeros(w.shape[1]) if b is None else b

    @property
    def label(self) -> str:
        return f"{self.name} (Linear in {type(self.module).__name__})"

    def apply(self, phi_x: np.ndarray, rho: Any) -> np.ndarray:
        return phi_x @ rho(self.w)

    def transpose(self, s: np.ndarray, rho: Any, in_shape: tuple) -> np.ndarray:
        return s @ rho(self.w).T

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        return np.broadcast_to(self.b, out_shape)

    def view(self, x: np.ndarray, outputs: np.ndarray) -> View:
        n_in, n_out = self.w.shape
        out_token, out_unit = np.divmod(outputs, n_out)
        tokens = np.unique(out_token)
        inputs = (tokens[:, None] * n_in + np.arange(n_in)).reshape(-1)
        in_token, in_unit = np.divmod(inputs, n_in)
        same = in_token[:, None] == out_token[None, :]
        w_ij = np.where(same, self.w[in_unit][:, out_unit], 0.0)
        return View(inputs, outputs, w_ij, self.b[out_unit])

    def default_focus(self, r_out: np.ndarray) -> np.ndarray:
        """The outputs of the token with the largest :math:`\\sum_j |R_{lj}|`."""
        token = int(np.argmax(np.abs(r_out).sum(axis=1)))
        n_out = r_out.shape[1]
        return token * n_out + np.arange(n_out)


class _Scale(LinearLayer):
    """The constant factor ``scale`` (element-wise, one weight): :math:`z = c\\,x`."""

    def __init__(self, c: float) -> None:
        super().__init__("scale", nn.Identity())
        self.c = np.asarray(c, dtype=np.float64)

    def apply(self, phi_x: np.ndarray, rho: Any) -> np.ndarray:
        return phi_x * rho(self.c)

    def transpose(self, s: np.ndarray, rho: Any, in_shape: tuple) -> np.ndarray:
        return s * rho(self.c)

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        return np.zeros(out_shape)


class _Mix(LinearLayer):
    """CP-LRP's :math:`O = A V` with *A* held constant: a linear map of the values *v*
    (L, d_h) with the weights :math:`A_{ij}` (the same for every dimension *d*)."""

    def __init__(self, A: np.ndarray) -> None:
        super().__init__("A·V", nn.Identity())
        self.A = A

    def apply(self, phi_x: np.ndarray, rho: Any) -> np.ndarray:
        return rho(self.A) @ phi_x

    def transpose(self, s: np.ndarray, rho: Any, in_shape: tuple) -> np.ndarray:
        return rho(self.A).T @ s

    def bias_map(self, out_shape: tuple) -> np.ndarray:
        return np.zeros(out_shape)


def _products_part(rule: Rule | None) -> Part | None:
    """The part whose ε stabilises the uniform rule (the fast path's ``rule.parts[0]``)."""
    return rule.parts[0] if rule is not None and rule.parts else None


def _uniform(a: np.ndarray, b: np.ndarray, r: np.ndarray, part: Part | None) -> dict:
    r"""The uniform rule for :math:`z = a b` (matrices): :math:`s = R / \mathrm{stab}(z)`,
    :math:`R_a = \tfrac12 a \odot (s b^\top)`, :math:`R_b = \tfrac12 b \odot (a^\top s)`;
    ``absorbed`` (shape of z): :math:`R - z s`, what ε took (all of R where stab(z) = 0)."""
    z = a @ b
    epsilon = 0.0 if part is None else part.epsilon
    denominator = z if part is None else part.stabilize(z, epsilon=epsilon)
    s = safe_divide(r, denominator)
    return {
        "z": z,
        "epsilon": float(epsilon),
        "denominator": denominator,
        "s": s,
        "R_a": 0.5 * a * (s @ b.T),
        "R_b": 0.5 * b * (a.T @ s),
        "absorbed": r - z * s,
    }


# --------------------------------------------------------------------------------------
# The stages of one head.


def _token_labels(n: int) -> list[str]:
    return [str(t) for t in range(n)]


def _matrix_table(values: np.ndarray, row: str, column: str) -> str:
    """An HTML table of a small (L, L) matrix, rows and columns labelled by token."""
    n_rows, n_cols = values.shape
    rows = min(n_rows, f.MAX_ROWS)
    cols = min(n_cols, f.MAX_ROWS)
    header = [f"{row} \\ {column}"] + _token_labels(cols)
    body = [[str(r)] + [f.num(values[r, c]) for c in range(cols)] for r in range(rows)]
    note = f.more(rows, n_rows, f"rows ({row})") + f.more(cols, n_cols, f"columns ({column})")
    return f.table(header, body) + note


def _draw_matrices(panels: list[tuple[str, np.ndarray]], title: str, ax: Any = None) -> Figure:
    """Token × token matrices side by side (rows: tokens i, columns: tokens j), each on a
    symmetric red–blue scale, the numbers written in when there are at most 8 tokens."""
    from ..viz._axes import new_figure  # closed in pyplot: Jupyter shows it once

    if ax is None:
        n = panels[0][1].shape[0]
        size = max(2.6, 0.5 * n + 1.4)
        figure = new_figure(size * len(panels) + 1, size)
        axes = np.atleast_1d(figure.subplots(1, len(panels)))
    else:
        axes = np.atleast_1d(ax)
        if axes.size != len(panels):
            raise InputError(f"ax must be {len(panels)} axes, one per panel; got {axes.size}.")
        figure = axes[0].figure
    for axis, (name, values) in zip(axes, panels, strict=True):
        limit = f.worst(values[np.isfinite(values)]) or 1.0
        image = axis.imshow(values, cmap="bwr", vmin=-limit, vmax=limit)
        axis.set_title(name)
        axis.set_xlabel("token j")
        axis.set_ylabel("token i")
        n_rows, n_cols = values.shape
        axis.set_xticks(range(n_cols))
        axis.set_yticks(range(n_rows))
        if max(n_rows, n_cols) <= 8:
            for r in range(n_rows):
                for c in range(n_cols):
                    axis.text(c, r, f.num(values[r, c]), ha="center", va="center", fontsize=7)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.suptitle(title)
    return figure


class _HeadStage:
    """Base class of a head's stages: a title, a repr, an HTML view, a check, a plot."""

    title = "Stage"

    def __init__(self, head: AttentionHead) -> None:
        self.head = head
        self.method = head.method

    @property
    def _where(self) -> str:
        return f"head {self.head.index} · {self.method}"

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        raise NotImplementedError

    def check(self, tolerance: float = TOLERANCE) -> str:
        raise NotImplementedError

    def _summary(self) -> str:
        raise NotImplementedError

    def _html_body(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.title} · {self._where} · {self._summary()}>"

    def _repr_html_(self) -> str:
        return f.box(f"{self.title} · {self._where}", self._html_body(), f.para(self.check()))


class QueryKey(_HeadStage):
    r"""Queries and keys of one head: the scores and the relevance they send back.

    Attributes
    ----------
    q_id, k_jd : ndarray, shape (L, d_h)
        The head's queries and keys.
    scale : float
        :math:`1/\sqrt{d_h}`.
    z_ijd : ndarray, shape (L, L, d_h)
        :math:`z_{ijd} = q_{id} k_{jd}`, the contribution of dimension *d* to the score.
    P_ij : ndarray, shape (L, L)
        :math:`P_{ij} = \sum_d z_{ijd}`.
    S_ij : ndarray, shape (L, L)
        :math:`S_{ij} = \mathrm{scale} \cdot P_{ij}` (−inf where masked).
    R_S : ndarray, shape (L, L)
        The relevance at the scores (from the softmax rule; 0 under CP-LRP).
    R_P : ndarray, shape (L, L)
        The relevance at :math:`P_{ij}` after the constant factor's rule.
    denominator : ndarray, shape (L, L)
        :math:`\mathrm{stab}(P_{ij})` of the uniform rule.
    R_qd, R_kd : ndarray, shape (L, L, d_h)
        What the uniform rule sends to :math:`q_{id}` and to :math:`k_{jd}` from score
        *(i, j)*: :math:`\tfrac12 z_{ijd} R_{P_{ij}} / \mathrm{stab}(P_{ij})` each.
    R_q, R_k : ndarray, shape (L, d_h)
        :math:`R_{q_{id}} = \sum_j` and :math:`R_{k_{jd}} = \sum_i` of those halves.
    scale_absorbed, product_absorbed : ndarray, shape (L, L)
        What the constant factor's ε and the uniform rule's ε kept, per score.
    """

    title = "Queries and keys"

    def __init__(self, head: AttentionHead, data: dict) -> None:
        super().__init__(head)
        self.q_id, self.k_jd, self.scale = data["q"], data["k"], data["scale"]
        self.z_ijd = self.q_id[:, None, :] * self.k_jd[None, :, :]
        self.P_ij, self.S_ij = data["P"], data["S"]
        self.R_S, self.R_P = data["R_S"], data["R_P"]
        qk = data["qk"]
        self.epsilon = qk["epsilon"]
        self.denominator = qk["denominator"]
        self.R_qd = 0.5 * self.z_ijd * qk["s"][:, :, None]
        self.R_kd = self.R_qd.copy()
        self.R_q, self.R_k = qk["R_a"], qk["R_b"].T
        self.scale_absorbed = data["scale_absorbed"]
        self.product_absorbed = qk["absorbed"]
        self.residual = float(
            self.R_S.sum()
            - self.R_q.sum()
            - self.R_k.sum()
            - self.scale_absorbed.sum()
            - self.product_absorbed.sum()
        )

    @property
    def held(self) -> bool:
        """Whether no relevance reaches queries and keys (CP-LRP)."""
        return self.method == "cp_lrp"

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return _within(np.array([self.residual]), np.array([self.R_S.sum()]), tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        if self.held:
            return "CP-LRP holds A constant: no relevance reaches the scores, queries or keys."
        books = (
            f"Σ R_S = Σ R_q + Σ R_k + scale's ε + product's ε: {f.num(self.R_S.sum())} = "
            f"{f.num(self.R_q.sum())} + {f.signed(self.R_k.sum())} + "
            f"{f.signed(self.scale_absorbed.sum())} + {f.signed(self.product_absorbed.sum())}, "
            f"difference {abs(self.residual):.2g}"
        )
        return books + "." if self.holds(tolerance) else "Conservation fails: " + books + "."

    def _summary(self) -> str:
        return (
            f"q {self.q_id.shape}, k {self.k_jd.shape}, scale {f.num(self.scale)}, "
            f"Σ R_q {f.num(self.R_q.sum())}, Σ R_k {f.num(self.R_k.sum())}"
        )

    def _html_body(self) -> str:
        formula = (
            "S_ij = scale · Σ_d q_id·k_jd;  z_ijd = q_id·k_jd;  "
            "R_{q_id} = ½ Σ_j z_ijd / stab(P_ij) · R_{P_ij},  "
            "R_{k_jd} = ½ Σ_i z_ijd / stab(P_ij) · R_{P_ij}"
        )
        blocks = [f.para(formula), f.para("Scores S_ij:"), _matrix_table(self.S_ij, "i", "j")]
        if not self.held:
            blocks += [
                f.para("Relevance at the scores R_{S_ij} (from the softmax rule):"),
                _matrix_table(self.R_S, "i", "j"),
                f.para("Relevance per query token Σ_d R_{q_id} and key token Σ_d R_{k_jd}:"),
                f.table(
                    ["token", "Σ_d R_q", "Σ_d R_k"],
                    [
                        [str(t), f.num(self.R_q[t].sum()), f.num(self.R_k[t].sum())]
                        for t in range(min(self.R_q.shape[0], f.MAX_ROWS))
                    ],
                ),
            ]
        return "".join(blocks)

    def plot(self, *, ax: Any = None) -> Figure:
        """The scores :math:`S_{ij}` beside the relevance :math:`R_{S_{ij}}` they receive."""
        return _draw_matrices(
            [("scores $S_{ij}$", self.S_ij), ("relevance $R_{S_{ij}}$", self.R_S)],
            f"queries and keys · {self._where}",
            ax,
        )


class AttentionMatrix(_HeadStage):
    r"""The attention matrix of one head and the softmax rule.

    Attributes
    ----------
    S_ij : ndarray, shape (L, L)
        The scores (−inf where masked).
    A_ij : ndarray, shape (L, L)
        :math:`A_{ij} = e^{S_{ij}} / \sum_{j'} e^{S_{ij'}}`; every row sums to 1.
    R_A : ndarray, shape (L, L)
        The relevance at *A* (AttnLRP: the half of the :math:`AV` product; CP-LRP: 0, *A* is
        held constant).
    R_S : ndarray, shape (L, L)
        The softmax rule's input relevance :math:`R_{S_{ij}} = S_{ij}(R_{A_{ij}} - A_{ij}
        \sum_{j'} R_{A_{ij'}})` (0 where masked).
    absorbed : ndarray, shape (L,)
        What softmax absorbed per query token *i*: :math:`\sum_j R_{A_{ij}} - \sum_j
        R_{S_{ij}}`.
    """

    title = "Attention matrix"

    def __init__(self, head: AttentionHead, data: dict) -> None:
        super().__init__(head)
        self.S_ij, self.A_ij = data["S"], data["A"]
        self.R_A, self.R_S = data["R_A"], data["R_S"]
        self.absorbed = self.R_A.sum(axis=1) - self.R_S.sum(axis=1)

    @property
    def held(self) -> bool:
        """Whether *A* is held constant (CP-LRP)."""
        return self.method == "cp_lrp"

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return _within(self.A_ij.sum(axis=1) - 1.0, np.ones(1), tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        rows = f"every row of A sums to 1 (worst {f.worst(self.A_ij.sum(axis=1) - 1):.2g})"
        if self.held:
            return f"{rows}; CP-LRP holds A constant, so softmax passes no relevance on."
        return (
            f"{rows}; softmax absorbed Σ_i (Σ_j R_A_ij − Σ_j R_S_ij) = "
            f"{f.num(self.R_A.sum())} − {f.signed(self.R_S.sum())} = "
            f"{f.num(self.absorbed.sum())}."
        )

    def _summary(self) -> str:
        held = ", held constant (CP-LRP)" if self.held else f", Σ R_A {f.num(self.R_A.sum())}"
        return f"A {self.A_ij.shape}, rows sum to 1{held}"

    def _html_body(self) -> str:
        blocks = [
            f.para("A_ij = exp(S_ij) / Σ_j' exp(S_ij')  (row i: where query token i looks)"),
            _matrix_table(self.A_ij, "i", "j"),
        ]
        if self.held:
            blocks.append(f.para("CP-LRP: A is held constant; all relevance goes to the values."))
            return "".join(blocks)
        blocks += [
            f.para("Relevance at A (the half of A·V's uniform rule), R_{A_ij}:"),
            _matrix_table(self.R_A, "i", "j"),
            f.para("Softmax rule: R_{S_ij} = S_ij (R_{A_ij} − A_ij Σ_j' R_{A_ij'})"),
            _matrix_table(self.R_S, "i", "j"),
            f.table(
                ["i", "Σ_j R_A", "Σ_j R_S", "absorbed"],
                [
                    [
                        str(i),
                        f.num(self.R_A[i].sum()),
                        f.num(self.R_S[i].sum()),
                        f.num(self.absorbed[i]),
                    ]
                    for i in range(min(self.A_ij.shape[0], f.MAX_ROWS))
                ],
            ),
        ]
        return "".join(blocks)

    def plot(self, *, ax: Any = None) -> Figure:
        """The attention matrix :math:`A_{ij}` (and, under AttnLRP, :math:`R_{S_{ij}}`)."""
        panels = [("attention $A_{ij}$", self.A_ij)]
        if not self.held:
            panels.append(("softmax rule $R_{S_{ij}}$", self.R_S))
        return _draw_matrices(panels, f"attention matrix · {self._where}", ax)


class ValueMessages(_HeadStage):
    r"""The messages through :math:`O = A V`: output token *i* to value token *j*.

    Attributes
    ----------
    A_ij : ndarray, shape (L, L)
        The attention matrix.
    v_jd : ndarray, shape (L, d_h)
        The head's values.
    z_ijd : ndarray, shape (L, L, d_h)
        :math:`z_{ijd} = A_{ij} v_{jd}`.
    O_id : ndarray, shape (L, d_h)
        :math:`O_{id} = \sum_j z_{ijd}`, the head's output.
    R_O : ndarray, shape (L, d_h)
        The relevance at the head's output (from the output projection).
    denominator : ndarray, shape (L, d_h)
        :math:`\mathrm{stab}(O_{id})`.
    R_ij : ndarray, shape (L, L)
        :math:`R_{v_j \leftarrow o_i} = \sum_d R_{v_{jd} \leftarrow o_{id}}`, what output token
        *i* (row) sends to value token *j* (column): :math:`\tfrac12 \sum_d z_{ijd}
        R_{O_{id}} / \mathrm{stab}(O_{id})` under AttnLRP, all of it under CP-LRP.
    R_A : ndarray, shape (L, L)
        What goes to :math:`A_{ij}` (AttnLRP: the other half, equal to ``R_ij``; CP-LRP: 0).
    R_v : ndarray, shape (L, d_h)
        :math:`R_{v_{jd}}`; :math:`\sum_d R_{v_{jd}} = \sum_i R_{v_j \leftarrow o_i}`.
    absorbed : ndarray, shape (L,)
        What ε absorbed per output token *i*.
    """

    title = "Messages through A·V"

    def __init__(self, head: AttentionHead, data: dict) -> None:
        super().__init__(head)
        self.A_ij, self.v_jd = data["A"], data["v"]
        self.z_ijd = self.A_ij[:, :, None] * self.v_jd[None, :, :]
        self.O_id, self.R_O = data["O"], data["R_O"]
        av = data["av"]
        self.epsilon, self.denominator = av["epsilon"], av["denominator"]
        self.R_ij, self.R_A, self.R_v = av["R_ij"], av["R_A"], av["R_v"]
        self.absorbed = av["absorbed"]
        self.residual = self.R_O.sum(axis=1) - self.R_ij.sum(axis=1) - self.R_A.sum(axis=1)
        self.residual = self.residual - self.absorbed

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        sent = self.R_ij.sum(axis=0) - self.R_v.sum(axis=1)
        return _within(self.residual, self.R_O.sum(axis=1), tolerance) and _within(
            sent, self.R_v.sum(axis=1), tolerance
        )

    def check(self, tolerance: float = TOLERANCE) -> str:
        what = (
            "Σ_j R_{v_j←o_i} + Σ_j R_A_ij + ε"
            if self.method == "attn_lrp"
            else ("Σ_j R_{v_j←o_i} + ε")
        )
        n = self.R_O.shape[0]
        if self.holds(tolerance):
            return (
                f"{what} = Σ_d R_O_id for all {n} output tokens (worst difference "
                f"{f.worst(self.residual):.2g}); the value tokens receive Σ_i R_{{v_j←o_i}}."
            )
        i = int(np.argmax(np.abs(self.residual)))
        return f"Conservation fails at output token {i}: residual {f.num(self.residual[i])}."

    def _summary(self) -> str:
        return (
            f"R_ij {self.R_ij.shape}, Σ R_O {f.num(self.R_O.sum())}, "
            f"to values {f.num(self.R_ij.sum())}, to A {f.num(self.R_A.sum())}, "
            f"ε {f.num(self.absorbed.sum())}"
        )

    def _html_body(self) -> str:
        if self.method == "attn_lrp":
            formula = (
                "z_ijd = A_ij·v_jd;  R_{v_j←o_i} = ½ Σ_d z_ijd / stab(O_id) · R_{O_id}  "
                "(uniform rule; the other half goes to A_ij)"
            )
        else:
            formula = (
                "z_ijd = A_ij·v_jd, A held constant;  "
                "R_{v_j←o_i} = Σ_d z_ijd / stab(O_id) · R_{O_id}"
            )
        rows = [
            [
                str(i),
                f.num(self.R_O[i].sum()),
                f.num(self.R_ij[i].sum()),
                f.num(self.R_A[i].sum()),
                f.num(self.absorbed[i]),
            ]
            for i in range(min(self.R_O.shape[0], f.MAX_ROWS))
        ]
        return "".join(
            [
                f.para(formula),
                f.para("Messages R_{v_j←o_i} (row: output token i, column: value token j):"),
                _matrix_table(self.R_ij, "i", "j"),
                f.table(["i", "Σ_d R_O", "to values", "to A", "ε absorbed"], rows),
            ]
        )

    def plot(self, *, ax: Any = None) -> Figure:
        """The attention matrix :math:`A_{ij}` beside the messages
        :math:`R_{v_j \\leftarrow o_i}`."""
        return _draw_matrices(
            [("attention $A_{ij}$", self.A_ij), ("messages $R_{v_j \\leftarrow o_i}$", self.R_ij)],
            f"messages through A·V · {self._where}",
            ax,
        )


class HeadBooks(_HeadStage):
    r"""The books of one head: what came in, what went out, what was absorbed where.

    .. math::

        \sum_{id} R_{O_{id}} = \sum R_q + \sum R_k + \sum R_v + \text{ε of } AV
        + \text{softmax} + \text{ε of the scale} + \text{ε of } QK^\top

    Attributes
    ----------
    R_out : float
        :math:`\sum R_O` (the head's share of the output projection's input relevance).
    R_q, R_k, R_v : float
        What reached the head's queries, keys and values.
    absorbed : dict
        ``{"A·V": …, "softmax": …, "scale": …, "QKᵀ": …}``.
    residual : float
        ``R_out`` minus all of the above (zero up to rounding).
    """

    title = "Books"

    def __init__(self, head: AttentionHead) -> None:
        super().__init__(head)
        qk, att, av = head.query_key, head.attention, head.messages
        self.R_out = float(av.R_O.sum())
        self.R_q, self.R_k, self.R_v = float(qk.R_q.sum()), float(qk.R_k.sum()), float(av.R_v.sum())
        self.absorbed = {
            "A·V": float(av.absorbed.sum()),
            "softmax": float(att.absorbed.sum()),
            "scale": float(qk.scale_absorbed.sum()),
            "QKᵀ": float(qk.product_absorbed.sum()),
        }
        self.residual = self.R_out - self.R_q - self.R_k - self.R_v - sum(self.absorbed.values())

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return _within(np.array([self.residual]), np.array([self.R_out]), tolerance)

    def check(self, tolerance: float = TOLERANCE) -> str:
        parts = " + ".join(f"{f.signed(v)} ({k})" for k, v in self.absorbed.items())
        books = (
            f"Σ R_O = Σ R_q + Σ R_k + Σ R_v + absorbed: {f.num(self.R_out)} = "
            f"{f.num(self.R_q)} + {f.signed(self.R_k)} + {f.signed(self.R_v)} + {parts}, "
            f"difference {abs(self.residual):.2g}"
        )
        return books + "." if self.holds(tolerance) else "Conservation fails: " + books + "."

    def _summary(self) -> str:
        return (
            f"Σ R_O {f.num(self.R_out)} → q {f.num(self.R_q)}, k {f.num(self.R_k)}, "
            f"v {f.num(self.R_v)}, absorbed {f.num(sum(self.absorbed.values()))}"
        )

    def _html_body(self) -> str:
        rows = [["Σ R_O (in from the output projection)", f.num(self.R_out)]]
        rows += [
            [f"to the {w}", f.num(v)]
            for w, v in (("queries", self.R_q), ("keys", self.R_k), ("values", self.R_v))
        ]
        rows += [[f"absorbed by {k}", f.num(v)] for k, v in self.absorbed.items()]
        return f.table(["", "relevance"], rows)

    def plot(self, *, ax: Any = None) -> Figure:
        """Bars: what the head received, where it went and what was absorbed."""
        from .. import viz

        labels = ["Σ R_O", "q", "k", "v", *self.absorbed]
        values = [self.R_out, self.R_q, self.R_k, self.R_v, *self.absorbed.values()]
        return viz.bars(
            np.array(values),
            labels=labels,
            ax=ax,
            title=f"books · {self._where}",
            ylabel="relevance",
            xlabel="",
        )


class AttentionHead:
    """One head's stages: :attr:`query_key`, :attr:`attention`, :attr:`messages`,
    :attr:`books` (in forward order); ``check()`` says whether its books close."""

    def __init__(self, index: int, method: str, data: dict) -> None:
        self.index = index
        self.method = method
        self.query_key = QueryKey(self, data)
        self.attention = AttentionMatrix(self, data)
        self.messages = ValueMessages(self, data)
        self.books = HeadBooks(self)

    @property
    def stages(self) -> tuple[QueryKey, AttentionMatrix, ValueMessages, HeadBooks]:
        return self.query_key, self.attention, self.messages, self.books

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        return all(s.holds(tolerance) for s in self.stages)

    def check(self, tolerance: float = TOLERANCE) -> str:
        return "\n".join(f"{s.title}: {s.check(tolerance)}" for s in self.stages)

    def plot(self, *, ax: Any = None) -> Figure:
        """The attention matrix beside the messages :math:`R_{v_j \\leftarrow o_i}`."""
        return self.messages.plot(ax=ax)

    def __repr__(self) -> str:
        return f"<AttentionHead {self.index} · {self.method} · {self.books._summary()}>"

    def _repr_html_(self) -> str:
        return f.box(
            f"Head {self.index} · {self.method}",
            f.para("Stages: .query_key, .attention, .messages, .books"),
            "".join(f.para(line) for line in self.check().splitlines()),
        )


# --------------------------------------------------------------------------------------
# The walkthrough.


class AttentionWalkthrough:
    r"""LRP through one ``nn.MultiheadAttention`` (self-attention), one head at a time.

    Parameters
    ----------
    attention : nn.MultiheadAttention
        The layer; its weights are copied once to float64 numpy, the module is only read.
        Not supported (refused with the reason): ``add_bias_kv``, ``add_zero_attn``,
        ``kdim``/``vdim`` other than ``embed_dim``, attention dropout in train mode.
    composite : Composite, optional
        :func:`~lrp_tutor.composites.attn_lrp` (the default) or
        :func:`~lrp_tutor.composites.cp_lrp`, or any composite whose ``attention`` is one of
        them; the rules of the projections, the scale and the products are those the fast
        path gives (:func:`~lrp_tutor.composites.attention_rules`). A relative ε is refused.

    Attributes
    ----------
    output : ndarray, shape (L, E)
        The layer's output (after :meth:`forward`).
    relevance : ndarray, shape (L, E)
        :math:`R_x = R_x^{(q)} + R_x^{(k)} + R_x^{(v)}`, the relevance at the input tokens (after
        :meth:`backward`); ``relevance_query``, ``relevance_key``, ``relevance_value`` are the
        three terms.
    heads : list of AttentionHead
        Per head its stages; also ``walk[h]`` and ``walk.head(h)``.
    projections : dict of str to LayerStep
        ``"out"``, ``"q"``, ``"k"``, ``"v"``: the linear projections, with the stepper's
        Forward, Messages, Aggregation and Stabilization stages.
    ledger : Ledger
        Σ R_out, Σ R_in and what was absorbed, per operation.

    Examples
    --------
    >>> import torch, lrp_tutor as lt
    >>> torch.manual_seed(1) and None
    >>> mha = torch.nn.MultiheadAttention(4, 1, bias=False).eval()
    >>> walk = AttentionWalkthrough(mha, lt.composites.cp_lrp(epsilon=0.0))
    >>> walk = walk.forward(torch.randn(2, 4)).backward(torch.ones(2, 4))
    >>> round(float(walk.relevance.sum()), 8)  # no bias, ε = 0: all of Σ R_out = 8
    8.0
    >>> float(walk[0].query_key.R_q.sum())  # A held constant: nothing reaches the queries
    0.0
    """

    def __init__(self, attention: nn.MultiheadAttention, composite: Any = None) -> None:
        if not isinstance(attention, nn.MultiheadAttention):
            raise InputError(
                f"AttentionWalkthrough walks an nn.MultiheadAttention, got "
                f"{type(attention).__name__}. For a network of Linear/Conv layers use "
                "Walkthrough(model)."
            )
        _check_options(attention)
        composite = composites.attn_lrp() if composite is None else composite
        if not isinstance(composite, composites.Composite):
            raise InputError(
                f"composite must be a Composite such as lt.composites.attn_lrp() or "
                f"lt.composites.cp_lrp(), got {type(composite).__name__}."
            )
        self.composite = composite
        self.method = composite.attention
        self.rules = composites.attention_rules(composite, attention)
        _check_rules(self.rules, self.method)
        self.module = attention
        self.num_heads = attention.num_heads
        self.embed_dim = attention.embed_dim
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = 1.0 / float(np.sqrt(self.head_dim))
        w = _numpy(attention.in_proj_weight)
        b = _numpy(attention.in_proj_bias)
        bq = bk = bv = None
        if b is not None:
            bq, bk, bv = np.split(b, 3)
        wq, wk, wv = np.split(w, 3)
        self.layers = {
            "q": Tokenwise("W_q", attention, wq.T.copy(), bq),
            "k": Tokenwise("W_k", attention, wk.T.copy(), bk),
            "v": Tokenwise("W_v", attention, wv.T.copy(), bv),
            "out": Tokenwise(
                "out_proj",
                attention,
                _numpy(attention.out_proj.weight).T.copy(),
                _numpy(attention.out_proj.bias),
            ),
        }
        self._forward: dict | None = None
        self._reset()

    def _reset(self) -> None:
        self.relevance: np.ndarray | None = None
        self.relevance_query = self.relevance_key = self.relevance_value = None
        self.heads: list[AttentionHead] = []
        self.projections: dict[str, LayerStep] = {}
        self.ledger: Ledger | None = None

    # ----------------------------------------------------------------------------------
    def forward(
        self, x: Any, *, causal: bool = False, attn_mask: Any = None
    ) -> AttentionWalkthrough:
        """Run one sample's tokens ``x`` (shape (L, E), or (1, L, E)) through the layer.

        ``causal=True`` lets token *i* attend to tokens :math:`j \\le i` only; ``attn_mask``
        is a boolean (L, L) array, True where attention is **not** allowed (as in torch).
        """
        x = _tokens(x, self.embed_dim, "x")
        length = x.shape[0]
        mask = np.zeros((length, length), dtype=bool)
        if attn_mask is not None:
            given = np.asarray(
                attn_mask.detach().cpu().numpy()
                if isinstance(attn_mask, torch.Tensor)
                else attn_mask
            )
            if given.dtype != bool or given.shape != (length, length):
                raise InputError(
                    f"attn_mask must be a boolean array of shape ({length}, {length}), True "
                    f"where token i may not attend to token j; got {given.dtype} {given.shape}. "
                    "An additive float mask is not supported here."
                )
            mask |= given
        if causal:
            mask |= np.triu(np.ones((length, length), dtype=bool), 1)
        if np.any(mask.all(axis=1)):
            raise InputError(
                "The mask leaves a query token nothing to attend to (a row all True); its "
                "attention weights would be NaN."
            )
        q, k, v = (self.layers[n].forward(x) for n in "qkv")
        heads = []
        outputs = []
        for h in range(self.num_heads):
            cut = slice(h * self.head_dim, (h + 1) * self.head_dim)
            P = q[:, cut] @ k[:, cut].T
            S = np.where(mask, -np.inf, self.scale * P)
            e = np.exp(S - S.max(axis=1, keepdims=True))
            A = e / e.sum(axis=1, keepdims=True)
            O = A @ v[:, cut]
            heads.append({"q": q[:, cut], "k": k[:, cut], "v": v[:, cut], "P": P, "S": S, "A": A})
            outputs.append(O)
        concatenated = np.concatenate(outputs, axis=1)
        output = self.layers["out"].forward(concatenated)
        self._forward = {
            "x": x,
            "q": q,
            "k": k,
            "v": v,
            "heads": heads,
            "O": concatenated,
            "y": output,
            "mask": mask,
        }
        self._reset()
        return self

    @property
    def output(self) -> np.ndarray:
        """The layer's output for the sample, shape (L, E)."""
        self._require_forward()
        return self._forward["y"]

    def _require_forward(self) -> None:
        if self._forward is None:
            raise InputError("Call walk.forward(x) first: there is no sample yet.")

    # ----------------------------------------------------------------------------------
    def backward(self, relevance: Any) -> AttentionWalkthrough:
        """Propagate ``relevance`` at the layer's output (shape (L, E)) back to the tokens."""
        self._require_forward()
        fw = self._forward
        r_y = _tokens(relevance, self.embed_dim, "relevance")
        if r_y.shape != fw["y"].shape:
            raise InputError(
                f"relevance has shape {r_y.shape}, but the output has shape {fw['y'].shape}."
            )
        rules = self.rules
        out_step = self._step(0, "out", fw["O"], fw["y"], r_y)
        r_o = out_step.relevance_in
        r_q, r_k, r_v = (np.zeros_like(fw[n]) for n in "qkv")
        heads, entries = [], [out_step.ledger_entry]
        product = _products_part(rules["product"])
        for h, data in enumerate(fw["heads"]):
            cut = slice(h * self.head_dim, (h + 1) * self.head_dim)
            data = dict(data, scale=self.scale, O=fw["O"][:, cut], R_O=r_o[:, cut])
            if self.method == "attn_lrp":
                av = _uniform(data["A"], data["v"], data["R_O"], product)
                data["av"] = {
                    "epsilon": av["epsilon"],
                    "denominator": av["denominator"],
                    "R_ij": av["R_a"],  # ½ Σ_d A_ij v_jd s_id, the same as A's half
                    "R_A": av["R_a"],
                    "R_v": av["R_b"],
                    "absorbed": av["absorbed"].sum(axis=1),
                }
                data["R_A"] = av["R_a"]
                finite = np.isfinite(data["S"])
                S = np.where(finite, data["S"], 0.0)
                r_a = data["R_A"]
                data["R_S"] = np.where(
                    finite, S * (r_a - data["A"] * r_a.sum(axis=1, keepdims=True)), 0.0
                )
            else:
                data["av"] = _mix(data["A"], data["v"], data["R_O"], rules["mix"])
                data["R_A"] = np.zeros_like(data["A"])
                data["R_S"] = np.zeros_like(data["A"])
            scale = propagate(_Scale(self.scale), rules["scale"], data["P"], data["R_S"])
            data["R_P"] = scale.R_in
            data["scale_absorbed"] = scale.bias + scale.stabilizer
            data["qk"] = _uniform(data["q"], data["k"].T, data["R_P"], product)
            head = AttentionHead(h, self.method, data)
            heads.append(head)
            r_q[:, cut] = head.query_key.R_q
            r_k[:, cut] = head.query_key.R_k
            r_v[:, cut] = head.messages.R_v
            entries += _head_entries(head)
        steps = {"out": out_step}
        for n, r in (("q", r_q), ("k", r_k), ("v", r_v)):
            y = fw[n]
            steps[n] = self._step(len(steps), n, fw["x"], y, r)
            entries.append(steps[n].ledger_entry)
        self.heads, self.projections = heads, steps
        self.relevance_query = steps["q"].relevance_in
        self.relevance_key = steps["k"].relevance_in
        self.relevance_value = steps["v"].relevance_in
        self.relevance = self.relevance_query + self.relevance_key + self.relevance_value
        self.ledger = Ledger(entries)
        self._relevance_out = r_y
        return self

    def _step(self, index: int, name: str, x: np.ndarray, a: np.ndarray, r: np.ndarray):
        layer, rule = self.layers[name], self.rules["projection"]
        return LayerStep(index, layer, rule, x, a, r, propagate(layer, rule, x, r))

    # ----------------------------------------------------------------------------------
    def _require_backward(self) -> None:
        if self.relevance is None:
            raise InputError("Call walk.backward(R_out) first: no relevance has flowed yet.")

    def head(self, h: int) -> AttentionHead:
        """The stages of head ``h``."""
        self._require_backward()
        if isinstance(h, bool) or not isinstance(h, int | np.integer):
            raise InputError(f"A head is an int from 0 to {self.num_heads - 1}, got {h!r}.")
        if not 0 <= int(h) < self.num_heads:
            raise InputError(
                f"Head {h} does not exist: the layer has {self.num_heads} heads "
                f"(0 … {self.num_heads - 1})."
            )
        return self.heads[int(h)]

    def __getitem__(self, h: int) -> AttentionHead:
        return self.head(h)

    def __len__(self) -> int:
        return self.num_heads

    def books(self) -> dict[str, float]:
        """The whole layer's books: ``R_out`` :math:`= \\sum R_y`, ``R_in`` :math:`=
        \\sum R_x`, ``absorbed`` (everything the projections, products, softmax and the
        scale kept) and ``residual`` = R_out − R_in − absorbed (zero up to rounding)."""
        self._require_backward()
        r_out = float(self._relevance_out.sum())
        r_in = float(self.relevance.sum())
        absorbed = float(sum(e.absorbed[0] for e in self.ledger))
        return {
            "R_out": r_out,
            "R_in": r_in,
            "absorbed": absorbed,
            "residual": r_out - r_in - absorbed,
        }

    def holds(self, tolerance: float = TOLERANCE) -> bool:
        """Whether every head, every projection and the whole layer's books close."""
        books = self.books()
        return (
            all(h.holds(tolerance) for h in self.heads)
            and all(s.holds(tolerance) for s in self.projections.values())
            and _within(np.array([books["residual"]]), np.array([books["R_out"]]), tolerance)
        )

    def check(self, tolerance: float = TOLERANCE) -> str:
        """The layer's books in words."""
        b = self.books()
        text = (
            f"Σ R_out = Σ R_in + absorbed: {f.num(b['R_out'])} = {f.num(b['R_in'])} + "
            f"{f.signed(b['absorbed'])}, difference {abs(b['residual']):.2g}"
        )
        return text + "." if self.holds(tolerance) else "Conservation fails: " + text + "."

    def __repr__(self) -> str:
        state = "no sample" if self._forward is None else (f"{self._forward['x'].shape[0]} tokens")
        if self.relevance is not None:
            b = self.books()
            state += (
                f", Σ R_out {f.num(b['R_out'])}, Σ R_in {f.num(b['R_in'])}, "
                f"absorbed {f.num(b['absorbed'])}"
            )
        return (
            f"<AttentionWalkthrough · {self.num_heads} heads of {self.head_dim} · "
            f"{self.composite!r} · {state}>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"AttentionWalkthrough · {self.num_heads} heads of {self.head_dim} · {self.composite!r}"
        )
        if self.relevance is None:
            return f.box(head, f.para("Call .forward(x) and .backward(R_out)."))
        return f.box(
            head,
            f.para(self.check()),
            f.para("See walk[h].query_key, .attention, .messages, .books; walk.projections."),
        )


def _mix(A: np.ndarray, v: np.ndarray, r_o: np.ndarray, rule: Rule) -> dict:
    r"""CP-LRP's :math:`O = A V` with *A* constant: the rule's messages
    :math:`R_{v_j \leftarrow o_i} = \sum_p c_p \sum_d z^p_{ijd} / \mathrm{stab}(z^p_{id})
    R_{O_{id}}` (the per-token view) and :func:`propagate`'s relevance and books."""
    layer = _Mix(A)
    whole: Propagation = propagate(layer, rule, v, r_o)
    R_ij = np.zeros(A.shape)
    denominator = None
    for p, part in enumerate(rule.parts):
        phis = [modified_input(term.input, v) for term in part.terms]
        z = sum(layer.apply(phi, term.weight) for phi, term in zip(phis, part.terms, strict=True))
        z = z + np.asarray(part.bias(np.zeros(z.shape)), dtype=np.float64)
        den = part.stabilize(z, epsilon=whole.epsilons[p])
        denominator = den if denominator is None else denominator
        s = safe_divide(r_o, den)
        for phi, term in zip(phis, part.terms, strict=True):
            R_ij += part.coefficient * term.weight(A) * (s @ phi.T)
    return {
        "epsilon": whole.epsilons[0] if whole.epsilons else 0.0,
        "denominator": denominator,
        "R_ij": R_ij,
        "R_A": np.zeros(A.shape),
        "R_v": whole.R_in,
        "absorbed": (whole.bias + whole.stabilizer).sum(axis=1),
    }


def _head_entries(head: AttentionHead) -> list[LedgerEntry]:
    qk, att, av = head.query_key, head.attention, head.messages
    name = f"head {head.index}"
    zero = 0.0
    entries = [
        LedgerEntry(
            f"{name} · A·V", av.R_O.sum(), av.R_v.sum() + av.R_A.sum(), zero, av.absorbed.sum()
        ),
        LedgerEntry(f"{name} · softmax", att.R_A.sum(), att.R_S.sum(), att.absorbed.sum(), zero),
        LedgerEntry(f"{name} · scale", qk.R_S.sum(), qk.R_P.sum(), zero, qk.scale_absorbed.sum()),
        LedgerEntry(
            f"{name} · QKᵀ",
            qk.R_P.sum(),
            qk.R_q.sum() + qk.R_k.sum(),
            zero,
            qk.product_absorbed.sum(),
        ),
    ]
    return entries


def _tokens(value: Any, embed_dim: int, name: str) -> np.ndarray:
    """A float64 (L, E) copy of one sample's tokens (a leading batch dimension of 1 dropped)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be a numpy array or a torch tensor of numbers.") from error
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[1] != embed_dim:
        raise InputError(
            f"{name} must hold one sample's tokens, shape (L, {embed_dim}) (or (1, L, "
            f"{embed_dim})); got shape {array.shape}. Walk one sample at a time."
        )
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinity.")
    return array


def _check_options(attention: nn.MultiheadAttention) -> None:
    """Refuse what the walkthrough does not show, saying what to do instead."""
    if attention.bias_k is not None or attention.bias_v is not None:
        raise UnsupportedLayerError(
            "The attention layer has add_bias_kv=True (a learned extra key and value); "
            "AttentionWalkthrough shows attention over the tokens only. Use lt.explain for it."
        )
    if attention.add_zero_attn:
        raise UnsupportedLayerError(
            "The attention layer has add_zero_attn=True; AttentionWalkthrough shows attention "
            "over the tokens only. Use lt.explain for it."
        )
    if not attention._qkv_same_embed_dim:
        raise UnsupportedLayerError(
            f"The attention layer has kdim={attention.kdim}, vdim={attention.vdim} besides "
            f"embed_dim={attention.embed_dim}; AttentionWalkthrough walks self-attention, "
            "where queries, keys and values come from the same tokens (kdim = vdim = embed_dim)."
        )
    if attention.training and attention.dropout > 0:
        raise UnsupportedLayerError(
            f"The attention layer drops attention weights at random (dropout={attention.dropout}) "
            "in train mode; call attention.eval() first."
        )


def _check_rules(rules: dict[str, Rule | None], method: str) -> None:
    for role, rule in rules.items():
        if rule is None:
            if role == "mix" and method != "cp_lrp":
                continue
            raise RuleError(
                f"The composite gives no rule for the attention's {role} (no default); give it "
                "one, e.g. lt.composites.attn_lrp() or Composite(default=Epsilon())."
            )
        if any(part.relative for part in rule.parts):
            raise RuleError(
                f"The {role} of the attention takes {rule!r}, a relative ε; "
                "AttentionWalkthrough supports a fixed ε only (Epsilon(epsilon))."
            )
    mix = rules["mix"]
    if method == "cp_lrp" and mix is not None:
        if any(t.weight is not identity for p in mix.parts for t in p.terms):
            raise RuleError(
                f"Under CP-LRP, A·V is a fixed linear map of the values with weights A; it takes "
                f"rules that do not modify weights (Epsilon, LRP0), not {mix!r}."
            )
