"""The rule explorer in a real JupyterLab 4, driven by headless Chromium (playwright).

A temporary root folder holds a notebook that shows the rule explorer (the digits CNN of
lrp_tutor.zoo when it loads, else a small CNN of the same shape). JupyterLab is started on
127.0.0.1 with a free port and a token; Chromium opens the notebook, runs all cells, moves the
ε slider with the keyboard and checks that the heatmap's PNG bytes changed. The same check runs
in Voilà (``voila NOTEBOOK --no-browser``, no token) on a notebook that shows the explorer for the
digits CNN and one shipped digit.

Needs Debian's Chromium at /usr/bin/chromium and the Python package ``playwright`` (never
``playwright install``: the system browser is used). Skipped, saying why, when either is
missing; the Voilà test also needs ``voila``. Every wait is bounded; the server and the
browser are stopped in teardown.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SERVER_START_S = 120
KERNEL_READY_S = 120
WIDGET_SHOWN_S = 180
IMAGE_CHANGED_S = 60

NOTEBOOK_SOURCE = """\
import torch
from torch import nn

import lrp_tutor.widgets as widgets

try:  # the shipped digits CNN and a digit, when the zoo has them
    from lrp_tutor import zoo

    model = zoo.digits_cnn()
    x = zoo.digits_samples()[0][:1]
    which = "zoo.digits_cnn"
except Exception:  # a CNN of the same shape with random weights
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 10),
    ).eval()
    x = torch.rand(1, 1, 8, 8)
    which = "random CNN"
