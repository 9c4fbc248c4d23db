"""Grading with nbgrader itself: the student copies that ``lrp-tutor exercises`` hands out
are graded by ``nbgrader autograde`` like nbgrader's own release.

A course directory gets the exercise sources; ``nbgrader generate_assignment`` releases
them. The release must agree with our student copies (cell ids, sources, nbgrader metadata;
only the text of the code stubs differs). Three submissions of exercise 02, built from our
student copy — answered correctly, answered wrongly in one task, untouched — go through
``nbgrader autograde``; the gradebook must then hold full, partial and zero points.

nbgrader comes with the ``grading`` extra, which ``make test`` installs (and sets
``LRP_TUTOR_REQUIRE_NBGRADER=1``, so that a missing nbgrader fails there instead of
skipping).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lrp_tutor import assignments

if os.environ.get("LRP_TUTOR_REQUIRE_NBGRADER") != "1":
    pytest.importorskip("nbgrader", reason="nbgrader is in the grading extra: .[grading]")
from nbgrader.api import Gradebook  # noqa: E402

GRADED = "02_epsilon_rule.ipynb"
"""The exercise that goes through autograde (numpy only, a few seconds per submission)."""

STUDENTS = ("correct", "wrong", "untouched")

EPS_TIMES_Z = """    z = x @ W + b
    d = stabilize(z, eps)
    s = np.divide(R_out, d, out=np.zeros_like(d), where=d != 0)
    bias_share = (b * s).sum(axis=1)
    stabiliser_share = (eps * z * s).sum(axis=1) + (R_out * (d == 0)).sum(axis=1)
    return bias_share, stabiliser_share"""
"""Task 02.3 with the ε·z mistake (ε times z instead of ε times sign(z))."""


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course`` with this interpreter; fail with its log."""
    bin_dir = str(Path(sys.executable).parent)  # nbgrader calls `alembic` from PATH
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, nb: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


def _solution_text(cell: dict) -> str:
    """A source cell's code with the solution markers dropped: the instructor's answer."""
    lines = "".join(cell["source"]).split("\n")
    markers = (assignments.BEGIN_SOLUTION, assignments.END_SOLUTION)
    return "\n".join(line for line in lines if line.strip() not in markers)


def _answered(student: dict, source: dict, answers: dict[str, str] | None = None) -> dict:
    """The student copy with every solution cell answered: by the source's solution, or for
    the grade ids in ``answers`` by the given function body (in place of the stub line)."""
    nb = json.loads(json.dumps(student))
    by_id = {cell["id"]: cell for cell in source["cells"]}
    for cell in nb["cells"]:
        grading = cell["metadata"].get("nbgrader", {})
        if not grading.get("solution") or cell["cell_type"] != "code":
            continue
        grade_id = grading["grade_id"]
        if answers and grade_id in answers:
            lines = "".join(cell["source"]).split("\n")
            text = "\n".join(
                answers[grade_id] if "raise NotImplementedError" in line else line for line in lines
            )
        else:
            text = _solution_text(by_id[cell["id"]])
        cell["source"] = text.splitlines(keepends=True)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory: every exercise released as assignment ``all``, exercise 02 also as
    ``ex02``, and the three submissions of ``ex02`` autograded."""
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        'c = get_config()\nc.CourseDirectory.course_id = "lrp_tutor"\n', encoding="utf-8"
    )
    for path in sorted(assignments.SOURCE_DIR.glob("*.ipynb")):
        (course / "source" / "all").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, course / "source" / "all" / path.name)
    (course / "source" / "ex02").mkdir()
    shutil.copy(assignments.SOURCE_DIR / GRADED, course / "source" / "ex02" / GRADED)
    _nbgrader(course, "generate_assignment", "all", "--force")
    _nbgrader(course, "generate_assignment", "ex02", "--force")

    student = _read(assignments.STUDENT_DIR / GRADED)
    source = _read(assignments.SOURCE_DIR / GRADED)
    submissions = {
        "correct": _answered(student, source),
        "wrong": _answered(student, source, {"task-02-3": EPS_TIMES_Z}),
        "untouched": student,
    }
    for name, nb in submissions.items():
        _write(course / "submitted" / name / "ex02" / GRADED, nb)
    done = _nbgrader(course, "autograde", "ex02", "--force")
    (course / "autograde.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    return course


@pytest.mark.parametrize(
    "path", sorted(assignments.STUDENT_DIR.glob("*.ipynb")), ids=lambda p: p.name
)
def test_student_copy_is_nbgrader_s_release_but_for_the_stub_text(course, path):
    ours = _read(path)
    release = _read(course / "release" / "all" / path.name)
    assert [c["id"] for c in ours["cells"]] == [c["id"] for c in release["cells"]]
    for mine, theirs in zip(ours["cells"], release["cells"], strict=True):
        grading = theirs["metadata"].get("nbgrader", {})
        stub = grading.get("solution") and theirs["cell_type"] == "code"
        if stub:  # nbgrader writes `raise NotImplementedError()`, we name the task
            assert "".join(theirs["source"]).endswith("raise NotImplementedError()")
            assert 'raise NotImplementedError("Task' in "".join(mine["source"])
            mine_metadata = json.loads(json.dumps(mine["metadata"]))
            theirs_metadata = json.loads(json.dumps(theirs["metadata"]))
            # the checksum covers the stub, so ours is that of our stub
            assert mine_metadata["nbgrader"].pop("checksum") == assignments.nbgrader_checksum(mine)
            theirs_metadata["nbgrader"].pop("checksum")
            assert mine_metadata == theirs_metadata
        else:
            assert "".join(mine["source"]) == "".join(theirs["source"])
            assert mine["metadata"] == theirs["metadata"]
        assert mine["cell_type"] == theirs["cell_type"]


def _scores(course: Path, student: str) -> dict[str, float]:
    """Automatic points per grade cell of the student's autograded ``ex02``, and the total."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(GRADED[: -len(".ipynb")], "ex02", student)
        scores = {grade.name: grade.auto_score for grade in notebook.grades}
        scores["total"] = gradebook.find_submission("ex02", student).score
    return scores


