"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil

import pytest

from lrp_tutor.zoo import store


@pytest.fixture
def weights_copy(tmp_path):
    """A copy of the shipped weights folder (weights and manifest), free to damage."""
    folder = tmp_path / "weights"
    shutil.copytree(store.WEIGHTS_DIR, folder)
    return folder
