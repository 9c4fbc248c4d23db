"""Find, verify and read the weight files that ship with the package.

Every file in ``lrp_tutor/zoo/weights/`` is listed in ``manifest.json`` with its SHA-256
checksum. A file is read once, its checksum compared with the manifest, and only then
unpickled with ``torch.load(..., weights_only=True)`` from the very bytes that were checked.
Nothing is ever downloaded.

>>> sorted(read_manifest()["models"])[:3]
['clever_hans_cnn', 'digits_cnn', 'digits_mlp']
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Where the shipped weight files and their manifest live."""

MANIFEST = "manifest.json"

_FIX = (
    "Reinstall lrp_tutor (pip install --force-reinstall lrp_tutor), or, in a clone of the "
    "repository, regenerate the weights with `python scripts/train_zoo.py`."
)


def sha256_of(data: bytes) -> str:
    """The SHA-256 checksum of ``data`` as 64 hex digits.

    >>> sha256_of(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def read_manifest(weights_dir: str | Path | None = None) -> dict[str, Any]:
    """The manifest of ``weights_dir`` (default: the shipped one) as a dict."""
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"Cannot read the weights manifest {path}: {error}. {_FIX}") from error


def load_state_dict(name: str, weights_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The verified state_dict of the shipped model ``name``, converted to float32.

    Raises
    ------
    WeightsError
        The model is not in the manifest, its file is missing, or its checksum differs
        from the manifest's (a corrupted or edited file).
    """
    directory = Path(weights_dir or WEIGHTS_DIR)
    manifest = read_manifest(directory)
    entries = manifest.get("models", {}) if isinstance(manifest, dict) else None
    if not isinstance(entries, dict):
        raise WeightsError(
            f"The weights manifest {directory / MANIFEST} is malformed: it must be an object "
            f'with a "models" object, one entry per model. {_FIX}'
        )
    if name not in entries:
        raise WeightsError(
            f"No weights for '{name}' in {directory / MANIFEST} "
            f"(it lists {sorted(entries)}). {_FIX}"
        )
    entry = entries[name]
    fields = ("file", "sha256")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in fields):
        raise WeightsError(
            f"The weights manifest {directory / MANIFEST} is malformed: the entry of '{name}' "
            f'must name its "file" and its "sha256" as strings, got {entry!r}. {_FIX}'
        )
    path = directory / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as error:
        raise WeightsError(f"The weight file of '{name}' is missing: {path}. {_FIX}") from error
    if sha256_of(data) != entry["sha256"]:
        raise WeightsError(
            f"The weight file of '{name}' is corrupted: the SHA-256 of {path} does not match "
            f"the manifest. {_FIX}"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a file with the right checksum that torch cannot read
        raise WeightsError(f"torch cannot read the weight file {path}: {error}. {_FIX}") from error
    return {
        key: value.float() if value.is_floating_point() else value for key, value in state.items()
    }


def load_into(model: nn.Module, name: str, weights_dir: str | Path | None = None) -> nn.Module:
    """Load the verified shipped weights ``name`` into ``model``; return it in eval mode."""
    state = load_state_dict(name, weights_dir)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(
            f"The weight file of '{name}' does not fit its architecture: {error}. {_FIX}"
        ) from error
    return model.float().eval()


def shipped_or_fresh(
    name: str, model: nn.Module, pretrained: bool, weights_dir: str | Path | None = None
) -> nn.Module:
    """``model`` with the verified shipped weights ``name`` (``pretrained``) or as initialised;
    in eval mode either way."""
    if pretrained:
        return load_into(model, name, weights_dir)
    return model.eval()
