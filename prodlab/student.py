"""The student edition: every notebook with its exercise solutions replaced by a stub (``make student``).

A solution sits in a code cell between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION``, in a cell
that carries nbgrader's cell metadata (``"nbgrader": {"solution": true, ...}``, see :func:`solution_metadata`) and is
collapsed in the full notebook (``"jupyter": {"source_hidden": true}``), where nbval runs it. This module does not
strip anything by hand: nbconvert's ``NotebookExporter`` runs nbgrader's ``ClearSolutions`` preprocessor, which
replaces each marked region with its stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) and, with
``enforce_metadata`` left on, refuses a solution region in a cell not marked as a solution; then nbgrader's
``ClearOutput`` removes the stored outputs, which would show the answers. The stub cells are un-collapsed.

Usage: ``python -m prodlab.student [--out DIR] [NOTEBOOK ...]`` (default: every notebook into ``student/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import ClearOutput, ClearSolutions

from prodlab import config, files

NOTEBOOK_DIR = config.REPO_ROOT / "notebooks"
STUDENT_DIR = config.REPO_ROOT / "student"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def solution_metadata(grade_id: str) -> dict:
    """The cell metadata of a solution cell: nbgrader's (schema 3) and collapsed in the full notebook."""
    return {
        "nbgrader": {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
                     "solution": True, "task": False},
        "jupyter": {"source_hidden": True},
    }


def has_solutions(nb: nbformat.NotebookNode) -> bool:
    return any(cell.cell_type == "code" and BEGIN in cell.source for cell in nb.cells)


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of ``nb``: solutions replaced by stubs, outputs cleared, stub cells expanded."""
    exporter = NotebookExporter()
    exporter.register_preprocessor(ClearSolutions(enforce_metadata=True), enabled=True)
    exporter.register_preprocessor(ClearOutput(), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    out = nbformat.reads(body, as_version=4)
    for cell in out.cells:
        cell.metadata.pop("execution", None)  # the full run's timings
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.metadata.pop("jupyter", None)  # {"source_hidden": true}: the stub is shown
    return out


def build(notebooks: list[Path], out_dir: Path = STUDENT_DIR) -> list[Path]:
    """Write the student edition of each notebook into ``out_dir``; return the paths written.

    A notebook without exercises is copied with its outputs, which give nothing away.
    """
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student = student_notebook(nb) if has_solutions(nb) else nb
        written.append(files.write_text(Path(out_dir) / path.name, nbformat.writes(student)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prodlab.student", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--out", type=Path, default=STUDENT_DIR, help=f"output folder (default: {STUDENT_DIR})")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        written = build(notebooks, args.out)
    except (RuntimeError, nbformat.ValidationError) as err:  # ClearSolutions: unmarked or unbalanced solution
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"student edition: {len(written)} notebooks in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
