"""Fast cells: no cell of a committed notebook took over 30 s in its stored full-mode run (issue 14, "Fast cells").

nbconvert stores each cell's execution timestamps in ``metadata.execution`` (``record_timing``, on by default); a
cell's time is ``shell.execute_reply - iopub.execute_input``. A longer computation is cached with the command that
recomputes it, or shrunk honestly; a short live training run under 30 s stays.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from prodlab import config

LIMIT_S = 30.0
NOTEBOOKS = sorted((config.REPO_ROOT / "notebooks").glob("*.ipynb"))


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cell_seconds(path) -> dict[str, float]:
    """Stored execution time of every code cell, by cell id; a cell without timing gets ``nan``."""
    times = {}
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        ex = cell.get("metadata", {}).get("execution", {})
        start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        times[cell["id"]] = (_stamp(end) - _stamp(start)).total_seconds() if start and end else float("nan")
    return times


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_cell_over_30_s(path):
    times = cell_seconds(path)
    untimed = [cid for cid, s in times.items() if s != s]
    assert not untimed, f"{path.name}: cells {untimed} have no stored timing: re-run with nbconvert (make notebooks)"
    slow = {cid: s for cid, s in times.items() if s > LIMIT_S}
    assert not slow, f"{path.name}: cells over {LIMIT_S:.0f} s: " + ", ".join(
        f"{cid} ({s:.0f} s)" for cid, s in sorted(slow.items()))


def test_cell_seconds_reads_nbconvert_timing(tmp_path):
    def cell(cid, start, end):
        meta = {"execution": {"iopub.execute_input": start, "shell.execute_reply": end}} if start else {}
        return {"cell_type": "code", "id": cid, "metadata": meta, "source": "", "outputs": []}

    nb = {"cells": [cell("a", "2026-11-27T03:42:01.5Z", "2026-11-27T03:42:33.0Z"),
                    cell("b", "2026-11-27T03:42:33.0Z", "2026-11-27T03:42:34.25Z"), cell("c", None, None),
                    {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ""}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    times = cell_seconds(path)
    assert times["a"] == 31.5 and times["b"] == 1.25 and times["c"] != times["c"] and "m" not in times
