"""``python -m lrp_tutor …`` (and ``torchrun … -m lrp_tutor explain-dataset …``): the CLI."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
