"""Widgets: thin ipywidgets shells over :mod:`lrp_tutor.viz`, the stepper and the fast path.

====================  =======================  ============================================
factory               class                    shows
====================  =======================  ============================================
``stepper``           :class:`StepperWidget`   one layer at a time, output → input: messages,
                                               aggregation, running conservation sum
``rule_explorer``     :class:`RuleExplorer`    the heatmap, re-explained live as ε, γ, α and
                                               the rule change
``neuron_inspector``  :class:`NeuronInspector` one neuron j: z_ij, R_{i←j}, stab(z_j)
``rule_comparison``   :class:`RuleComparison`  one heatmap per ticked rule
====================  =======================  ============================================

Every widget shows itself as the last expression of a cell (JupyterLab 4, Voila: standard
ipywidgets only, no custom JavaScript), has ``.widget`` (the ipywidgets box), ``.figure``
(the current matplotlib figure) and ``.save(path)`` for a plain terminal run, and takes
``scale=`` for lecture mode (default: follow :func:`lrp_tutor.viz.lecture_mode`).

>>> import torch
>>> from torch import nn
>>> import lrp_tutor.widgets as widgets
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
>>> explorer = widgets.rule_explorer(model, torch.ones(1, 2, 2))
>>> type(explorer.widget).__name__
'VBox'
"""

import warnings as _warnings
from typing import Any as _Any

from .clusters import ClusterBrowser
from .comparison import RuleComparison, rule_comparison
from .explorer import RuleExplorer, rule_explorer
from .inspecting import NeuronInspector, neuron_inspector
from .stepping import StepperWidget, stepper

__all__ = [
    "StepperWidget",
    "stepper",
    "RuleExplorer",
    "rule_explorer",
    "NeuronInspector",
    "neuron_inspector",
    "RuleComparison",
    "rule_comparison",
    "ClusterBrowser",
]


def __getattr__(name: str) -> _Any:
    """Old and look-alike names: ``compare_rules`` (now :func:`rule_comparison`, so that it is
    not confused with :func:`lrp_tutor.evaluate.compare_rules`) and ``inspector``."""
    if name == "compare_rules":
        _warnings.warn(
            "lrp_tutor.widgets.compare_rules is now lrp_tutor.widgets.rule_comparison (the "
            "widget); lrp_tutor.evaluate.compare_rules is the pixel-flipping table.",
            DeprecationWarning,
            stacklevel=2,
        )
        return rule_comparison
    if name == "inspector":
        raise AttributeError(
            "lrp_tutor.widgets has no 'inspector'; the neuron inspector is "
            "widgets.neuron_inspector(model, x)."
        )
    raise AttributeError(f"module 'lrp_tutor.widgets' has no attribute {name!r}")
