"""Every notebook follows the book style of CONTRIBUTING.md; nbval executes them (see the Makefile's test target)."""

import json
import re

import pytest

from prodlab import config

NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_products.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_like_a_chapter(path):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name)
    nb = _load(path)
    cells = nb["cells"]
    first, last = "".join(cells[0]["source"]), "".join(cells[-1]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.startswith(f"# {path.name[:2]} ")
    assert "**Goal.**" in first and "§" in first and "**Run time.**" in first
    assert cells[-1]["cell_type"] == "markdown" and "## Summary" in last
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert any(re.search(r"^assert ", src, re.M) for src in code), "claims must be asserts (nbval runs lax)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed_small_and_clean(path):
    assert path.stat().st_size < 3_000_000
    code_cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code_cells), "commit the outputs of a full run"
    outputs = [o for c in code_cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]


def test_readme_lists_every_notebook():
    readme = (config.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme, path.name
