"""The machinery every checker shares.

A checker runs a student's function on a few *cases* (random layers, negative inputs,
biases, zero denominators, batches), compares each answer with a reference computed from
the rule book, and stops at the **first** difference. It then says, in words a student can
act on, which case failed, at which entry (which neuron *i*, *j*), what was expected and
what came back, and — by comparing the answer with the outputs of typical wrong
implementations (*variants*) — which mistake was most likely made.

A student's function that raises, returns ``None``, returns the wrong shape or NaN gets a
sentence, never a traceback dump.
"""

from __future__ import annotations

import contextvars
import functools
import html
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["CheckResult", "Task", "TASKS", "Case", "Failure", "RTOL", "ATOL"]

RTOL = 1e-9
"""Relative tolerance of every comparison (all references are computed in float64)."""

ATOL = 1e-12
"""Absolute tolerance of every comparison."""


# --------------------------------------------------------------------------------------
# The result a student sees.


@dataclass(frozen=True)
class CheckResult:
    """What a checker found: passed or not, and a message that says why.

    Attributes
    ----------
    task : str
        The task, e.g. ``"01.1"``.
    title : str
        The function the task asks for, e.g. ``"contributions(x, W)"``.
    passed : bool
        True when every case agreed with the reference.
    message : str
        On success what was checked; on failure the first failing case, the entry that
        differs (expected vs. got) and the likely mistake.
    implemented : bool
        False when the function still raises ``NotImplementedError``.

    Examples
    --------
    >>> r = CheckResult("01.1", "f(x)", False, "Case 1: expected 1, got 2.")
    >>> r
    ✘ Task 01.1 f(x) — failed
    Case 1: expected 1, got 2.
    >>> bool(r)
    False
    """

    task: str
    title: str
    passed: bool
    message: str
    implemented: bool = True

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"not implemented"``."""
        if self.passed:
            return "passed"
        return "failed" if self.implemented else "not implemented"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✔" if self.passed else "✘"
        return f"{mark} Task {self.task} {self.title} — {self.status}\n{self.message}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        colour, background = ("#1b5e20", "#e8f5e9") if self.passed else ("#b71c1c", "#ffebee")
        mark = "✔" if self.passed else "✘"
        return (
            f'<div style="border-left: 6px solid {colour}; background: {background}; '
            f'color: #212121; padding: 0.5em 1em; margin: 0.3em 0;">'
            f'<div style="color: {colour}; font-weight: bold;">{mark} Task {self.task} '
            f"<code>{html.escape(self.title)}</code> — {self.status}</div>"
            f'<div style="white-space: pre-wrap; font-family: monospace; margin-top: 0.3em;">'
            f"{html.escape(self.message)}</div></div>"
        )

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with the message unless the check passed (for grading).

        >>> CheckResult("01.1", "f(x)", True, "ok").assert_passed()
        """
        if not self.passed:
            raise AssertionError(str(self))


# --------------------------------------------------------------------------------------
# The task registry: which function each task asks for, and its checker.


@dataclass(frozen=True)
class Task:
    """One task of an exercise: the function a student writes and the checker for it."""

    id: str
    exercise: str
    function: str
    title: str
    checker: Callable[[Any], CheckResult]


TASKS: dict[str, Task] = {}
"""Every task, by id (``"01.1"``), in the order of the exercises."""


