"""The guided course in notebooks/: structure, clean stored outputs, and copies that run.

nbval (``pytest --nbval notebooks``) re-executes every notebook and compares its outputs with
the stored ones; these tests check what nbval does not: that every notebook opens with its
learning objectives and prerequisites and ends with "Check yourself", that no widget state or
error is stored, that the lecture demo is a slide deck, and that ``copy_course`` copies the
notebooks somewhere else, where they still run.

Run this file as a script to re-execute notebooks and store today's outputs, cleaned:

    python tests/test_notebooks.py                      # every notebook
    python tests/test_notebooks.py notebooks/03_*.ipynb  # some
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lrp_tutor.course import copy_course

FOLDER = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
EXPECTED = [
    "01_conservation_by_hand.ipynb",
    "02_stepping_through_a_digits_mlp.ipynb",
    "03_the_epsilon_rule.ipynb",
    "04_the_alpha_beta_rule.ipynb",
    "05_convolutions_and_pooling.ipynb",
    "06_lrp0_is_gradient_times_input.ipynb",
    "07_real_models.ipynb",
    "08_evaluating_explanations.ipynb",
    "09_unmasking_a_clever_hans.ipynb",
    "10_deep_taylor_decomposition.ipynb",
    "11_lrp_for_attention.ipynb",
    "12_one_attention_head.ipynb",
    "lecture_demo.ipynb",
]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
MAX_PNG_BYTES = 120_000
MAX_NOTEBOOK_BYTES = 1_500_000


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _outputs(nb: nbformat.NotebookNode):
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            yield index, output


def _markdown(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


def test_the_course_has_every_notebook():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_objectives_and_prerequisites(path):
    opening = "\n".join(_markdown(_read(path))[:2])
    assert "Learning objectives" in opening, f"{path.name}: no learning objectives at the top"
    assert "Prerequisites" in opening, f"{path.name}: no prerequisites at the top"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_check_yourself(path):
    nb = _read(path)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and "Check yourself" in last.source, (
        f"{path.name}: the last cell is not the 'Check yourself' section"
    )
    assert re.search(r"^1\. ", last.source, flags=re.M), f"{path.name}: no numbered questions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stores_no_widget_state(path):
    nb = _read(path)
    assert "widgets" not in nb.metadata, f"{path.name}: metadata.widgets holds widget state"
    for index, output in _outputs(nb):
        data = output.get("data", {})
        assert WIDGET_STATE not in data, f"{path.name}, cell {index}: widget state in an output"
        assert WIDGET_VIEW not in data, (
            f"{path.name}, cell {index}: a widget view without its state (shows an error when "
            "opened); re-run `python tests/test_notebooks.py` to clean it"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stores_no_errors_and_was_run_in_order(path):
    nb = _read(path)
    for index, output in _outputs(nb):
        assert output.output_type != "error", f"{path.name}, cell {index}: an error output"
        if output.output_type == "stream":
            assert output.name == "stdout", f"{path.name}, cell {index}: stderr {output.text!r}"
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: not executed top to bottom in one run (execution counts {counts})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_only_the_public_api(path):
    private = re.compile(r"lrp_tutor(\.\w+)*\._\w+|from \.+\w* import|\._[a-z]\w*\(")
    for index, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code":
            match = private.search(cell.source)
            assert match is None, f"{path.name}, cell {index}: private name {match.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_figures_are_small(path):
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} B"
    for index, output in _outputs(_read(path)):
        png = output.get("data", {}).get("image/png", "")
        # base64: 4 characters per 3 bytes
        assert len(png) * 3 // 4 < MAX_PNG_BYTES, f"{path.name}, cell {index}: a large figure"


def test_lecture_demo_is_a_slide_deck():
    nb = _read(FOLDER / "lecture_demo.ipynb")
    types = [cell.metadata.get("slideshow", {}).get("slide_type") for cell in nb.cells]
    assert None not in types, "every cell of the lecture demo needs slideshow.slide_type"
    assert set(types) <= SLIDE_TYPES, f"unknown slide types {set(types) - SLIDE_TYPES}"
    assert types[0] == "slide"
    assert types.count("slide") >= 8, "a 20-minute demo needs more than a handful of slides"
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "lt.lecture_mode()" in code, "the demo should switch lecture mode on"


def test_deep_taylor_notebook_shows_every_root_point_rule_equal_to_the_rule_book():
    """Notebook 10 derives z⁺, w², z^B (and, bias-free, LRP-0 and γ) from root points and
    compares each with lt.rules; its stored outputs must say they agree, and that only w²'s
    root point leaves the pixel box."""
    nb = _read(FOLDER / "10_deep_taylor_decomposition.ipynb")
    text = "".join(output.get("text", "") for _, output in _outputs(nb))
    compared = re.findall(r"^(\S+).*(?:equal|equal to the root point): (True|False)$", text, re.M)
    assert sorted(name for name, _ in compared) == sorted(["z⁺", "w²", "z^B", "LRP-0", "γ"])
    assert all(flag == "True" for _, flag in compared), compared
    outside = re.findall(r"^(\S+) .*inside the box \[0, 1\]²: False$", text, re.M)
    assert outside == ["w²"]


def test_copy_course_copies_every_notebook_and_refuses_to_overwrite(tmp_path):
    dest = tmp_path / "course"
    written = copy_course("notebooks", dest)
    assert sorted(p.name for p in written) == EXPECTED
    for path in written:
        assert path.read_bytes() == (FOLDER / path.name).read_bytes()
    mine = dest / EXPECTED[0]
    mine.write_text("my own work")
    with pytest.raises(FileExistsError, match="nothing was copied"):
        copy_course("notebooks", dest)
    assert mine.read_text() == "my own work"


def test_a_copied_notebook_runs_there(tmp_path):
    """The fastest notebook, copied out of the checkout, runs top to bottom without errors."""
    from nbclient import NotebookClient

    dest = tmp_path / "course"
    copy_course("notebooks", dest)
    nb = _read(dest / EXPECTED[0])
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(dest)}}
    ).execute()
    errors = [output for _, output in _outputs(nb) if output.output_type == "error"]
    assert not errors, errors
    assert any("Conservation holds" in output.get("text", "") for _, output in _outputs(nb)), (
        "the copied notebook ran, but its conservation check printed nothing"
    )


# ------------------------------------------------------------------------------------------
# Every number the prose states comes from a cell that nbval checks

PROSE_AUDITED = EXPECTED
"""The notebooks whose prose is audited: every one of the course (a new one joins at once)."""

MEASURED_NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)\s?\\?%"  # a percentage: 64 %, 91%, 91\% in LaTeX
    r"|(?<![\w.])(\d+(?:\.\d+)?)\s?×(?!\s?\d)"  # a ratio: 3×, 1.9× (not a size: 8×8, 3 × 3)
    r"|(?<![\w.])(\d+\.\d+)(?!\w|\.\d)"  # a decimal: 0.927 (also at the end of a sentence)
)
"""What prose may only state when a checked cell prints it. Integers are not checked:
counts, sizes, section and notebook numbers are constants of the setup."""

ALLOWED_IN_PROSE = {
    "0.25": "ε = 0.25 · RMS(z), the constant of Montavon's tutorial, quoted in notebook 03",
    "10.3": "section 10.3 of Montavon et al. 2019, cited in notebook 10",
}
"""Numbers prose may state although no cell prints them or sets them, each with its reason
(a constant quoted from a paper, never a measurement). Keep it short."""

NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")
IGNORE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_CHECK_OUTPUT_IGNORE")
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception"}


def _ignored(cell) -> bool:
    """Whether nbval does not compare this cell's output."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    return bool(tags & IGNORE_TAGS) or any(m in cell.source for m in IGNORE_MARKERS)


