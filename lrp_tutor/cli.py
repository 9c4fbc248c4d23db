"""The ``lrp-tutor`` command.

::

    lrp-tutor demo [--out FIG.png] [--rule RULE …] [--device cpu|cuda]
    lrp-tutor notebooks DEST          copy the course notebooks into DEST
    lrp-tutor exercises DEST          copy the student copies of the exercises into DEST
    lrp-tutor exercises build [--check] [--force]   regenerate the student copies
                                      (never overwrites edited copies without --force)
    lrp-tutor explain-dataset --model MOD:NAME --data MOD:NAME --store PATH [options]
                                      explain a data set into a Zarr store (torchrun-aware)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import LRPError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrp-tutor", description="Layer-wise Relevance Propagation, step by step."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="explain shipped digits and a photograph, print the ledger, save a figure"
    )
    demo.add_argument("--out", default="lrp_demo.png", help="where to write the PNG figure")
    demo.add_argument(
        "--rule",
        action="append",
        dest="rules",
        metavar="RULE",
        help="a rule to show (repeatable): lrp0, epsilon, gamma, alphabeta, zplus, "
        "epsilon_plus_flat… (default: three)",
    )
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")

    notebooks = commands.add_parser("notebooks", help="copy the course notebooks into DEST")
    notebooks.add_argument("dest", type=Path)

    exercises = commands.add_parser(
        "exercises", help="copy the student copies into DEST, or `build` them from the sources"
    )
    exercises.add_argument("dest", help="a folder, or the word `build`")
    exercises.add_argument(
        "--check", action="store_true", help="with build: only report stale student copies"
    )
    exercises.add_argument(
        "--force",
        action="store_true",
        help="with build: also overwrite or delete student copies that were edited by hand",
    )
    exercises.add_argument("--source", type=Path, default=Path("exercises/source"))
    exercises.add_argument("--student", type=Path, default=Path("exercises/student"))

    from .dataset.command import add_parser

    add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(out=args.out, rules=args.rules, device=args.device)
        elif args.command == "explain-dataset":
            from .dataset.command import run

            summary = run(args)
            if os.environ.get("RANK", "0") == "0":  # one line, also under torchrun
                print(summary)
        elif args.command == "notebooks":
            from .course import copy_course

            written = copy_course("notebooks", args.dest)
            print(f"Copied {len(written)} notebooks to {args.dest}.")
        elif args.dest == "build":
            from .assignments import build, check_up_to_date

            if args.check:
                stale = check_up_to_date(args.source, args.student)
                for path in stale:
                    print(f"out of date: {path}")
                if stale:
                    print("Run `make exercises` (or `lrp-tutor exercises build`) and commit.")
                    return 1
                print("Every student copy is up to date.")
            else:
                written = build(args.source, args.student, force=args.force)
                print(f"Updated {len(written)} student copies in {args.student}.")
        else:
            from .course import copy_course

            written = copy_course("exercises", args.dest)
            print(f"Copied {len(written)} exercises to {args.dest}.")
    except (LRPError, OSError) as error:  # one line on stderr, no traceback
        print(f"lrp-tutor: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


def _one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; an OSError says what and where, as Python does
    (``[Errno 13] Permission denied: 'dest'``)."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
