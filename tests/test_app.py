"""Notebook 07 as a web app (``make app``): Voila serves its explorers, a shop team drags a slider, the image changes.

Voila runs the notebook in a kernel of its own and sends the page only its outputs: the widgets and the prose,
never the code. This test starts Voila on a free loopback port in quick mode, opens the app in headless Chromium,
waits for the explorers (about 25 s on an idle 2-core machine: building them is most of it), drags the brightness
slider and compares screenshots of the product before and after. Requests to other hosts are blocked: the app must
work offline (Voila asks a CDN for Font Awesome's icon font; the page works without it). Skipped with the reason
without Chromium or Playwright; under CI it fails instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import BROWSER_MISSING, CHROMIUM, CHROMIUM_FLAGS, IN_CI, free_port, sync_playwright

from prodlab import config

pytestmark = pytest.mark.integration  # Voila in Chromium: make test-integration
NOTEBOOK = config.REPO_ROOT / "notebooks" / "07_explorer.ipynb"
VOILA = Path(sys.executable).parent / "voila"
APP_TIMEOUT_MS = 240_000  # the whole notebook in quick mode, on a busy 2-core machine


@pytest.fixture
def app(tmp_path) -> Iterator[tuple[str, Path]]:
    """Voila serving notebook 07 as ``make app`` does, on a free port, with its settings in ``tmp_path``."""
    if BROWSER_MISSING is not None or not VOILA.exists():
        reason = BROWSER_MISSING or "Voila is not installed (pip install -e '.[dev]')"
        if IN_CI:
            pytest.fail(f"CI must run the app test: {reason}")
        pytest.skip(reason)
    port = free_port()
    env = {**os.environ, config.QUICK_ENV: "1", "OMP_WAIT_POLICY": "PASSIVE",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = tmp_path / "voila.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(VOILA), str(NOTEBOOK), f"--port={port}", "--Voila.ip=127.0.0.1",
                                    "--no-browser", "--strip_sources=True"],
                                   cwd=config.REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"Voila exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
            try:  # a connection, not a page: each request of the page runs the notebook
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"Voila did not answer within 60 s:\n{log.read_text()[-3000:]}")
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_app_shows_the_explorers_without_code_and_a_slider_changes_the_image(app):
    url, log = app
    outside: list[str] = []

    def offline(route) -> None:
        if urlparse(route.request.url).hostname in {"127.0.0.1", None}:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", offline)
            start = time.monotonic()
            page.goto(url, timeout=APP_TIMEOUT_MS)
            slider = page.locator(".widget-slider", has=page.locator("label", has_text="brightness")).first
            handle = slider.locator(".noUi-handle").first
            handle.wait_for(timeout=APP_TIMEOUT_MS)
            print(f"explorers shown after {time.monotonic() - start:.0f} s")
            assert page.locator(".jp-InputArea-editor, .CodeMirror, .cm-editor").count() == 0, "code is shown"
            image = page.locator("img.widget-image").first
            image.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            before = image.screenshot()
            box = handle.bounding_box()
            assert box is not None, "the brightness slider's handle is not visible"
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 60, y, steps=6)
            page.mouse.up()
            deadline, after = time.monotonic() + 60, before
            while time.monotonic() < deadline and after == before:
                page.wait_for_timeout(250)
                after = image.screenshot()
            readout = slider.locator(".widget-readout").first
            assert float(readout.inner_text()) > 0.0, "the slider did not move"
            page.screenshot(path=str(log.parent / "voila.png"))  # for a human, when the test is in doubt
            assert after != before, "moving the slider did not change the image"
            print(f"slider answered after {time.monotonic() - start:.0f} s; blocked: {outside}")
        except Exception:
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
    assert all("fontawesome" in u or "font-awesome" in u for u in outside), f"other hosts asked for: {outside}"