def test_gradebook_shows_full_partial_and_zero_points(course):
    assert _scores(course, "correct") == {
        "check-02-1": 1.0,
        "check-02-2": 1.0,
        "check-02-3": 1.0,
        "total": 3.0,
    }
    assert _scores(course, "wrong") == {
        "check-02-1": 1.0,
        "check-02-2": 1.0,
        "check-02-3": 0.0,
        "total": 2.0,
    }
    assert _scores(course, "untouched") == {
        "check-02-1": 0.0,
        "check-02-2": 0.0,
        "check-02-3": 0.0,
        "total": 0.0,
    }


def test_autograde_finds_every_cell_and_reads_no_output_as_a_score(course):
    """No cell unknown to the gradebook, no check cell whose output nbgrader tries to read as
    partial credit (the check cells display their result and return None)."""
    log = (course / "autograde.log").read_text(encoding="utf-8")
    assert "Autograding" in log and "02_epsilon_rule" in log
    assert "does not exist in the database" not in log
    assert "partial credit" not in log
    assert "Missing grade cell" not in log


def test_autograded_notebooks_tell_the_student_why(course):
    """The hidden tests are back in the graded copy; a wrong answer fails with the checker's
    diagnosis, an untouched one as not implemented, a right one shows its green box."""

    def check_cells(student: str) -> dict[str, dict]:
        nb = _read(course / "autograded" / student / "ex02" / GRADED)
        return {
            c["metadata"]["nbgrader"]["grade_id"]: c
            for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("grade")
        }

    def text(cell: dict) -> str:
        parts = []
        for output in cell["outputs"]:
            parts += output.get("traceback", []) + [output.get("evalue", "")]
            parts.append("".join(output.get("data", {}).get("text/plain", "")))
        return "\n".join(parts)

    for student in STUDENTS:
        for cell in check_cells(student).values():
            assert "held_out=True).assert_passed()" in "".join(cell["source"])
    wrong = check_cells("wrong")["check-02-3"]
    assert [o["output_type"] for o in wrong["outputs"]] == ["error"]
    assert "multiplied ε by z instead of by sign(z)" in text(wrong)
    untouched = check_cells("untouched")["check-02-1"]
    assert "Not implemented yet" in text(untouched)
    right = check_cells("correct")["check-02-1"]
    assert [o["output_type"] for o in right["outputs"]] == ["display_data"]
    assert "— passed" in text(right)
