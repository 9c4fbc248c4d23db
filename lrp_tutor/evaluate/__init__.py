r"""Evaluating explanations: pixel flipping / AOPC and the model randomisation check.

- :func:`pixel_flipping` removes the most relevant regions first and records the target
  logit; :math:`\mathrm{AOPC} = \frac{1}{L+1}\sum_{k=0}^{L}(f(x^{(0)}) - f(x^{(k)}))`
  (Samek et al. 2017). Larger is better; a random order is the floor.
- :func:`compare_rules` runs it for several rules or explainers and tabulates the AOPC.
- :func:`randomization_check` re-initialises a copy of the model layer by layer and flags
  an explainer whose explanation does not change (Adebayo et al. 2018).
- :func:`gradient` and :func:`gradient_x_input` are explainers to compare LRP against;
  :func:`spearman` and :func:`ssim` measure how alike two explanations are.

A *method* is a relevance map (shape of the input), a :class:`~lrp_tutor.rules.Rule` or
:class:`~lrp_tutor.composites.Composite` (explained by ``lrp_tutor.fast.explain``), or any
explainer ``explainer(model, x, target) -> relevance``.

Examples
--------
>>> import torch
>>> from lrp_tutor import evaluate
>>> model = torch.nn.Linear(4, 1, bias=False).double()
>>> with torch.no_grad():
...     _ = model.weight.copy_(torch.tensor([[0.0, 3.0, 0.0, 0.0]]))
>>> x = torch.ones(1, 4, dtype=torch.float64)
>>> evaluate.pixel_flipping(model, x, evaluate.gradient, target=0).aopc_mean
2.4
"""

from .baselines import gradient, gradient_x_input, random_relevance
from .compare import ComparisonResult, compare_rules
from .flipping import FlippingResult, gaussian_blur, pixel_flipping
from .randomization import RandomizationResult, randomization_check
from .similarity import rankdata, spearman, ssim

__all__ = [
    "pixel_flipping",
    "FlippingResult",
    "compare_rules",
    "ComparisonResult",
    "randomization_check",
    "RandomizationResult",
    "gradient",
    "gradient_x_input",
    "random_relevance",
    "spearman",
    "ssim",
    "rankdata",
    "gaussian_blur",
]
