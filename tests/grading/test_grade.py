"""Grade a student's notebook task by task: ``pytest -m ex02 tests/grading --student FILE``.

Each task is one test, marked with its exercise (ex01 … ex09). The notebook's code cells
run in one namespace (cells that call the checkers are skipped; an unfinished task's
NotImplementedError does not stop the others), then the task's checker runs on the
student's function, held-out cases included (as in the hidden tests nbgrader runs), and
the test fails with the checker's message.
"""

from __future__ import annotations

import pytest

from lrp_tutor.checks import TASKS

PARAMS = [
    pytest.param(task, id=f"task-{task.id}", marks=getattr(pytest.mark, f"ex{task.exercise}"))
    for task in TASKS.values()
]


@pytest.mark.parametrize("task", PARAMS)
def test_task(task, submissions) -> None:
    notebook = submissions.get(task.exercise)
    if notebook is None:
        pytest.skip(f"no notebook of exercise {task.exercise} among those given")
    function = notebook.namespace.get(task.function)
    if function is None:
        errors = "; ".join(e.summary for e in notebook.errors)
        pytest.fail(
            f"Task {task.id}: {notebook.path.name} defines no function `{task.function}`."
            + (f" Cells that raised: {errors}" if errors else ""),
            pytrace=False,
        )
    result = task.checker(function, held_out=True)  # as nbgrader's hidden tests grade
    if not result.passed:  # the checker's words: the case, the entry, the likely mistake
        pytest.fail(str(result), pytrace=False)


def test_sources_are_graded_completely(submissions) -> None:
    """Without --student every exercise's source notebook is found (CI checks them all)."""
    if not submissions.graded_sources:
        pytest.skip("grading student notebooks")
    exercises = sorted({task.exercise for task in TASKS.values()})
    assert sorted(submissions.paths) == exercises
    for exercise in exercises:
        notebook = submissions.get(exercise)
        assert notebook.errors == [], [e.summary for e in notebook.errors]
