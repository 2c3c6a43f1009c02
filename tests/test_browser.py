"""Notebook 07 in a real JupyterLab, in headless Chromium driven by Playwright: dragging a slider changes the image.

This is the one test that sees what a reader sees: the widget front end, the comm messages to the kernel, the
kernel's callback and the new PNG coming back. It needs Chromium (Debian: ``apt-get install chromium``; CI
installs it) and Playwright (a dev dependency); without them it is skipped with the reason. Playwright never
downloads a browser here: it drives the system's Chromium.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import BROWSER_MISSING, CHROMIUM, CHROMIUM_FLAGS, free_port, needs_browser, sync_playwright

from prodlab import config

pytestmark = [needs_browser, pytest.mark.integration]  # JupyterLab in Chromium: make test-integration
NOTEBOOK = config.REPO_ROOT / "notebooks" / "07_explorer.ipynb"
RUN_TIMEOUT_MS = 300_000  # the whole notebook, in quick mode, on a busy 2-core machine (about 20 s when idle)


def _wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _wait_for_idle_kernel(page, settle: float = 3.0, timeout: float = 120.0) -> None:
    """Wait until the notebook's kernel has been idle for ``settle`` seconds: JupyterLab may start a kernel, replace
    it by a second one and reconnect; cells run before that settles can be lost."""
    indicator = page.locator(".jp-Notebook-ExecutionIndicator").first
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if indicator.get_attribute("data-status") == "idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= settle:
                return
        else:
            idle_since = None
        page.wait_for_timeout(250)
    pytest.fail(f"the kernel was not idle within {timeout:.0f} s")


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free port, serving a copy of notebook 07 (autosave must not touch the repo's)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, config.QUICK_ENV: "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_dragging_a_slider_in_jupyterlab_changes_the_image(jupyterlab):
    assert BROWSER_MISSING is None, f"CI must run the browser test: {BROWSER_MISSING}"
    url, log = jupyterlab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=120_000)
            _wait_for_idle_kernel(page)
            # "Run All Cells" from the Run menu, as a reader would.
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            # Done when the last code cell has printed its line (an output, not the cell's source).
            page.locator(".jp-OutputArea-output", has_text="notebook run time").first.wait_for(timeout=RUN_TIMEOUT_MS)
            image = page.locator("img.widget-image").first
            image.scroll_into_view_if_needed()
            before = image.screenshot()
            slider = page.locator(".widget-slider", has=page.locator("label", has_text="brightness")).first
            handle = slider.locator(".noUi-handle").first
            box = handle.bounding_box()
            assert box is not None, "the brightness slider's handle is not visible"
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 60, y, steps=6)
            page.mouse.up()
            readout = slider.locator(".widget-readout").first
            deadline = time.monotonic() + 60
            after = before
            while time.monotonic() < deadline and after == before:
                page.wait_for_timeout(250)
                after = image.screenshot()
            assert float(readout.inner_text()) > 0.0, "the slider did not move"
            page.screenshot(path=str(log.parent / "jupyterlab.png"))  # for a human, when the test is in doubt
            assert after != before, "moving the slider did not change the image"
        except Exception:
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
