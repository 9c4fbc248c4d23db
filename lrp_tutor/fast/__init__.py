"""The fast path: LRP for batches, in one forward and one modified backward pass (torch).

>>> import torch
>>> from torch import nn
>>> from lrp_tutor.fast import explain
>>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
>>> explain(model, torch.randn(5, 4)).relevance.shape
torch.Size([5, 4])
"""

from .explainer import explain
from .explanation import Explanation
from .modules import Concat, Product, Sum

__all__ = ["explain", "Explanation", "Sum", "Concat", "Product"]
