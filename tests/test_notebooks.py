"""Every notebook follows the book style of CONTRIBUTING.md; nbval executes them (see the Makefile's test target)."""

import json
import re

import pytest

from prodlab import config

NOTEBOOKS = sorted(p for p in (config.REPO_ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
CAPTION = "*Look for:*"


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_is_followed_by_what_to_look_for(path):
    """A code cell whose stored output holds an image is followed directly by a markdown cell that begins with
    ``*Look for:*`` and says in a line or two what the reader should see (one caption for a cell's figures)."""
    cells = _load(path)["cells"]
    uncaptioned = [i for i, cell in enumerate(cells)
                   if cell["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in cell["outputs"])
                   and not (i + 1 < len(cells) and cells[i + 1]["cell_type"] == "markdown"
                            and "".join(cells[i + 1]["source"]).lstrip().startswith(CAPTION))]
    assert not uncaptioned, f"{path.name}: figure cells without a {CAPTION} caption right after: {uncaptioned}"


def test_readme_lists_every_notebook():
    readme = (config.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme, path.name