print("model:", which)
explorer = widgets.rule_explorer(model, x, epsilon=0.0, live=True)
explorer
"""


def _notebook(kernel: str) -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "explorer",
                "metadata": {},
                "outputs": [],
                "source": NOTEBOOK_SOURCE.splitlines(keepends=True),
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "lrp_tutor test", "language": "python", "name": kernel}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_server(probe: str, process: subprocess.Popen, log: Path, name: str) -> None:
    """Poll ``probe`` until it answers 200; fail, with the log's tail, on exit or timeout."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(probe, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{name} did not answer in {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it and its kernels), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _need_browser() -> None:
    """Skip, saying why, without Debian's Chromium or the playwright package."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def _jupyter_home(home: Path) -> tuple[dict[str, str], str]:
    """Private Jupyter folders under ``home`` with a kernel on this Python: (env, kernel name)."""
    kernel = "lrp-tutor-test"
    spec = home / "data" / "kernels" / kernel
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lrp_tutor test",
                "language": "python",
            }
        )
    )
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        MPLBACKEND="Agg",
    )
    return env, kernel


def _launch(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a server in its own process group (so that _stop reaches its kernels too)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _lab_server(root: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab serving ``root`` on 127.0.0.1 with a token: (url, token); stopped after."""
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    process = _launch(command, root, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{url}/api/status?token={token}", process, log, "JupyterLab")
        yield url, token
    finally:
        _stop(process)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server in a temporary root with the explorer notebook: (url, token)."""
    _need_browser()
    root = tmp_path / "root"
    root.mkdir()
    env, kernel = _jupyter_home(tmp_path / "jupyter")
    (root / "explorer.ipynb").write_text(json.dumps(_notebook(kernel)))
    yield from _lab_server(root, env, tmp_path / "jupyterlab.log")


def _chromium(playwright):
    """Debian's Chromium, headless (never a browser that ``playwright install`` fetched)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


READ_PNG = """async (img) => {
    const answer = await fetch(img.src);
    return Array.from(new Uint8Array(await answer.arrayBuffer()));
}"""

KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const session = panel && panel.sessionContext && panel.sessionContext.session;
    const kernel = session && session.kernel;
    return Boolean(kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle');
}"""


def test_moving_epsilon_in_jupyterlab_changes_the_heatmap(lab: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    url, token = lab
    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/lab/tree/explorer.ipynb?token={token}")
            page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_S * 1000, polling=500)
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            heatmap = page.wait_for_selector(
                "img.lrp-heatmap[src^='blob:']", timeout=WIDGET_SHOWN_S * 1000
            )
            page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_S * 1000, polling=500)
            before_src = heatmap.get_attribute("src")
            before = bytes(heatmap.evaluate(READ_PNG))
            assert before[:8] == b"\x89PNG\r\n\x1a\n"
            output = page.locator(".jp-OutputArea-output").first.inner_text()
            assert "model:" in output

            _move_epsilon(page, before_src)
            page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_S * 1000, polling=500)
            after = bytes(page.locator("img.lrp-heatmap").first.evaluate(READ_PNG))
            readout = page.locator(".lrp-epsilon .widget-readout").first.inner_text()
        finally:
            browser.close()
    assert after[:8] == b"\x89PNG\r\n\x1a\n"
    assert after != before, "the heatmap's PNG did not change when ε moved"
    assert float(readout) > 0.0, f"the ε slider did not move (readout {readout!r})"


VOILA_SOURCE = """\
import lrp_tutor as lt

x = lt.zoo.digits_samples()[0][:1]  # one shipped digit
lt.widgets.rule_explorer(lt.zoo.digits_cnn(), x)
"""


def _voila_server(root: Path, notebook: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """Voilà serving ``root/notebook`` on 127.0.0.1 (no token): its url; stopped after."""
    port = _free_port()
    command = [  # Voilà 0.5 asks for no token unless --token is given; root needs no flag
        sys.executable,
        "-m",
        "voila",
        notebook,
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        "--show_tracebacks=True",
    ]
    process = _launch(command, root, env, log)
    url = f"http://127.0.0.1:{port}"
    try:  # a static file answers once the server listens, without starting a kernel
        _wait_for_server(f"{url}/voila/static/voila.js", process, log, "Voilà")
        yield url
    finally:
        _stop(process)


@pytest.fixture
def voila(tmp_path: Path) -> Iterator[str]:
    """Voilà serving a notebook that shows the explorer on a shipped digit: its url."""
    _need_browser()
    pytest.importorskip("voila", reason="voila is not installed (pip install voila)")
    root = tmp_path / "root"
    root.mkdir()
    env, kernel = _jupyter_home(tmp_path / "jupyter")
    notebook = _notebook(kernel)
    notebook["cells"][0]["source"] = VOILA_SOURCE.splitlines(keepends=True)
    (root / "explorer.ipynb").write_text(json.dumps(notebook))
    yield from _voila_server(root, "explorer.ipynb", env, tmp_path / "voila.log")


def test_moving_epsilon_in_voila_changes_the_heatmap(voila: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(voila, timeout=WIDGET_SHOWN_S * 1000)  # Voilà runs the notebook first
            heatmap = page.wait_for_selector(
                "img.lrp-heatmap[src^='blob:']", timeout=WIDGET_SHOWN_S * 1000
            )
            before_src = heatmap.get_attribute("src")
            before = bytes(heatmap.evaluate(READ_PNG))
            assert before[:8] == b"\x89PNG\r\n\x1a\n"
            slider = page.locator(".lrp-epsilon")
            before_readout = slider.locator(".widget-readout").first.inner_text()

            _move_epsilon(page, before_src)
            after = bytes(page.locator("img.lrp-heatmap").first.evaluate(READ_PNG))
            readout = slider.locator(".widget-readout").first.inner_text()
        finally:
            browser.close()
    assert after[:8] == b"\x89PNG\r\n\x1a\n"
    assert after != before, "the heatmap's PNG did not change when ε moved"
    assert float(readout) > float(before_readout), f"ε did not grow ({before_readout} → {readout})"


def _move_epsilon(page, before_src: str) -> None:
    """Ten steps of ε to the right with the arrow keys, as a user would; wait for a new image."""
    page.locator(".lrp-epsilon .noUi-handle").first.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(old) => document.querySelector('img.lrp-heatmap').src !== old",
        arg=before_src,
        timeout=IMAGE_CHANGED_S * 1000,
        polling=200,
    )


# ---- layout: every widget's pictures shown whole, in normal and lecture mode ----------------

LAYOUT_VIEWPORT = {"width": 1024, "height": 768}  # a lecture hall's projector (XGA)
LAYOUT_MODES = ("normal", "lecture")

LAYOUT_SETUP = """\
import numpy as np
import torch

import lrp_tutor as lt
from lrp_tutor import widgets, zoo
from lrp_tutor.analysis import spray

torch.manual_seed(0)
mlp = zoo.digits_mlp()
digits, _ = zoo.digits_samples()
walk = lt.Walkthrough(mlp).forward(digits[6]).backward()
textures = zoo.textures_cnn()
patches, _ = zoo.texture_samples()
rng = np.random.default_rng(0)
clusters = spray(rng.normal(size=(30, 6, 6)), size=None, n_neighbors=4)


def tagged(shell, case):
    shell.widget.add_class("lrp-case-" + case)
    return shell
"""

LAYOUT_WIDGETS = {  # as the lecture deck (notebooks/lecture_demo.ipynb) shows them
    "stepper": "widgets.stepper(walk)",
    "inspector": 'widgets.neuron_inspector(walk, layer="3")',
    "explorer": (
        'widgets.rule_explorer(textures, patches[8:9], rule="ε", epsilon=0.1, '
        "image=patches[8, 0], live=True)"
    ),
    "comparison": "widgets.rule_comparison(textures, patches[8:9], image=patches[8, 0])",
    "clusters": "clusters.widget(images=rng.random((30, 6, 6)))",
}


def _layout_notebook(kernel: str) -> dict:
    """The setup, then every widget in normal mode, then every widget in lecture mode."""
    sources = [LAYOUT_SETUP]
    for mode in LAYOUT_MODES:
        sources.append(f"lt.lecture_mode({mode == 'lecture'})")
        sources += [f'tagged({code}, "{name}-{mode}")' for name, code in LAYOUT_WIDGETS.items()]
    notebook = _notebook(kernel)
    notebook["cells"] = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell{k}",
            "metadata": {},
            "outputs": [],
            "source": source.splitlines(keepends=True),
        }
        for k, source in enumerate(sources)
    ]
    return notebook


GEOMETRY = """(root) => {
    const box = (e) => { const r = e.getBoundingClientRect();
                         return [r.left, r.top, r.right, r.bottom]; };
    const output = root.closest('.jp-OutputArea-output');
    const images = [];
    for (const img of root.querySelectorAll('img')) {
        if (getComputedStyle(img).display === 'none') continue;
        const scrolling = [];  // boxes between the picture and the output area that scroll
        for (let e = img.parentElement; e; e = e.parentElement) {
            if (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1) {
                const s = getComputedStyle(e);
                if (s.overflowX !== 'visible' || s.overflowY !== 'visible') {
                    scrolling.push(`${e.className} (${e.scrollWidth}×${e.scrollHeight} in `
                                   + `${e.clientWidth}×${e.clientHeight})`);
                }
            }
            if (e === output) break;
        }
        images.push({box: box(img), natural: [img.naturalWidth, img.naturalHeight],
                     shown: [img.clientWidth, img.clientHeight], scrolling});
    }
    return {widget: box(root), output: output ? box(output) : null, images};
}"""


def _inside(inner: list[float], outer: list[float], tolerance: float = 0.5) -> bool:
    return (
        inner[0] >= outer[0] - tolerance
        and inner[1] >= outer[1] - tolerance
        and inner[2] <= outer[2] + tolerance
        and inner[3] <= outer[3] + tolerance
    )


def _measure(page) -> dict[str, dict]:
    """Every case's geometry, each widget scrolled into view first (JupyterLab lays out only
    what is near the viewport)."""
    found = {}
    for mode in LAYOUT_MODES:
        for name in LAYOUT_WIDGETS:
            case = f"{name}-{mode}"
            root = page.locator(f".lrp-case-{case}").first
            root.scroll_into_view_if_needed()
            page.wait_for_function(
                "(c) => [...document.querySelectorAll(`.lrp-case-${c} img`)]"
                ".every((i) => i.complete && (i.naturalWidth > 0 || i.style.display === 'none'"
                " || getComputedStyle(i).display === 'none'))",
                arg=case,
                timeout=WIDGET_SHOWN_S * 1000,
                polling=200,
            )
            found[case] = root.evaluate(GEOMETRY)
    return found


def _measure_layout(url: str, *, lab: bool) -> dict[str, dict]:
    """Open the layout notebook at ``url`` in Chromium, wait until every widget shows its
    pictures, and measure them; the browser is closed before this returns."""
    from playwright.sync_api import sync_playwright

    last = f".lrp-case-{list(LAYOUT_WIDGETS)[-1]}-{LAYOUT_MODES[-1]} img"
    with sync_playwright() as playwright:
        browser = _chromium(playwright)
        try:
            page = browser.new_page(viewport=LAYOUT_VIEWPORT)
            page.set_default_timeout(60_000)
            page.goto(url, timeout=WIDGET_SHOWN_S * 1000)  # Voilà runs the notebook first
            if lab:
                page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_S * 1000, polling=500)
                page.evaluate(
                    "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
                )
            page.wait_for_selector(last, state="attached", timeout=WIDGET_SHOWN_S * 1000)
            if lab:
                page.wait_for_function(KERNEL_IDLE, timeout=KERNEL_READY_S * 1000, polling=500)
            return _measure(page)
        finally:
            browser.close()


@pytest.fixture(scope="module")
def lab_layout(tmp_path_factory) -> dict[str, dict]:
    """All widgets, in both modes, shown by one JupyterLab server and measured in Chromium."""
    _need_browser()
    tmp = tmp_path_factory.mktemp("lab_layout")
    root = tmp / "root"
    root.mkdir()
    env, kernel = _jupyter_home(tmp / "jupyter")
    (root / "widgets.ipynb").write_text(json.dumps(_layout_notebook(kernel)))
    server = _lab_server(root, env, tmp / "jupyterlab.log")
    url, token = next(server)
    try:
        return _measure_layout(f"{url}/lab/tree/widgets.ipynb?token={token}", lab=True)
    finally:
        server.close()  # stops the server


@pytest.fixture(scope="module")
def voila_layout(tmp_path_factory) -> dict[str, dict]:
    """The same notebook rendered by Voilà and measured in Chromium."""
    _need_browser()
    pytest.importorskip("voila", reason="voila is not installed (pip install voila)")
    tmp = tmp_path_factory.mktemp("voila_layout")
    root = tmp / "root"
    root.mkdir()
    env, kernel = _jupyter_home(tmp / "jupyter")
    (root / "widgets.ipynb").write_text(json.dumps(_layout_notebook(kernel)))
    server = _voila_server(root, "widgets.ipynb", env, tmp / "voila.log")
    url = next(server)
    try:
        return _measure_layout(url, lab=False)
    finally:
        server.close()


def _check_shown_whole(geometry: dict, case: str) -> None:
    images = geometry["images"]
    assert images, f"{case}: the widget shows no picture"
    assert geometry["output"] is not None, f"{case}: the widget is not in an output area"
    for k, image in enumerate(images):
        where = f"{case}, picture {k} ({image['natural'][0]}×{image['natural'][1]} px)"
        assert min(image["natural"]) > 0, f"{where}: empty"
        assert _inside(image["box"], geometry["widget"]), (
            f"{where}: at {image['box']}, sticks out of its widget at {geometry['widget']}"
        )
        assert _inside(image["box"], geometry["output"]), (
            f"{where}: at {image['box']}, sticks out of its output area at {geometry['output']}"
        )
        assert not image["scrolling"], (
            f"{where}: partly hidden, these boxes scroll: {image['scrolling']}"
        )
        (width, height), (shown_width, shown_height) = image["natural"], image["shown"]
        assert shown_width <= width, f"{where}: shown enlarged to {shown_width} px wide"
        assert abs(shown_height - height * shown_width / width) <= 1.5, (
            f"{where}: shown {shown_width}×{shown_height}, not in its proportions"
        )


LAYOUT_CASES = [f"{name}-{mode}" for mode in LAYOUT_MODES for name in LAYOUT_WIDGETS]


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_widget_pictures_are_shown_whole_in_jupyterlab(lab_layout: dict, case: str) -> None:
    _check_shown_whole(lab_layout[case], case)


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_widget_pictures_are_shown_whole_in_voila(voila_layout: dict, case: str) -> None:
    _check_shown_whole(voila_layout[case], case)
