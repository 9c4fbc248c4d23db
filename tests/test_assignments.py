"""The build step of the course assignments, and the committed notebooks it produces."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from lrp_tutor import assignments, checks

SOURCES = sorted(assignments.SOURCE_DIR.glob("*.ipynb"))
STUDENTS = sorted(assignments.STUDENT_DIR.glob("*.ipynb"))


def _notebook(*cells, metadata=None):
    return {
        "cells": list(cells),
        "metadata": metadata or {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _code(source, **extra):
    cell = {"cell_type": "code", "id": "c", "metadata": {}, "outputs": [], "execution_count": None}
    cell.update(source=source, **extra)
    return cell


def _source(nb):
    return ["".join(cell["source"]) for cell in nb["cells"]]


TASK_CELL = '''def f(x, y):
    """Task 07.2: add x and y."""
    z = 0
    ### BEGIN SOLUTION
    z = x + y
    ### END SOLUTION
    return z'''


# --------------------------------------------------------------------------------------
# The committed notebooks.


def test_there_are_six_exercises_with_sources_and_student_copies():
    assert len(SOURCES) >= 6
    assert [p.name for p in STUDENTS] == [p.name for p in SOURCES]
    assert sorted({t.exercise for t in checks.TASKS.values()}) == [
        assignments.exercise_of(p) for p in SOURCES
    ]


def test_committed_student_copies_are_up_to_date():
    stale = assignments.check_up_to_date()
    assert stale == [], (
        f"Stale student copies: {[p.name for p in stale]}. Run `make exercises` "
        "(lrp_tutor.assignments.build()) and commit exercises/student."
    )


def test_build_is_deterministic(tmp_path):
    changed = assignments.build(assignments.SOURCE_DIR, tmp_path)
    assert [p.name for p in changed] == [p.name for p in SOURCES]
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    assert assignments.build(assignments.SOURCE_DIR, tmp_path) == []
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")} == first
    assert first == {p.name: p.read_bytes() for p in STUDENTS}


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.name)
def test_student_copy_fails_exactly_at_the_stubs(path):
    run = assignments.execute_notebook(path, run_checks=True)
    assert run.errors == [], [e.summary for e in run.errors]  # everything else runs
    tasks = [t for t in checks.TASKS.values() if t.exercise == run.exercise]
    assert tasks
    shown = [r for objects in run.displayed.values() for r in objects]
    assert all(isinstance(r, checks.CheckResult) for r in shown)
    assert sorted(r.task for r in shown) == sorted(t.id for t in tasks)
    assert all(r.status == "not implemented" for r in shown)
    for task in tasks:
        function = run.namespace[task.function]
        dummies = [None] * sum(
            p.default is p.empty for p in inspect.signature(function).parameters.values()
        )
        with pytest.raises(NotImplementedError, match=rf"^Task {task.id}: \w"):
            function(*dummies)


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.name)
def test_student_copy_holds_no_solution_and_no_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "assert_passed"):
        assert marker not in text
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    source = json.loads((assignments.SOURCE_DIR / path.name).read_text(encoding="utf-8"))
    student_lines = {line.strip() for cell in _source(nb) for line in cell.split("\n")}
    for cell in _source(source):
        inside = False
        for line in cell.split("\n"):
            if line.strip() == assignments.BEGIN_SOLUTION:
                inside = True
            elif line.strip() == assignments.END_SOLUTION:
                inside = False
            elif inside and len(line.strip()) > 12:
                assert line.strip() not in student_lines, line


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.name)
def test_student_copy_carries_the_nbgrader_metadata_of_a_release(path):
    """What nbgrader's generate_assignment writes: the source's cell ids and nbgrader entries,
    checksums of the released cells, locked grade cells (tests/test_nbgrader.py compares
    with nbgrader itself)."""
    student = json.loads(path.read_text(encoding="utf-8"))
    source = json.loads((assignments.SOURCE_DIR / path.name).read_text(encoding="utf-8"))
    assert [c["id"] for c in student["cells"]] == [c["id"] for c in source["cells"]]
    graded = 0
    for ours, theirs in zip(student["cells"], source["cells"], strict=True):
        if "nbgrader" not in theirs["metadata"]:
            assert "nbgrader" not in ours["metadata"]
            continue
        grading = ours["metadata"]["nbgrader"]
        added = {"checksum": assignments.nbgrader_checksum(ours), "cell_type": ours["cell_type"]}
        assert grading == {**theirs["metadata"]["nbgrader"], **added}
        assert ours["metadata"]["deletable"] is False
        if grading["grade"] and not grading["solution"]:  # a check cell: locked, 1 point
            assert ours["metadata"]["editable"] is False and grading["points"] == 1
            graded += 1
        else:
            assert "editable" not in ours["metadata"]
    assert graded == sum(t.exercise == assignments.exercise_of(path) for t in checks.TASKS.values())


def test_checksum_is_nbgrader_s():
    """Values that nbgrader 0.9.6's compute_checksum gives."""
    cell = json.loads((assignments.STUDENT_DIR / "05_vgg_composite.ipynb").read_text("utf-8"))
    answer = next(c for c in cell["cells"] if c["id"] == "ex05-09")
    assert assignments.nbgrader_checksum(answer) == "6db553b705eff2e5a9391d47053891bb"
    check = {
        "cell_type": "code",
        "source": "display(checks.ex02_stabilize(stabilize))",
        "metadata": {"nbgrader": {"grade": True, "grade_id": "check-02-1", "points": 1}},
    }
    assert assignments.nbgrader_checksum(check) == "86c2f64c9b9c22727e9d5bf4650cf3f0"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_check_cells_grade_with_held_out_cases_and_show_without_a_value(path):
    """A check cell's hidden test runs the held-out cases; its visible line displays the
    result and returns None, so that nbgrader sees no output to read as partial credit."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    run = assignments.execute_notebook(path, run_checks=True)
    checker_cells = [
        (index, "".join(c["source"]))
        for index, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and assignments.is_checker_cell("".join(c["source"]))
    ]
    assert checker_cells
    for index, source in checker_cells:
        hidden, visible = source.split(assignments.END_HIDDEN + "\n")
        call = visible.removeprefix("display(").removesuffix(")")
        assert visible == f"display({call})"
        assert f"{call[:-1]}, held_out=True).assert_passed()" in hidden
        assert run.results.get(index) is None
        assert [r.passed for r in run.displayed[index]] == [True]
        outputs = nb["cells"][index]["outputs"]
        assert [o["output_type"] for o in outputs] == ["display_data"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_sources_store_passing_checker_outputs(path):
    """The sources are executed in place (nbval compares against these outputs)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in nb["metadata"]
    checker_cells = [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and assignments.is_checker_cell("".join(c["source"]))
    ]
    assert checker_cells
    for cell in checker_cells:
        texts = ["".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"]]
        assert any("— passed" in t for t in texts), cell["source"]


# --------------------------------------------------------------------------------------
# The stub rules, on small notebooks.


def test_solution_becomes_a_stub_with_indentation_signature_and_docstring():
    nb = _notebook(_code(TASK_CELL, execution_count=4, outputs=[{"output_type": "stream"}]))
    cell = assignments.student_notebook(nb, "07_demo.ipynb")["cells"][0]
    assert "".join(cell["source"]) == (
        'def f(x, y):\n    """Task 07.2: add x and y."""\n    z = 0\n'
        '    raise NotImplementedError("Task 07.2: add x and y.")\n    return z'
    )
    assert cell["outputs"] == [] and cell["execution_count"] is None
    namespace = {}
    exec("".join(cell["source"]), namespace)
    with pytest.raises(NotImplementedError, match="Task 07.2: add x and y."):
        namespace["f"](1, 2)


def test_task_line_may_be_a_comment_and_quotes_are_escaped():
    source = '# Task 07.1: say "hi"\n### BEGIN SOLUTION\nprint("hi")\n### END SOLUTION'
    cell = assignments.student_notebook(_notebook(_code(source)), "07_demo.ipynb")["cells"][0]
    assert "".join(cell["source"]).endswith('raise NotImplementedError("Task 07.1: say \\"hi\\"")')


def test_hidden_tests_markdown_answers_and_metadata_are_stripped():
    hidden = "x = 1\n### BEGIN HIDDEN TESTS\nassert x == 1\n### END HIDDEN TESTS\nx"
    answer = {
        "cell_type": "markdown",
        "id": "m",
        "metadata": {"tags": ["answer"]},
        "source": ["Why?\n", "### BEGIN SOLUTION\n", "Because.\n", "### END SOLUTION"],
    }
    metadata = {
        "kernelspec": {"name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {}},
    }
    test = {"grade": True, "grade_id": "t", "points": 2, "locked": True, "solution": False}
    code = _code(hidden, metadata={"nbgrader": test, "execution": {"t": 1}})
    student = assignments.student_notebook(_notebook(code, answer, metadata=metadata), "07_x.ipynb")
    assert _source(student) == ["x = 1\nx", "Why?\nYOUR ANSWER HERE"]
    checksum = student["cells"][0]["metadata"]["nbgrader"].pop("checksum")
    assert checksum == assignments.nbgrader_checksum(
        {"cell_type": "code", "source": "x = 1\nx", "metadata": {"nbgrader": test}}
    )
    assert student["cells"][0]["metadata"] == {
        "nbgrader": {**test, "cell_type": "code"},
        "deletable": False,
        "editable": False,
    }
    assert student["cells"][1]["metadata"] == {"tags": ["answer"]}  # not an nbgrader cell
    assert student["metadata"] == {
        "kernelspec": {"name": "python3"},
        "language_info": {"name": "python"},
        "lrp_tutor": {"exercise": "07", "student_copy": True},
    }


def test_nbgrader_cells_without_grade_id_or_points_are_refused():
    for grading, message in (
        ({"solution": True}, "grade_id"),
        ({"grade": True, "grade_id": "c"}, "points"),
    ):
        cell = _code("x = 1", metadata={"nbgrader": grading})
        with pytest.raises(ValueError, match=message):
            assignments.student_notebook(_notebook(cell), "07_demo.ipynb")


@pytest.mark.parametrize(
    "source, message",
    [
        ("# Task 07.1: a\n### BEGIN SOLUTION\nx = 1", "not closed"),
        ("# Task 07.1: a\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside"),
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "needs a line 'Task NN.k"),
        ("# Task 03.1: a\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "exercise 07"),
        ("# Task 07.1: a\n## BEGIN SOLUTION\nx = 1\n### END SOLUTION", "exactly as"),
        ("x = 1\n### END SOLUTION", "without a matching"),
    ],
)
def test_malformed_sources_are_refused_with_the_place(source, message):
    with pytest.raises(ValueError, match=message) as error:
        assignments.student_notebook(_notebook(_code(source)), "07_demo.ipynb")
    assert "07_demo.ipynb, cell 0" in str(error.value)


def test_stale_missing_and_orphaned_copies_are_reported_and_rebuilt(tmp_path):
    source_dir, student_dir = tmp_path / "source", tmp_path / "student"
    source_dir.mkdir()
    for name in ("07_a.ipynb", "08_b.ipynb"):
        text = json.dumps(_notebook(_code(TASK_CELL.replace("07", name[:2]))))
        (source_dir / name).write_text(text, encoding="utf-8")
    assert [p.name for p in assignments.check_up_to_date(source_dir, student_dir)] == [
        "07_a.ipynb",
        "08_b.ipynb",
    ]
    assignments.build(source_dir, student_dir)
    assert assignments.check_up_to_date(source_dir, student_dir) == []
    (student_dir / "07_a.ipynb").write_text("edited by hand", encoding="utf-8")
    (student_dir / "09_old.ipynb").write_text("{}", encoding="utf-8")
    stale = assignments.check_up_to_date(source_dir, student_dir)
    assert [p.name for p in stale] == ["07_a.ipynb", "09_old.ipynb"]
    with pytest.raises(FileExistsError, match="did not write.*: 07_a.ipynb, 09_old.ipynb"):
        assignments.build(source_dir, student_dir)  # refuses: build wrote neither
    assert (student_dir / "07_a.ipynb").read_text(encoding="utf-8") == "edited by hand"
    assert [p.name for p in assignments.build(source_dir, student_dir, force=True)] == [
        "07_a.ipynb",
        "09_old.ipynb",
    ]
    assert sorted(p.name for p in student_dir.iterdir()) == ["07_a.ipynb", "08_b.ipynb"]


def test_build_rewrites_and_removes_only_its_own_unedited_copies(tmp_path):
    source_dir, student_dir = tmp_path / "source", tmp_path / "student"
    source_dir.mkdir()
    for name in ("07_a.ipynb", "08_b.ipynb"):
        text = json.dumps(_notebook(_code(TASK_CELL.replace("07", name[:2]))))
        (source_dir / name).write_text(text, encoding="utf-8")
    assignments.build(source_dir, student_dir)
    assert all(assignments.written_by_build(p) for p in student_dir.iterdir())
    changed = TASK_CELL.replace("07", "08").replace("add x and y", "add y and x")
    (source_dir / "08_b.ipynb").write_text(json.dumps(_notebook(_code(changed))), "utf-8")
    (source_dir / "07_a.ipynb").unlink()
    assert [p.name for p in assignments.build(source_dir, student_dir)] == [
        "08_b.ipynb",  # stale, rewritten
        "07_a.ipynb",  # its source is gone: removed
    ]
    assert "add y and x" in (student_dir / "08_b.ipynb").read_text(encoding="utf-8")
    outside = tmp_path / "outside.ipynb"
    (student_dir / "08_b.ipynb").unlink()
    (student_dir / "08_b.ipynb").symlink_to(outside)  # never written through
    with pytest.raises(FileExistsError, match="08_b.ipynb"):
        assignments.build(source_dir, student_dir)
    assignments.build(source_dir, student_dir, force=True)
    assert not outside.exists() and assignments.written_by_build(student_dir / "08_b.ipynb")


# --------------------------------------------------------------------------------------
# Handing out, and running notebooks.


def test_copy_student_copies_refuses_to_overwrite(tmp_path):
    dest = tmp_path / "course" / "exercises"
    copied = assignments.copy_student_copies(dest)
    assert [p.name for p in copied] == [p.name for p in STUDENTS]
    assert all((dest / p.name).read_bytes() == p.read_bytes() for p in STUDENTS)
    with pytest.raises(FileExistsError, match="nothing was copied"):
        assignments.copy_student_copies(dest)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / STUDENTS[0].name).write_text("my work", encoding="utf-8")
    with pytest.raises(FileExistsError, match=STUDENTS[0].name):
        assignments.copy_student_copies(partial)
    assert sorted(p.name for p in partial.iterdir()) == [STUDENTS[0].name]
    assert (partial / STUDENTS[0].name).read_text(encoding="utf-8") == "my work"


def test_student_copies_are_found_in_a_checkout():
    folder = assignments.student_copies_dir()
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".ipynb") == [
        p.name for p in STUDENTS
    ]


