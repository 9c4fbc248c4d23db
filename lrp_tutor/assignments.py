"""Course assignments: build the student copies of the exercise notebooks, hand them out,
and run a notebook's code for grading.

The sources, ``exercises/source/NN_name.ipynb``, contain the solutions between nbgrader's
markers, inside code cells::

    def contributions(x, W):
        \"\"\"Task 01.1: return z_ij = x_i * w_ij, shape (n_in, n_out).\"\"\"
        ### BEGIN SOLUTION
        return x[:, None] * W
        ### END SOLUTION

:func:`build` writes the student copies, ``exercises/student/NN_name.ipynb``: every
solution block becomes ``raise NotImplementedError("Task 01.1: …")`` (the text of the
nearest ``Task NN.k: …`` line above the block, with the block's indentation), hidden tests
(``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS``) disappear, a solution in a
Markdown cell becomes ``YOUR ANSWER HERE``, and outputs, execution counts and widget state
are stripped. The output is deterministic (byte-identical on rebuild), so
:func:`check_up_to_date` can fail CI when a committed copy is stale.

A student copy is what ``nbgrader generate_assignment`` would release, except for the text
of the code stubs (nbgrader writes ``raise NotImplementedError()``; ours names the task):
the same cell ids and sources, and on every nbgrader cell the release's metadata — the
source's ``nbgrader`` entry plus the ``checksum`` and ``cell_type`` that nbgrader's
ComputeChecksums adds, and the ``deletable``/``editable`` flags of its LockCells. So a
copy handed out with ``lrp-tutor exercises`` and submitted to ``nbgrader autograde`` is
graded like nbgrader's own release: autograde finds its grade cells by ``grade_id`` and
puts the hidden tests back (``tests/test_nbgrader.py`` checks both with nbgrader itself).
Building needs neither nbgrader nor its database.

Examples
--------
>>> cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
...         "source": "def f(x):\\n    \\"\\"\\"Task 01.1: double x.\\"\\"\\"\\n"
...                   "    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION"}
>>> nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
>>> print("".join(student_notebook(nb, "01_demo.ipynb")["cells"][0]["source"]))
def f(x):
    \"\"\"Task 01.1: double x.\"\"\"
    raise NotImplementedError("Task 01.1: double x.")
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import hashlib
import io
import json
import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .course import copy_course, course_folder

__all__ = [
    "SOURCE_DIR",
    "STUDENT_DIR",
    "student_notebook",
    "nbgrader_checksum",
    "student_text",
    "build",
    "written_by_build",
    "check_up_to_date",
    "student_copies_dir",
    "copy_student_copies",
    "execute_notebook",
    "ExecutedNotebook",
    "CellError",
    "exercise_of",
    "is_checker_cell",
]

_REPO = Path(__file__).resolve().parents[1]
SOURCE_DIR = _REPO / "exercises" / "source"
"""The assignment sources (with solutions) in a checkout of the repository."""
STUDENT_DIR = _REPO / "exercises" / "student"
"""The generated student copies in a checkout of the repository."""

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
TEXT_STUB = "YOUR ANSWER HERE"
"""What replaces a solution in a Markdown cell (nbgrader's default text stub)."""

_MARKERS = {
    BEGIN_SOLUTION: "BEGIN SOLUTION",
    END_SOLUTION: "END SOLUTION",
    BEGIN_HIDDEN: "BEGIN HIDDEN TESTS",
    END_HIDDEN: "END HIDDEN TESTS",
}
_TASK = re.compile(r"Task\s+(\d{2})\.(\d+)\s*:\s*(.*?)\s*(?:\"\"\"|''')?\s*$")
_NOTEBOOK = re.compile(r"^(\d{2})_[A-Za-z0-9_]+\.ipynb$")
_CHECKER_CALL = re.compile(r"\bchecks\.ex\d{2}_\w+\s*\(")
_KEEP_CELL_METADATA = ("tags", "editable", "deletable", "slideshow", "jupyter")


# --------------------------------------------------------------------------------------
# Source → student copy.


def exercise_of(path: str | Path) -> str | None:
    """The exercise number of a notebook file name, ``"01"`` for ``01_dense.ipynb``.

    >>> exercise_of("exercises/student/03_alpha_beta.ipynb")
    '03'
    """
    match = _NOTEBOOK.match(Path(path).name)
    return match.group(1) if match else None


def _lines(source: str | list[str]) -> list[str]:
    text = "".join(source) if isinstance(source, list) else source
    return text.split("\n")


def _split(text: str) -> list[str]:
    """nbformat's on-disk form of a cell source: a list of lines with their newlines."""
    return text.splitlines(keepends=True)


def _where(name: str, index: int, line: int) -> str:
    return f"{name}, cell {index}, line {line + 1}"


def _task_text(lines: list[str], marker: int, name: str, index: int) -> str:
    """The ``Task NN.k: …`` line nearest above the solution block, as the stub's message."""
    for line in reversed(lines[:marker]):
        match = _TASK.search(line)
        if match:
            number, task, text = match.groups()
            expected = exercise_of(name)
            if expected is not None and number != expected:
                raise ValueError(
                    f"{_where(name, index, marker)}: the solution belongs to Task "
                    f"{number}.{task}, but the notebook is exercise {expected}. Number the "
                    f"tasks of {name} as {expected}.1, {expected}.2, …"
                )
            return f"Task {number}.{task}: {text}".rstrip()
    raise ValueError(
        f"{_where(name, index, marker)}: a solution block needs a line 'Task NN.k: what to "
        "implement' above it in the same cell (e.g. the first line of the function's "
        "docstring); its text becomes the NotImplementedError of the student copy."
    )


def _strip_cell(lines: list[str], code: bool, name: str, index: int) -> list[str]:
    out: list[str] = []
    region: str | None = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        marker = next((m for m in _MARKERS if stripped == m), None)
        if marker is None and any(word in line for word in _MARKERS.values()):
            word = next(word for word in _MARKERS.values() if word in line)
            raise ValueError(
                f"{_where(name, index, number)}: write the marker on its own line exactly as "
                f"'### {word}' (found {stripped!r})."
            )
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if region is not None:
                raise ValueError(
                    f"{_where(name, index, number)}: {marker!r} inside an open {region} block; "
                    "close the first block before opening another."
                )
            if marker == BEGIN_HIDDEN and not code:
                raise ValueError(
                    f"{_where(name, index, number)}: hidden tests belong in code cells."
                )
            region = "solution" if marker == BEGIN_SOLUTION else "hidden tests"
            if marker == BEGIN_SOLUTION:
                indent = line[: len(line) - len(line.lstrip())]
                if code:
                    message = json.dumps(_task_text(lines, number, name, index), ensure_ascii=False)
                    out.append(f"{indent}raise NotImplementedError({message})")
                else:
                    out.append(f"{indent}{TEXT_STUB}")
        elif marker in (END_SOLUTION, END_HIDDEN):
            wanted = "solution" if marker == END_SOLUTION else "hidden tests"
            if region != wanted:
                raise ValueError(
                    f"{_where(name, index, number)}: {marker!r} without a matching "
                    f"'### BEGIN {_MARKERS[marker].split(' ', 1)[1]}'."
                )
            region = None
        elif region is None:
            out.append(line)
    if region is not None:
        raise ValueError(
            f"{name}, cell {index}: the {region} block is not closed; add "
            f"'{END_SOLUTION if region == 'solution' else END_HIDDEN}'."
        )
    return out


def nbgrader_checksum(cell: dict[str, Any]) -> str:
    """The checksum nbgrader stores in a cell's metadata (``nbgrader.utils.compute_checksum``).

    It covers the cell's source and type, whether it is a grade, solution or locked cell,
    its ``grade_id`` and its points. nbgrader compares it to tell an unanswered cell from an
    answered one, and a changed locked cell from an intact one.

    >>> cell = {"cell_type": "markdown", "source": "YOUR ANSWER HERE", "metadata": {"nbgrader":
    ...         {"grade": True, "solution": True, "grade_id": "answer-05-3", "points": 2}}}
    >>> nbgrader_checksum(cell)
    '6db553b705eff2e5a9391d47053891bb'
    """
    grading = cell["metadata"]["nbgrader"]
    grade, solution = bool(grading.get("grade", False)), bool(grading.get("solution", False))
    parts = [
        "".join(cell.get("source", "")),
        cell["cell_type"],
        str(grade),
        str(solution),
        str(_is_locked(grading)),
        grading["grade_id"],
    ]
    if grade:
        parts.append(str(float(grading["points"])))
    digest = hashlib.md5()
    for part in parts:
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


def _is_locked(grading: dict[str, Any]) -> bool:
    """nbgrader's ``is_locked``: grade cells that are not solutions, and read-only cells."""
    if grading.get("solution", False):
        return False
    return bool(grading.get("grade", False) or grading.get("locked", False))


def _release_metadata(cell: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    """The metadata nbgrader's release gives a cell of the student copy (the cell's source
    already stubbed): LockCells' ``deletable``/``editable`` and ComputeChecksums' entries."""
    grading = dict(cell["metadata"]["nbgrader"])
    graded = grading.get("grade", False) or grading.get("solution", False)
    if (graded or _is_locked(grading)) and not grading.get("grade_id"):
        raise ValueError(
            f"{name}, cell {index}: an nbgrader cell needs a 'grade_id' in its nbgrader "
            "metadata (nbgrader matches submitted cells to the source by it)."
        )
    if grading.get("grade", False) and "points" not in grading:
        raise ValueError(f"{name}, cell {index}: an nbgrader grade cell needs 'points'.")
    metadata: dict[str, Any] = {"nbgrader": grading}
    if graded or _is_locked(grading):
        metadata["deletable"] = False
        grading["cell_type"] = cell["cell_type"]
        grading["checksum"] = nbgrader_checksum({**cell, "metadata": {"nbgrader": grading}})
    if _is_locked(grading):
        metadata["editable"] = False
    return metadata


def student_notebook(source: dict[str, Any], name: str) -> dict[str, Any]:
    """The student copy of a source notebook (a dict as read by ``json.load``).

    ``name`` is the file name (``NN_name.ipynb``); it numbers the tasks and the messages.
    """
    nb = copy.deepcopy(source)
    cells = []
    for index, cell in enumerate(nb.get("cells", [])):
        kind = cell.get("cell_type")
        text = "\n".join(
            _strip_cell(_lines(cell.get("source", "")), kind == "code", name, index)
        ).rstrip()
        new: dict[str, Any] = {"cell_type": kind}
        if "id" in cell:
            new["id"] = cell["id"]
        new["metadata"] = {
            k: v for k, v in cell.get("metadata", {}).items() if k in _KEEP_CELL_METADATA
        }
        new["source"] = _split(text)
        if "nbgrader" in cell.get("metadata", {}):
            new["metadata"]["nbgrader"] = cell["metadata"]["nbgrader"]
            new["metadata"].update(_release_metadata(new, name, index))
        if kind == "code":
            new["execution_count"] = None
            new["outputs"] = []
        if "attachments" in cell:
            new["attachments"] = cell["attachments"]
        cells.append(new)
    metadata = nb.get("metadata", {})
    kept: dict[str, Any] = {}
    if "kernelspec" in metadata:
        kept["kernelspec"] = metadata["kernelspec"]
    if "language_info" in metadata:
        kept["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    exercise = exercise_of(name)
    kept["lrp_tutor"] = {
        **metadata.get("lrp_tutor", {}),
        **({"exercise": exercise} if exercise else {}),
        "student_copy": True,
    }
    return {
        "cells": cells,
        "metadata": kept,
        "nbformat": nb.get("nbformat", 4),
        "nbformat_minor": nb.get("nbformat_minor", 5),
    }


def _dumps(nb: dict[str, Any]) -> str:
    """Serialise like nbformat does (sorted keys, indent 1), so that Jupyter's saves agree."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def student_text(source_path: str | Path) -> str:
    """The exact text of the student copy of ``source_path``, stamped (:func:`_stamp`)."""
    path = Path(source_path)
    with path.open(encoding="utf-8") as file:
        source = json.load(file)
    return _dumps(_stamp(student_notebook(source, path.name)))


def _stamp(nb: dict[str, Any]) -> dict[str, Any]:
    """``nb`` with the SHA-256 of its own text in ``metadata.lrp_tutor.sha256``: the mark by
    which :func:`build` knows a student copy it wrote and nobody edited since."""
    nb["metadata"].setdefault("lrp_tutor", {})["sha256"] = _digest(nb)
    return nb


def _digest(nb: dict[str, Any]) -> str:
    """The SHA-256 of the text of ``nb`` without its stamp."""
    bare = copy.deepcopy(nb)
    bare.get("metadata", {}).get("lrp_tutor", {}).pop("sha256", None)
    return hashlib.sha256(_dumps(bare).encode("utf-8")).hexdigest()


def written_by_build(path: str | Path) -> bool:
    """Whether ``path`` is a student copy as :func:`build` wrote it, unchanged since: a
    regular file (not a link) whose stamp matches its content. An edited copy, a copy
    saved by an older lrp_tutor, or any other file is not."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        stamp = nb["metadata"]["lrp_tutor"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(stamp, str) and stamp == _digest(nb)


def _sources(source_dir: Path) -> list[Path]:
    if not source_dir.is_dir():
        raise FileNotFoundError(f"No exercise sources at {source_dir}.")
    paths = sorted(p for p in source_dir.glob("*.ipynb") if exercise_of(p))
    if not paths:
        raise FileNotFoundError(f"No exercise sources (NN_name.ipynb) in {source_dir}.")
    return paths


def _plan(source_dir: Path, student_dir: Path) -> tuple[dict[Path, str], list[Path]]:
    """{student path: its text} for every source, and the orphaned student copies."""
    wanted = {student_dir / p.name: student_text(p) for p in _sources(source_dir)}
    existing = (
        [p for p in student_dir.glob("*.ipynb") if exercise_of(p)] if student_dir.is_dir() else []
    )
    orphans = sorted(p for p in existing if p not in wanted)
    return wanted, orphans


def build(
    source_dir: str | Path | None = None,
    student_dir: str | Path | None = None,
    *,
    force: bool = False,
) -> list[Path]:
    """Write the student copies of every ``NN_name.ipynb`` in ``source_dir``.

    Copies that are already up to date are left alone; stale copies are rewritten and
    copies whose source is gone are removed, but only files that ``build`` wrote itself
    and nobody changed since (:func:`written_by_build`). Any other file in the way (a copy
    a student or teacher edited, a notebook of their own, a link) stops the build before it
    changes anything, unless ``force=True``. Returns the paths that changed.

    Parameters
    ----------
    source_dir, student_dir : path, optional
        Default to the repository's ``exercises/source`` and ``exercises/student``.
    force : bool, default False
        Overwrite and delete such files too (their content is lost).

    Raises
    ------
    FileExistsError
        A file that build would overwrite or delete was not written by it, or was edited
        since; the message lists them. Nothing was written.
    """
    source_dir = Path(source_dir) if source_dir is not None else SOURCE_DIR
    student_dir = Path(student_dir) if student_dir is not None else STUDENT_DIR
    wanted, orphans = _plan(source_dir, student_dir)
    stale = {
        path: text.encode("utf-8")
        for path, text in wanted.items()
        if path.is_symlink() or not path.is_file() or path.read_bytes() != text.encode("utf-8")
    }
    doomed = [p for p in stale if p.exists() or p.is_symlink()] + orphans
    differ = [p for p in doomed if not written_by_build(p)]
    if differ and not force:
        raise FileExistsError(
            f"build would overwrite or delete {len(differ)} file(s) in {student_dir} that it "
            f"did not write, or that were edited since: {', '.join(p.name for p in differ)}. "
            "Nothing was changed. Move them away (or pass --force / force=True to overwrite "
            "and delete them)."
        )
    student_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for path, data in stale.items():
        if path.is_symlink():
            path.unlink()  # write the copy itself, never through a link
        path.write_bytes(data)
        changed.append(path)
    for path in orphans:
        path.unlink()
        changed.append(path)
    return changed


def check_up_to_date(
    source_dir: str | Path | None = None, student_dir: str | Path | None = None
) -> list[Path]:
    """The student copies that :func:`build` would change: stale, missing or orphaned.

    An empty list means the committed copies match their sources byte for byte.
    """
    source_dir = Path(source_dir) if source_dir is not None else SOURCE_DIR
    student_dir = Path(student_dir) if student_dir is not None else STUDENT_DIR
    wanted, orphans = _plan(source_dir, student_dir)
    stale = [
        path
        for path, text in wanted.items()
        if not path.is_file() or path.read_bytes() != text.encode("utf-8")
    ]
    return stale + orphans


# --------------------------------------------------------------------------------------
# Handing out.


def student_copies_dir() -> Any:
    """Where the student copies are: the installed package data ``lrp_tutor._exercises``,
    or the repository's ``exercises/student`` when running from a checkout (a
    :class:`pathlib.Path` or an :mod:`importlib.resources` Traversable)."""
    return course_folder("exercises")


def copy_student_copies(dest: str | Path) -> list[Path]:
    """Copy the student notebooks into ``dest`` (created if needed) and return their paths.

    Raises
    ------
    FileExistsError
        If any of the notebooks already exists in ``dest``; nothing is copied then, so
        that no student's work is overwritten.
    """
    return copy_course("exercises", dest)


# --------------------------------------------------------------------------------------
# Running a notebook's code (for grading and tests).


@dataclass
class CellError:
    """An exception a code cell raised: its index among the cells and a one-line summary."""

    cell: int
    error: BaseException

    @property
    def summary(self) -> str:
        return f"cell {self.cell}: {type(self.error).__name__}: {self.error}"


@dataclass
class ExecutedNotebook:
    """The result of :func:`execute_notebook`.

    Attributes
    ----------
    path : Path
    exercise : str or None
        ``"01"`` … from the notebook's metadata or its file name.
    namespace : dict
        The globals after running the cells: the student's functions by name.
    errors : list of CellError
        Exceptions raised by cells (execution went on with the next cell).
    skipped : list of int
        The checker cells that were not run.
    results : dict
        For cells that were run and end in an expression: the value of that expression.
    displayed : dict
        For cells that were run and called ``display(...)``: the objects, in order (the
        check cells display their result, so that nbgrader sees no output to score).
    """

    path: Path
    exercise: str | None
    namespace: dict[str, Any]
    errors: list[CellError] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    displayed: dict[int, list[Any]] = field(default_factory=dict)

    def error_for(self, cell: int) -> CellError | None:
        return next((e for e in self.errors if e.cell == cell), None)


class _Display:
    """``display`` in a notebook run by :func:`execute_notebook`: keeps the objects, by cell."""

    def __init__(self, displayed: dict[int, list[Any]]) -> None:
        self.displayed = displayed
        self.cell = -1

    def __call__(self, *objects: Any, **_: Any) -> None:
        self.displayed.setdefault(self.cell, []).extend(objects)


def is_checker_cell(source: str) -> bool:
    """True for cells that call a checker (``checks.ex01_contributions(...)``)."""
    return bool(_CHECKER_CALL.search(source))


def _without_magics(source: str) -> str:
    """Comment out IPython magics and shell escapes, keeping line numbers."""
    lines = source.split("\n")
    return "\n".join(
        f"# {line}" if line.lstrip().startswith(("%", "!")) else line for line in lines
    )


def execute_notebook(path: str | Path, *, run_checks: bool = False) -> ExecutedNotebook:
    """Run a notebook's code cells, in order, in one fresh namespace of this process.

    A cell that raises is recorded in ``errors`` and execution goes on, so that an
    unfinished task (``NotImplementedError``) does not stop the others from being graded.
    Cells that call the checkers are skipped unless ``run_checks``; printed output is
    swallowed, and what a cell passes to ``display`` is kept in ``displayed``. This runs
    the notebook's code with the rights of the caller, like Jupyter.
    """
    import ast

    path = Path(path)
    with path.open(encoding="utf-8") as file:
        nb = json.load(file)
    exercise = nb.get("metadata", {}).get("lrp_tutor", {}).get("exercise") or exercise_of(path)
    namespace: dict[str, Any] = {"__name__": "__notebook__", "__builtins__": builtins}
    result = ExecutedNotebook(path, exercise, namespace)
    display = namespace["display"] = _Display(result.displayed)
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        display.cell = index
        source = "".join(cell.get("source", ""))
        if is_checker_cell(source) and not run_checks:
            result.skipped.append(index)
            continue
        source = _without_magics(source)
        filename = f"<{path.name} cell {index}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            tree = ast.parse(source, filename)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(tree, filename, "exec"), namespace)
                if last is not None:
                    result.results[index] = eval(compile(last, filename, "eval"), namespace)
        except Exception as error:  # recorded; the next cells still run
            result.errors.append(CellError(index, error))
    return result
