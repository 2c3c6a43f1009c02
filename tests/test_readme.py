"""The README's numbers about the workbook follow the workbook: the notebook table's stored run times and the
number of figures in the catalogue (both went stale once: 05's row and "50 figures" against 60)."""

from __future__ import annotations

import json
import re

import pytest
from test_cell_times import _stamp

from prodlab import chapters, config, figures  # noqa: F401  (importing the chapters registers their figures)

README = (config.REPO_ROOT / "README.md").read_text(encoding="utf-8")
NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("*.ipynb"))
ROW = re.compile(r"^\| (\d\d) \| \[.*?\]\(notebooks/(\S+?\.ipynb)\) \| .*? \| ([\d.]+) (s|min), (\d+) s \|$", re.M)


def stored_run(path) -> tuple[float, float]:
    """(seconds from the first code cell's start to the last one's end, slowest cell) of the stored full run."""
    starts, ends, longest = [], [], 0.0
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        ex = cell.get("metadata", {}).get("execution", {})
        if cell["cell_type"] == "code" and "iopub.execute_input" in ex:
            start, end = _stamp(ex["iopub.execute_input"]), _stamp(ex["shell.execute_reply"])
            starts.append(start)
            ends.append(end)
            longest = max(longest, (end - start).total_seconds())
    return (max(ends) - min(starts)).total_seconds(), longest


def table() -> dict[str, tuple[float, float]]:
    return {name: (float(t) * (60 if unit == "min" else 1), float(slow))
            for _, name, t, unit, slow in ROW.findall(README)}


def test_the_table_has_a_row_per_notebook():
    assert sorted(table()) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_table_gives_the_stored_run_times(path):
    total, slowest = stored_run(path)
    said_total, said_slowest = table()[path.name]
    said = f"{path.name}: README {said_total:.0f} s, slowest cell {said_slowest:.0f} s"
    stored = f"stored {total:.0f} s, {slowest:.0f} s"
    assert abs(said_total - total) <= max(5.0, 0.1 * total), f"{said}; {stored}"
    assert abs(said_slowest - slowest) <= 2.0, f"{said}; {stored}"


def test_the_figure_count_is_the_catalogue_s():
    said = {int(n) for n in re.findall(r"(\d+) figures", README)}
    assert said == {len(figures.REGISTRY)}, f"README: {sorted(said)} figures; the catalogue: {len(figures.REGISTRY)}"


def test_stored_run_reads_nbconvert_timing(tmp_path):
    def cell(start, end):
        return {"cell_type": "code", "source": "", "outputs": [],
                "metadata": {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}}}

    nb = {"cells": [cell("2026-11-27T03:42:01.5Z", "2026-11-27T03:42:03.0Z"),
                    {"cell_type": "markdown", "source": "", "metadata": {}},
                    cell("2026-11-27T03:42:04.0Z", "2026-11-27T03:42:11.5Z")]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert stored_run(path) == (10.0, 7.5)