def _sanitize(text: str) -> str:
    """Apply tests/nbval_sanitize.cfg: what it masks, nbval does not check."""
    config = (Path(__file__).parent / "nbval_sanitize.cfg").read_text()
    pairs = re.findall(r"^regex: (.*)\nreplace: (.*)$", config, flags=re.M)
    for pattern, replacement in pairs:
        text = re.sub(pattern, replacement, text)
    return text


def _printed_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        else:
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _prose(source: str) -> str:
    """Markdown without inline code spans and HTML tags (code, not claims)."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"`[^`]*`", " ", source))


def unbacked_numbers(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell index, token) for every measured-looking number in a markdown cell that neither a
    code cell sets as a constant nor a neighbouring nbval-checked cell prints (sanitised).

    Prose speaks about the cell just above or just below it, so a number counts as printed
    only when the code cell right before or right after the markdown cell prints it; the
    closing "Check yourself" cell may refer to any checked cell. An ignored cell prints
    nothing that counts."""
    constants: set[float] = set()
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    printed: dict[int, list[float]] = {}
    for i in code:
        cell = nb.cells[i]
        constants.update(float(n) for n in NUMBER.findall(cell.source))
        text = "" if _ignored(cell) else _sanitize(_printed_text(cell))
        printed[i] = [float(n) for n in NUMBER.findall(text)]

    def values_near(index: int) -> list[float]:
        if "Check yourself" in nb.cells[index].source:
            return [v for i in code for v in printed[i]]
        before = [i for i in code if i < index][-1:]
        after = [i for i in code if i > index][:1]
        return [v for i in before + after for v in printed[i]]

    def backed(token: str, percent: bool, values: list[float]) -> bool:
        if token in ALLOWED_IN_PROSE:
            return True
        p = float(token)
        digits = len(token.split(".")[1]) if "." in token else 0
        candidates = [p / 100] if percent else [p]
        if any(c in constants for c in candidates):
            return True
        for q in values:
            if round(q, digits) == p or (percent and round(100 * q, digits) == p):
                return True
        return False

    missing = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        values = values_near(index)
        for match in MEASURED_NUMBER.finditer(_prose(cell.source)):
            token = next(g for g in match.groups() if g is not None)
            if not backed(token, match.group(1) is not None, values):
                missing.append((index, match.group(0)))
    return missing