class Failure(Exception):
    """Raised inside a checker to stop at the first failing case with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _NotImplementedYet(Exception):
    pass


def checker(task: str, function: str, title: str) -> Callable[[Callable], Callable]:
    """Turn ``body(student_fn) -> summary`` into a checker returning a :class:`CheckResult`.

    ``body`` raises :class:`Failure` at the first failing case; it returns the sentence a
    student sees on success. The checker is registered in :data:`TASKS`.

    The checker takes the student's function and, keyword-only, ``held_out``: when True
    it also runs the held-out cases that ``body`` lists with :func:`numbered` (the
    assignments' hidden tests call ``checker(fn, held_out=True).assert_passed()``).
    """

    def wrap(body: Callable[[Callable], str]) -> Callable[[Any], CheckResult]:
        @functools.wraps(body)
        def run(student_fn: Any, *, held_out: bool = False) -> CheckResult:
            token = _GRADING.set(held_out)
            try:
                _check_callable(student_fn, run.__name__, function)
                summary = body(student_fn)
            except _NotImplementedYet as error:
                text = str(error) or f"Task {task}"
                return CheckResult(
                    task,
                    title,
                    False,
                    f"Not implemented yet: your function still raises NotImplementedError"
                    f"({text!r}). Replace that line by your code.",
                    implemented=False,
                )
            except Failure as failure:
                return CheckResult(task, title, False, failure.message)
            finally:
                _GRADING.reset(token)
            return CheckResult(task, title, True, summary)

        TASKS[task] = Task(task, task.split(".")[0], function, title, run)
        return run

    return wrap


def _check_callable(fn: Any, checker_name: str, function: str) -> None:
    if callable(fn):
        return
    hint = ""
    if fn is None or isinstance(fn, np.ndarray | float | int | tuple | list):
        hint = (
            f" Pass the function itself, without calling it: "
            f"checks.{checker_name}({function}), not checks.{checker_name}({function}(...))."
        )
    raise Failure(f"Expected a function, got {type(fn).__name__}.{hint}")


# --------------------------------------------------------------------------------------
# Cases: the inputs a student's function is run on.


@dataclass
class Case:
    """Inputs of one run, with a name a student recognises.

    ``number`` and ``total`` say which case of how many it is; ``names`` are the parameter
    names shown with the inputs (small arrays are printed so that the case can be
    reproduced by hand).
    """

    name: str
    args: tuple
    names: tuple[str, ...]
    number: int = 1
    total: int = 1
    held_out: bool = False

    def header(self) -> str:
        shown = ", ".join(f"{n} = {_show(a)}" for n, a in zip(self.names, self.args, strict=True))
        kind = " (held out for grading)" if self.held_out else ""
        return f'Case {self.number} of {self.total}{kind}, "{self.name}": {shown}'


_GRADING: contextvars.ContextVar[bool] = contextvars.ContextVar("grading", default=False)
"""True while a checker runs with ``held_out=True`` (the hidden test of a check cell)."""


def numbered(cases: Sequence[Case], held_out: Sequence[Case] = ()) -> list[Case]:
    """Number the cases 1…n (for the messages).

    ``held_out`` cases are added after the others only when the checker was called with
    ``held_out=True``, as the hidden tests of the assignments do: a student's check cell
    never runs them, so passing it does not guarantee the points.
    """
    cases = list(cases)
    if _GRADING.get():
        cases += [replace(case, held_out=True) for case in held_out]
    for k, case in enumerate(cases, start=1):
        case.number, case.total = k, len(cases)
    return cases


def _show(a: Any) -> str:
    if isinstance(a, np.ndarray):
        if a.size <= 16:
            text = np.array2string(a, precision=4, suppress_small=True, separator=", ")
            return " ".join(text.split())
        return f"array of shape {a.shape}"
    if isinstance(a, float):
        return f"{a:g}"
    if hasattr(a, "detach") and hasattr(a, "shape"):  # a torch tensor
        return f"tensor of shape {tuple(a.shape)}"
    if callable(a):
        return getattr(a, "label", None) or getattr(a, "__name__", "a function")
    return repr(a)


def _copy(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, list):
        return list(a)
    return a


def call(fn: Callable, case: Case, shape_hint: str = "") -> Any:
    """Run ``fn(*case.args)`` on copies of the inputs; turn every problem into a sentence.

    ``shape_hint`` is added when numpy could not broadcast or multiply two arrays together.
    """
    copies = tuple(_copy(a) for a in case.args)
    try:
        with np.errstate(all="ignore"):  # a 0/0 becomes NaN, which the comparison explains
            out = fn(*copies)
    except NotImplementedError as error:
        raise _NotImplementedYet(str(error)) from None
    except Exception as error:  # the student's bug, reported in words
        text = " ".join(str(error).split())
        shapes = any(word in text for word in ("broadcast", "matmul", "aligned", "shape"))
        hint = f"\n{shape_hint}" if shape_hint and shapes else ""
        raise Failure(
            f"{case.header()}\nYour function raised {type(error).__name__}: {text}"
            f"{_where(error)}{hint}"
        ) from None
    for name, original, copy in zip(case.names, case.args, copies, strict=True):
        if isinstance(original, np.ndarray) and not np.array_equal(original, copy, equal_nan=True):
            raise Failure(
                f"{case.header()}\nYour function changed its argument `{name}` in place. "
                f"Work on a copy ({name} = {name}.copy()) or build a new array, so that the "
                "caller's data stay as they were."
            )
    return out


_HERE = os.path.dirname(os.path.abspath(__file__))


def _where(error: BaseException) -> str:
    """' (in `f`, line 3: `return x * W`)' for the last frame in the student's code."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [
        f
        for f in frames
        if not os.path.abspath(f.filename).startswith(_HERE)
        and "site-packages" not in f.filename
        and f"{os.sep}numpy{os.sep}" not in f.filename
        and f"{os.sep}torch{os.sep}" not in f.filename
    ]
    if not own:
        return "."
    frame = own[-1]
    code = f": `{frame.line.strip()}`" if frame.line else ""
    return f" (in `{frame.name}`, line {frame.lineno}{code})."


