"""Copy the course material (notebooks, student copies of the exercises) out of the install.

The notebooks and the generated student copies ship inside the wheel as the data packages
``lrp_tutor._notebooks`` and ``lrp_tutor._exercises``; from a source checkout the same
folders are ``notebooks/`` and ``exercises/student/``.

Examples
--------
>>> sorted(p.name for p in course_files("notebooks"))[:1]
['01_conservation_by_hand.ipynb']
"""

from __future__ import annotations

import shutil
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["course_folder", "course_files", "copy_course"]

_PACKAGES = {"notebooks": "lrp_tutor._notebooks", "exercises": "lrp_tutor._exercises"}
_CHECKOUT = {"notebooks": "notebooks", "exercises": "exercises/student"}


def course_folder(kind: str) -> Traversable:
    """Where the ``kind`` notebooks are: the installed package data, or the checkout's folder."""
    if kind not in _PACKAGES:
        raise ValueError(f"kind must be one of {sorted(_PACKAGES)}, got {kind!r}.")
    try:
        folder = resources.files(_PACKAGES[kind])
        if any(item.name.endswith(".ipynb") for item in folder.iterdir()):
            return folder
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    checkout = Path(__file__).resolve().parent.parent / _CHECKOUT[kind]
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"The {kind} are not part of this installation of lrp_tutor. Reinstall the package "
        "(pip install --force-reinstall lrp_tutor) or clone the repository."
    )


def course_files(kind: str) -> list[Traversable]:
    """The ``.ipynb`` files of ``kind`` ("notebooks" or "exercises"), sorted by name."""
    items = [i for i in course_folder(kind).iterdir() if i.name.endswith(".ipynb")]
    return sorted(items, key=lambda i: i.name)


def copy_course(kind: str, dest: str | Path) -> list[Path]:
    """Copy the ``kind`` notebooks into ``dest``, refusing to overwrite any existing file.

    Returns the paths written. Nothing is written when any target exists already.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"{dest} exists and is not a folder; choose a folder for the {kind}.")
    files = course_files(kind)
    existing = [
        item.name
        for item in files
        if (dest / item.name).exists() or (dest / item.name).is_symlink()  # dangling links too
    ]
    if existing:
        raise FileExistsError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} in {dest}; "
            "nothing was copied, so that no work is overwritten. Choose another folder, or move "
            "those files away first."
        )
    dest.mkdir(parents=True, exist_ok=True)
    targets = []
    for item in files:
        with item.open("rb") as source, open(dest / item.name, "xb") as out:  # never via a link
            shutil.copyfileobj(source, out)
        targets.append(dest / item.name)
    return targets