@pytest.mark.parametrize("name", PROSE_AUDITED, ids=lambda n: n.removesuffix(".ipynb"))
def test_every_number_in_the_prose_is_printed_by_a_checked_cell(name):
    missing = unbacked_numbers(_read(FOLDER / name))
    assert not missing, (
        f"{name}: the prose states numbers that no cell checked by nbval prints (or that only "
        f"an NBVAL_IGNORE_OUTPUT cell prints): {missing}. Print the number (or the sentence) "
        "from a code cell nbval compares, or refer to the cell instead of quoting it."
    )


@pytest.mark.parametrize("name", PROSE_AUDITED, ids=lambda n: n.removesuffix(".ipynb"))
def test_an_ignored_cell_says_why(name):
    path = FOLDER / name
    for index, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code" and _ignored(cell):
            lines = cell.source.splitlines()
            reason = [line for line in lines[1:3] if line.startswith("#") and len(line) > 10]
            assert reason, (
                f"{path.name}, cell {index}: nbval ignores its output; the next line should "
                "say why in a comment (e.g. '# (timings differ from run to run)')"
            )


def test_the_prose_audit_finds_a_quoted_timing():
    def notebook(ignored: bool):
        marker = "# NBVAL_IGNORE_OUTPUT\n# (timings)\n" if ignored else ""
        return nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_markdown_cell(
                    "It costs 1.9–3× a gradient, 64 % of it, $\\approx 70\\%$."
                ),
                nbformat.v4.new_code_cell(
                    marker + "print(ratio)",
                    outputs=[
                        nbformat.v4.new_output("stream", name="stdout", text="1.9 3 0.64 0.7\n")
                    ],
                ),
                nbformat.v4.new_markdown_cell("An 8×8 image, ε = 0.25, 16 × 3 × 3 = 144."),
                nbformat.v4.new_code_cell("rule = Epsilon(0.25)"),
                nbformat.v4.new_markdown_cell("Far from the cell that printed it: 1.9."),
            ]
        )

    assert unbacked_numbers(notebook(ignored=True)) == [
        (0, "1.9"),
        (0, "3×"),
        (0, "64 %"),
        (0, "70\\%"),
        (4, "1.9"),
    ]
    assert unbacked_numbers(notebook(ignored=False)) == [(4, "1.9")]


# ------------------------------------------------------------------------------------------
# Re-executing and cleaning (python tests/test_notebooks.py [paths])


def clean(path: Path) -> None:
    """Strip widget state and widget views (text/plain stays), and per-cell timing metadata."""
    nb = _read(path)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                data.pop(WIDGET_VIEW, None)
                data.pop(WIDGET_STATE, None)
    nbformat.write(nb, path)


def execute(path: Path) -> float:
    """Run ``path`` top to bottom in place, store today's outputs cleaned; return seconds."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            "--ExecutePreprocessor.record_timing=False",
            "--ExecutePreprocessor.store_widget_state=False",
            "--ExecutePreprocessor.timeout=600",
            str(path),
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    clean(path)
    return seconds


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or NOTEBOOKS
    for notebook in paths:
        print(f"{notebook.name}: {execute(notebook):.1f} s", flush=True)