# --------------------------------------------------------------------------------------
# Turning an answer into an array, and comparing it with the reference.


def as_array(out: Any, case: Case, what: str, dtype: type = np.float64) -> np.ndarray:
    """The student's answer as a numpy array (torch tensors and lists accepted)."""
    if out is None:
        raise Failure(
            f"{case.header()}\nYour function returned None; expected {what}. "
            "Did you forget the `return` statement?"
        )
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    try:
        array = np.asarray(out, dtype=dtype)
    except (TypeError, ValueError):
        raise Failure(
            f"{case.header()}\nYour function returned {type(out).__name__} "
            f"{_short(out)}; expected {what}."
        ) from None
    original = getattr(out, "dtype", None)
    if original is not None and original in (np.float32, np.float16):
        array = array.view(_LowPrecision)
    return array


class _LowPrecision(np.ndarray):
    """An answer that came back in float32/float16 (the checks compare to 1e-9)."""


_LOW_PRECISION = (
    "Your function returned float32 numbers, which carry only about 7 digits; the check "
    "compares float64 to 1e-9. Keep float64 (in torch: .double(), or torch.from_numpy(x) "
    "without .float())."
)


def as_pair(out: Any, case: Case, what: str) -> tuple[Any, Any]:
    """Check that ``out`` is a pair (a tuple of two things) and return it."""
    if isinstance(out, tuple | list) and len(out) == 2:
        return out[0], out[1]
    got = (
        f"a {type(out).__name__} of length {len(out)}"
        if isinstance(out, tuple | list)
        else (f"{type(out).__name__} {_short(out)}")
    )
    raise Failure(
        f"{case.header()}\nExpected a pair {what}, got {got}. Return both: `return a, b`."
    )


def _short(a: Any) -> str:
    text = " ".join(repr(a).split())
    return text if len(text) <= 60 else text[:57] + "..."


Variant = tuple[str, Callable[[], Any]]
"""A typical wrong implementation: (the diagnosis, a function computing its output)."""


def _matches(got: np.ndarray, value: Any) -> bool:
    try:
        value = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return value.shape == got.shape and bool(
        np.allclose(got, value, rtol=RTOL, atol=ATOL, equal_nan=True)
    )


