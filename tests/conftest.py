"""Fixtures shared by several test files, and the torchvision shim."""

from __future__ import annotations

import shutil
import sys
import types

import pytest

from lrp_tutor.zoo import store

# torchvision's compiled operators (nms, roi_align…) do not load beside a torch build other
# than the one it was built for (here: the CPU build of torch 2.13). Its two modules that
# register them are stubbed before the first import, so that its pure-Python model code
# (torchvision.models) loads; the tests use nothing else of it. Users with a matching
# torchvision need none of this.
for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))


@pytest.fixture
def weights_copy(tmp_path):
    """A copy of the shipped weights folder (weights and manifest), free to damage."""
    folder = tmp_path / "weights"
    shutil.copytree(store.WEIGHTS_DIR, folder)
    return folder
