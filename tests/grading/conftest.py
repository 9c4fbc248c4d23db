"""Grading options: which student notebook(s) to grade.

    pytest -m ex02 tests/grading --student mywork.ipynb
    LRP_STUDENT=submissions/alice pytest tests/grading

``--student`` (repeatable) or the environment variable ``LRP_STUDENT`` (paths separated
by the OS path separator) name notebooks or folders of notebooks. Without either, the
tests grade the SOURCE notebooks (the solutions), which must pass: that is how CI checks
the references. ``--student`` works when pytest is pointed at ``tests/grading``; from
elsewhere use ``LRP_STUDENT``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lrp_tutor import assignments

os.environ.setdefault("MPLBACKEND", "Agg")  # students' plotting cells must not open windows

EXERCISES = ("01", "02", "03", "04", "05", "06", "07", "08", "09")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--student",
        action="append",
        default=None,
        metavar="PATH",
        help="a student's notebook (NN_name.ipynb) or a folder of them to grade; repeatable",
    )


def pytest_configure(config: pytest.Config) -> None:
    for exercise in EXERCISES:
        config.addinivalue_line("markers", f"ex{exercise}: grading tests of exercise {exercise}")


def _student_paths(config: pytest.Config) -> list[Path] | None:
    given = config.getoption("--student", default=None)
    if not given and os.environ.get("LRP_STUDENT"):
        given = os.environ["LRP_STUDENT"].split(os.pathsep)
    if not given:
        return None
    paths: list[Path] = []
    for item in given:
        path = Path(item).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.glob("*.ipynb") if not p.name.startswith("."))
        elif path.is_file():
            paths.append(path)
        else:
            raise pytest.UsageError(f"--student {item}: no such notebook or folder.")
    return paths


class Submissions:
    """The notebooks being graded, executed lazily, one per exercise."""

    def __init__(self, paths: list[Path] | None) -> None:
        self.graded_sources = paths is None
        if paths is None:
            paths = sorted(p for p in assignments.SOURCE_DIR.glob("*.ipynb"))
        self.paths: dict[str, Path] = {}
        self.unknown: list[Path] = []
        for path in paths:
            exercise = _exercise(path)
            if exercise is None:
                self.unknown.append(path)
            else:
                self.paths.setdefault(exercise, path)
        self._executed: dict[str, assignments.ExecutedNotebook] = {}

    def get(self, exercise: str) -> assignments.ExecutedNotebook | None:
        if exercise not in self.paths:
            return None
        if exercise not in self._executed:
            self._executed[exercise] = assignments.execute_notebook(self.paths[exercise])
        return self._executed[exercise]


def _exercise(path: Path) -> str | None:
    """The exercise of a notebook: its metadata, else its file name (NN_…)."""
    import json

    try:
        with path.open(encoding="utf-8") as file:
            metadata = json.load(file).get("metadata", {})
    except (OSError, ValueError):
        return assignments.exercise_of(path)
    return metadata.get("lrp_tutor", {}).get("exercise") or assignments.exercise_of(path)


@pytest.fixture(scope="session")
def submissions(pytestconfig: pytest.Config) -> Submissions:
    return Submissions(_student_paths(pytestconfig))