def diagnose(got: np.ndarray, variants: Iterable[Variant]) -> str | None:
    """The diagnosis of the first wrong variant whose output equals ``got``, or None."""
    with np.errstate(all="ignore"):
        for diagnosis, compute in variants:
            try:
                value = compute()
            except (ValueError, IndexError, TypeError):  # the variant does not fit this case
                continue
            if _matches(got, value):
                return diagnosis
    return None


def number(v: Any, other: Any = None) -> str:
    """A value short enough to read; with enough digits to tell it from ``other``."""
    v = float(v) + 0.0  # no "-0"
    if not np.isfinite(v):
        return str(v)
    for digits in (6, 10, 17):
        text = f"{v:.{digits}g}"
        if other is None or not np.isfinite(other) or text != f"{float(other):.{digits}g}":
            return text
    return text


def compare(
    got: np.ndarray,
    expected: np.ndarray,
    case: Case,
    *,
    what: str,
    label: Callable[[tuple[int, ...]], str],
    variants: Iterable[Variant] = (),
    hint: str = "",
    nonfinite: str = "",
    shape_hint: str = "",
) -> None:
    """Raise :class:`Failure` unless ``got`` equals ``expected`` (to RTOL/ATOL).

    Parameters
    ----------
    what : str
        What the array is, e.g. ``"z_ij, shape (n_in, n_out)"``.
    label : callable
        Index → words, e.g. ``(1, 2) -> "i=1, j=2"``.
    variants : iterable of (diagnosis, compute)
        Typical wrong implementations; the first whose output equals ``got`` names the
        likely mistake.
    hint : str
        What to check when no known mistake matches.
    nonfinite : str
        What NaN/inf most likely means in this task.
    shape_hint : str
        What the axes of the expected shape mean.
    """
    variants = list(variants)
    low_precision = isinstance(got, _LowPrecision)
    got = np.asarray(got)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        diagnosis = diagnose(got, variants)
        text = (
            f"{case.header()}\nExpected {what} with shape {expected.shape}{shape_hint}, "
            f"got shape {got.shape}."
        )
        if diagnosis:
            text += f"\nLikely mistake: {diagnosis}"
        raise Failure(text)
    if np.allclose(got, expected, rtol=RTOL, atol=ATOL):
        return
    bad = ~np.isclose(got, expected, rtol=RTOL, atol=ATOL)
    index = tuple(int(k) for k in np.argwhere(bad)[0]) if bad.ndim else ()
    where = label(index)
    at = f"At {where}: expected" if where else "Expected"
    count = f" ({int(bad.sum())} of {bad.size} entries differ)" if bad.size > 1 else ""
    text = (
        f"{case.header()}\n{at} {number(expected[index], got[index])}, "
        f"got {number(got[index], expected[index])}{count}."
    )
    diagnosis = diagnose(got, variants)
    if diagnosis:
        text += f"\nLikely mistake: {diagnosis}"
    elif not np.all(np.isfinite(got)):
        text += f"\nYour answer contains NaN or inf. {nonfinite or 'Look for a division by 0.'}"
    elif low_precision:
        text += f"\n{_LOW_PRECISION}"
    elif hint:
        text += f"\n{hint}"
    raise Failure(text)


def ij(symbol: str = "") -> Callable[[tuple[int, ...]], str]:
    """A label for (i, j) entries: ``"i=1, j=2"`` (with the symbol, e.g. ``R_{1←2}``)."""

    def label(index: tuple[int, ...]) -> str:
        i, j = index
        return f"i={i}, j={j}" + (f" ({symbol.format(i=i, j=j)})" if symbol else "")

    return label


def entry(*names: str) -> Callable[[tuple[int, ...]], str]:
    """A label naming each axis: ``entry("n", "i")((0, 2)) == "n=0, i=2"``."""

    def label(index: tuple[int, ...]) -> str:
        return ", ".join(f"{n}={k}" for n, k in zip(names, index, strict=False))

    return label
