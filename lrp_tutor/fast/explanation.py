"""What :func:`~lrp_tutor.fast.explain` returns: relevance, logits, target, ledger.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_tutor.fast import explain
>>> from lrp_tutor.rules import LRP0
>>> model = nn.Sequential(nn.Linear(3, 2, bias=False)).eval()
>>> with torch.no_grad():
...     _ = model[0].weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]))
>>> e = explain(model, torch.tensor([[1.0, 1.0, 1.0]]), rule=LRP0())
>>> e.output, e.target  # class 0 wins with logit 3
(tensor([[3., 1.]]), tensor([0]))
>>> e.relevance  # R_i = x_i·w_i0 / z_0 · R_0, with R_0 = 3
tensor([[1., 2., 0.]])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..ledger import Ledger

__all__ = ["Explanation"]


@dataclass
class Explanation:
    """The explanation of a batch.

    Attributes
    ----------
    relevance : Tensor
        :math:`R_i` of every input, shape, dtype and device of ``x``.
    output : Tensor
        The logits :math:`f(x)`, shape (N, classes), detached.
    target : Tensor
        The explained class of each sample (LongTensor, shape (N,)).
    ledger : Ledger
        Per layer (forward order): Σ R_out, Σ R_in and what bias and ε absorbed, per sample.
    layers : dict of str to Tensor
        The relevance at each layer's input, keyed by module name (a tuple of tensors for
        layers with several inputs, e.g. ``Sum``); empty unless ``keep_layers=True``.
    composite : Composite
        The rules used.
    init : str
        ``"logit"`` (seed :math:`f_c(x)`) or ``"one"``.
    """

    relevance: Tensor
    output: Tensor
    target: Tensor
    ledger: Ledger
    layers: dict[str, Any] = field(default_factory=dict, repr=False)
    composite: Any = None
    init: str = "logit"

    def __post_init__(self) -> None:
        if self.ledger.dtype is None:  # the books were kept in the model's dtype
            self.ledger.dtype = self.output.dtype

    @property
    def total(self) -> Tensor:
        """:math:`\\sum_i R_i` per sample (≈ the target logit for a conservative rule)."""
        return self.relevance.reshape(self.relevance.shape[0], -1).sum(1)

    @property
    def seed(self) -> Tensor:
        """The relevance the backward pass started with, per sample."""
        picked = self.output.gather(1, self.target[:, None].to(self.output.device))[:, 0]
        return picked if self.init == "logit" else picked.new_ones(picked.shape)

    def plot(self, sample: int = 0, image: Any = None, **kwargs: Any) -> Any:
        """Draw the heatmap of one sample with :func:`lrp_tutor.viz.heatmap`."""
        from ..viz import heatmap

        relevance = self.relevance[sample].detach().cpu().numpy()
        if image is not None and hasattr(image, "detach"):
            image = image.detach().cpu().numpy()
        return heatmap(relevance, image=image, **kwargs)

    def __repr__(self) -> str:
        shape = tuple(self.relevance.shape)
        targets = self.target.tolist()
        shown = targets[:8] + (["…"] if len(targets) > 8 else [])
        totals = ", ".join(f"{v:.4g}" for v in self.total.tolist()[:4])
        more = ", …" if len(targets) > 4 else ""
        return (
            f"Explanation(relevance {shape}, target {shown}, Σ R = [{totals}{more}], "
            f"{len(self.ledger)} layers, {self.composite!r})"
        )
