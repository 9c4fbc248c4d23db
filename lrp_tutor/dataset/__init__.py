"""A whole data set explained into a Zarr store: resumable, and sharded under torchrun.

* :func:`explain_dataset` — every sample through :func:`lrp_tutor.explain`, chunk by chunk
* :func:`open_store` — reopen a store; :class:`RelevanceStore` reads it lazily

Run on several processes or GPUs with ``torchrun --nproc_per_node=K your_script.py`` or
``torchrun --nproc_per_node=K -m lrp_tutor explain-dataset …``: each process writes its own
chunks of the same store.

>>> import tempfile, torch
>>> from torch.utils.data import TensorDataset
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
>>> path = tempfile.mkdtemp() + "/demo.zarr"
>>> store = explain_dataset(net, TensorDataset(torch.randn(5, 4)), store=path, progress=False)
>>> open_store(path).target.shape
(5,)
"""

from .explain import explain_dataset
from .store import RelevanceStore, model_checksum, open_store

__all__ = ["explain_dataset", "open_store", "RelevanceStore", "model_checksum"]
