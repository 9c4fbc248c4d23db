"""The main job: `lrp-tutor demo` writes a figure and prints the ledger."""

import struct

import pytest

from lrp_tutor import InputError
from lrp_tutor.cli import main
from lrp_tutor.demo import run_demo


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_demo_writes_a_figure_and_prints_the_ledger(tmp_path, capsys):
    out = run_demo(out=tmp_path / "fig" / "demo.png", rules=["lrp0", "epsilon_plus_flat"])
    width, height = _png_size(out)
    assert width > 600 and height > 600  # three rows of heatmaps
    printed = capsys.readouterr().out
    assert "Conservation holds" in printed
    assert printed.count("rule lrp0") == 3 and printed.count("rule epsilon_plus_flat") == 3
    assert "Σ R_out" in printed  # the ledger's header


def test_cli_demo_and_unknown_rule(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d.png"), "--rule", "zplus"]) == 0
    assert (tmp_path / "d.png").exists()
    with pytest.raises(InputError, match="Unknown --rule 'nope'.*epsilon"):
        run_demo(out=tmp_path / "x.png", rules=["nope"], verbose=False)
    assert not (tmp_path / "x.png").exists()


def test_demo_refuses_a_missing_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        run_demo(out=tmp_path / "x.png", device="cuda", verbose=False)