def test_packaged_copies_are_preferred(tmp_path, monkeypatch):
    import importlib.resources

    (tmp_path / "01_packaged.ipynb").write_text("{}", encoding="utf-8")

    def files(package):
        assert package == "lrp_tutor._exercises"
        return tmp_path

    monkeypatch.setattr(importlib.resources, "files", files)
    assert assignments.student_copies_dir() == tmp_path
    copied = assignments.copy_student_copies(tmp_path / "dest")
    assert [p.name for p in copied] == ["01_packaged.ipynb"]


def test_execute_notebook_goes_on_after_errors_and_skips_checker_cells(tmp_path):
    cells = [
        _code("%matplotlib inline\nimport math\n!ls"),
        _code("def f():\n    raise NotImplementedError('Task 07.1: f')"),
        _code("f()"),
        _code("checks.ex01_contributions(f)"),
        _code("def g():\n    return math.pi\ng()"),
    ]
    path = tmp_path / "07_demo.ipynb"
    path.write_text(json.dumps(_notebook(*cells)), encoding="utf-8")
    run = assignments.execute_notebook(path)
    assert run.exercise == "07"
    assert [e.cell for e in run.errors] == [2]
    assert isinstance(run.errors[0].error, NotImplementedError)
    assert run.skipped == [3]
    assert run.namespace["g"]() == pytest.approx(3.141592653589793)
    assert run.results[4] == pytest.approx(3.141592653589793)


def test_exercise_of_reads_file_names():
    assert assignments.exercise_of(Path("x/05_vgg_composite.ipynb")) == "05"
    assert assignments.exercise_of("notes.ipynb") is None
