"""Notebook 09 on a folder the workbook has never seen: the README's papermill line runs it in quick mode on
generated 64 x 64 colour photos in 5 classes with broken files among them, in its own data home, well under the
10 minutes the issue allows; the executed notebook lists the skipped files, trains the three models, measures them
and searches; ``python -m prodlab report`` writes its HTML copy, and refuses a bad request in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import make_photo_folder

from prodlab import config
from prodlab.cli import main
from prodlab.cli import report as report_cli

NOTEBOOK = config.REPO_ROOT / "notebooks" / "09_catalogue.ipynb"
LIMIT_S = 600  # the bound for a few hundred photos in quick mode


def _text(nb) -> str:
    return "\n".join(out.get("text", "") + "".join(out.get("data", {}).get("text/plain", ""))
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The papermill run: (the executed notebook, the photo folder's description, seconds it took)."""
    root = tmp_path_factory.mktemp("report")
    photos = make_photo_folder(root / "Corner Shop", per_class=60, seed=3)
    out = root / "out.ipynb"
    env = {**os.environ, config.DATA_ENV: str(root / "home"), config.RUNS_ENV: str(root / "runs"),
           "OMP_NUM_THREADS": "1"}
    env.pop(config.QUICK_ENV, None)  # the parameter alone must switch quick mode on
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-p", "data_dir",
                           str(photos["root"]), "-p", "quick", "True", "--kernel", "python3", "--cwd",
                           str(NOTEBOOK.parent)], env=env, capture_output=True, text=True, timeout=LIMIT_S)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(out, as_version=4), photos, seconds, root


@pytest.mark.integration
def test_papermill_runs_notebook_09_on_a_new_folder_in_quick_mode(executed):
    nb, photos, seconds, root = executed
    assert seconds < LIMIT_S
    text = _text(nb)
    assert "quick mode; photos:" in text and "catalogue 'corner-shop'" in text
    for broken in photos["broken"].values():  # every unusable file is named, with its reason
        assert Path(broken).name in text
    assert "5 classes" in text and "trained now" in text
    assert "stores no colour per image, so it cannot be recoloured" in text  # said, not silently skipped
    assert "P@10 by class" in text and "fidelity:" in text
    images = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if "image/png" in out.get("data", {})]
    assert len(images) >= 4  # balance, class means, samples per class, inpainting
    assert (root / "home" / "catalogues" / "corner-shop").is_dir() and (root / "runs" / "corner-shop").is_dir()
    assert not (config.REPO_ROOT / "runs" / "corner-shop").exists()


@pytest.mark.integration
def test_the_report_command_writes_html_and_passes_the_parameters(executed, tmp_path, monkeypatch, capsys):
    nb, photos, _, root = executed
    asked = {}

    def run(target, params):  # the papermill run above stands in for the command's own
        asked.update(params)
        nbformat.write(nb, target)

    monkeypatch.setattr(report_cli, "_execute", run)
    assert main(["report", str(photos["root"]), "--quick", "--out", str(tmp_path)]) == 0
    assert asked == {"data_dir": str(photos["root"].resolve()), "size": 32, "quick": True}
    page = (tmp_path / "corner-shop.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64" in page and "P@10 by class" in page
    assert json.loads((tmp_path / "corner-shop.ipynb").read_text(encoding="utf-8"))["cells"]
    assert "Wrote" in capsys.readouterr().out


def test_the_parameters_cell_is_what_papermill_reads():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert {line.split("=")[0].strip() for line in tagged[0].source.splitlines()} == {"data_dir", "size", "quick"}


@pytest.mark.parametrize("args, expected", [
    (["/no/such/folder"], "not a folder of photos"),
    ([".", "--size", "4"], "--size must be between"),
])
def test_a_bad_report_request_is_one_line(args, expected, capsys):
    assert main(["report", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err
