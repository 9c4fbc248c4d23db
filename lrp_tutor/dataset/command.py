"""``lrp-tutor explain-dataset``: a model and a data set named by import path, into a store.

::

    lrp-tutor explain-dataset --model lrp_tutor.zoo:clever_hans().model \\
        --data lrp_tutor.zoo:clever_hans().data --store hans.zarr --composite epsilon_plus_flat
    torchrun --nproc_per_node=4 -m lrp_tutor explain-dataset --model … --data … --store …

An import path is ``module:name``, where ``name`` is a chain of attributes, each of which
may be called without arguments (``factory().model``). Nothing is evaluated: the path is
parsed, imported and followed, one attribute at a time.

>>> resolve("lrp_tutor.zoo:MODELS")[0]
'digits_mlp'
>>> rule_or_composite("Epsilon(0.25)", "rules")
Epsilon(epsilon=0.25)
"""

from __future__ import annotations

import ast
import importlib
import re
from typing import Any

from ..errors import InputError

_STEP = re.compile(r"([A-Za-z_]\w*)(\(\))?")


def resolve(path: str) -> Any:
    """Import ``module:attr().attr…`` and return the object it names."""
    module_name, _, chain = path.partition(":")
    if not module_name or not chain:
        raise InputError(f"An import path looks like 'package.module:name', got {path!r}.")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"Cannot import {module_name!r} (from {path!r}): {error}") from error
    for part in chain.split("."):
        step = _STEP.fullmatch(part)
        if step is None:
            raise InputError(f"{part!r} in {path!r} is not a name or a call name().")
        try:
            value = getattr(value, step.group(1))
        except AttributeError as error:
            raise InputError(f"{path!r}: no attribute {step.group(1)!r}.") from error
        if step.group(2):
            value = value()
    return value


def rule_or_composite(spec: str | None, kind: str) -> Any:
    """``"Name"``, ``"Name(1.0, 0.5)"`` (from :mod:`lrp_tutor.rules` or
    :mod:`lrp_tutor.composites`; arguments are literals) or an import path with ``:``."""
    if spec is None:
        return None
    if ":" in spec:
        value = resolve(spec)
        return value() if isinstance(value, type) else value
    match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(\((.*)\))?\s*", spec)
    if match is None:
        raise InputError(f"--{kind[:-1]} {spec!r}: expected Name or Name(arguments).")
    module = importlib.import_module(f"lrp_tutor.{kind}")
    factory = getattr(module, match.group(1), None)
    if not callable(factory):
        raise InputError(f"lrp_tutor.{kind} has no {match.group(1)!r}.")
    try:
        arguments = ast.literal_eval(f"({match.group(3)},)") if match.group(3) else ()
    except (ValueError, SyntaxError) as error:
        raise InputError(f"The arguments of {spec!r} must be numbers: {error}") from error
    return factory(*arguments)


def run(args: Any) -> str:
    """Run ``explain-dataset`` with the parsed arguments; the summary line to print."""
    from .explain import explain_dataset

    target: Any = args.target
    if target is not None and target != "label":
        target = int(target)
    model, data = resolve(args.model), resolve(args.data)
    for name, value in (("--model", model), ("--data", data)):
        if callable(value) and not hasattr(value, "__len__") and not hasattr(value, "forward"):
            raise InputError(f"{name} names a function; to call it, end the path with ().")
    store = explain_dataset(
        model,
        data,
        rule=rule_or_composite(args.rule, "rules"),
        composite=rule_or_composite(args.composite, "composites"),
        target=target,
        store=args.store,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    return repr(store)


def add_parser(commands: Any) -> None:
    """The ``explain-dataset`` subcommand and its options."""
    parser = commands.add_parser(
        "explain-dataset",
        help="explain a data set into a Zarr store (resumable; shards itself under torchrun)",
    )
    parser.add_argument("--model", required=True, help="import path, e.g. pkg.mod:make_model()")
    parser.add_argument("--data", required=True, help="import path of a Dataset or DataLoader")
    parser.add_argument("--store", required=True, help="the store directory (resumed if there)")
    parser.add_argument("--rule", default=None, help="e.g. Epsilon(0.25), ZPlus")
    parser.add_argument("--composite", default=None, help="e.g. epsilon_plus_flat")
    parser.add_argument("--target", default=None, help="a class index, or 'label'")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="samples per store chunk (default: ≥ 4 MiB)"
    )
    parser.add_argument("--device", default=None, help="default: the model's (or LOCAL_RANK)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
