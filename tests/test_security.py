"""Nothing is unpickled unchecked, nothing goes to the network.

* The zoo verifies a file's SHA-256 against the manifest before anything is unpickled, and
  unpickles with ``torch.load(..., weights_only=True)``, so that even a file whose checksum
  was forged together with the manifest cannot run code.
* No module of the package loads pickles any other way (checked on the source).
* Importing lrp_tutor, explaining a zoo model, walking it, drawing a figure, building a widget
  and running the demo open no socket (checked in a fresh interpreter whose socket functions
  refuse and record every call).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lrp_tutor import zoo
from lrp_tutor.errors import WeightsError
from lrp_tutor.zoo import store

PACKAGE = Path(zoo.__file__).resolve().parents[1]


def test_zoo_loads_with_weights_only_after_the_checksum(monkeypatch):
    calls = []
    real_load = torch.load
    real_sha = store.sha256_of

    def spy_load(f, *args, **kwargs):
        calls.append(("load", kwargs))
        return real_load(f, *args, **kwargs)

    def spy_sha(data):
        calls.append(("sha256", len(data)))
        return real_sha(data)

    monkeypatch.setattr(torch, "load", spy_load)
    monkeypatch.setattr(store, "sha256_of", spy_sha)
    for name in zoo.MODELS:
        calls.clear()
        getattr(zoo, name)()
        assert [kind for kind, _ in calls] == ["sha256", "load"], name
        kwargs = calls[1][1]
        assert kwargs.get("weights_only") is True, (name, kwargs)
        assert kwargs.get("map_location") == "cpu", (name, kwargs)


class _Payload:
    """A pickle that runs code when it is unpickled without weights_only."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_forged_checksum_cannot_run_code(weights_copy, tmp_path):
    marker = tmp_path / "pwned"
    path = weights_copy / "digits_mlp.pt"
    torch.save({"0.weight": _Payload(str(marker))}, path)
    manifest = json.loads((weights_copy / "manifest.json").read_text())
    manifest["models"]["digits_mlp"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="torch cannot read the weight file"):
        zoo.digits_mlp(weights_dir=weights_copy)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            owner = (
                func.value.id
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else None
            )
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            yield node, owner, name


def test_the_source_loads_nothing_unsafely():
    """Every torch.load has weights_only=True, numpy never allows pickles, no pickle module,
    no network library is imported anywhere in the package."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    loads = 0
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        where = file.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                for module in names:
                    top = module.split(".")[0]
                    assert top not in {"pickle", "dill", "cloudpickle", "marshal", "shelve"}, where
                    assert top not in {"urllib", "http", "requests", "socket", "ftplib"}, where
        for call, owner, name in _calls(tree):
            keywords = {k.arg: k.value for k in call.keywords}
            if owner == "torch" and name == "load":
                loads += 1
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, where
            if owner in {"np", "numpy"} and name == "load":
                flag = keywords.get("allow_pickle")
                assert flag is None or (isinstance(flag, ast.Constant) and flag.value is False)
            assert not (owner == "torch" and name == "hub"), where
    assert loads >= 1  # the zoo's loader was found


NO_NETWORK = textwrap.dedent(
    """
    import socket, sys
    attempts = []

    def refuse(what):
        def call(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"lrp_tutor tried to use the network: {what}{args[:2]}")
        return call

    class NoSocket(socket.socket):
        def __init__(self, family=-1, *args, **kwargs):
            if family in (socket.AF_INET, socket.AF_INET6, -1):
                refuse("socket.socket")(family)
            super().__init__(family, *args, **kwargs)

        def connect(self, *args):
            refuse("connect")(*args)

    socket.socket = NoSocket
    socket.create_connection = refuse("create_connection")
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.gethostbyname = refuse("gethostbyname")

    import matplotlib
    matplotlib.use("Agg")
    import io, warnings
    warnings.simplefilter("ignore")
    import lrp_tutor as lt
    from lrp_tutor import demo, viz, widgets, zoo

    model = zoo.digits_cnn()
    x, y = zoo.digits_samples()
    e = lt.explain(model, x[:4], composite=lt.composites.epsilon_gamma_box(0.0, 1.0))
    walk = lt.Walkthrough(model).forward(x[0]).backward(rule=lt.rules.AlphaBeta())
    figure = viz.heatmap(e.relevance[0, 0].numpy())
    figure.savefig(io.BytesIO(), format="png")
    walk[0].messages.plot()
    widgets.rule_explorer(model, x[:1], live=False)
    demo.run_demo(sys.argv[1], rules=["epsilon"], verbose=False)
    print("ATTEMPTS", attempts)
    """
)


def test_no_network_at_import_explanation_figure_widget_or_demo(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}}
    env["MPLBACKEND"] = "Agg"
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    out = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ATTEMPTS []" in result.stdout, result.stdout[-2000:]
    assert out.stat().st_size > 1000
