"""The student edition: every notebook with its exercise solutions replaced by a stub (``make student``).

A solution sits in a code cell between nbgrader's markers ``### BEGIN SOLUTION`` and ``### END SOLUTION``, in a cell
that carries nbgrader's cell metadata (``"nbgrader": {"solution": true, ...}``, see :func:`solution_metadata`) and is
collapsed in the full notebook (``"jupyter": {"source_hidden": true}``), where nbval runs it. This module does not
strip anything by hand: nbconvert's ``NotebookExporter`` runs nbgrader's ``ClearSolutions`` preprocessor, which
replaces each marked region with its stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) and, with
``enforce_metadata`` left on, refuses a solution region in a cell not marked as a solution; then nbgrader's
``ClearOutput`` removes the stored outputs, which would show the answers. The stub cells are un-collapsed.

The checked edition (:func:`checked_notebook`, ``--checked``, what ``make test`` runs under nbval) is the student
edition with three cells inserted after each exercise's checker: the hidden solution cell, the checker again, and an
assert that the first run said "not done yet" and the second "correct". One execution thus runs every cell of the
full notebook in order (the stub only defines the function the solution then redefines) and the student edition
end to end (it is the checked edition without the inserted cells; tests/test_student.py checks both statically).

Usage: ``python -m prodlab.student [--checked] [--out DIR] [NOTEBOOK ...]`` (default: every notebook into
``student/``, or ``_build/checked/`` with ``--checked``).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import ClearOutput, ClearSolutions

from prodlab import config, files

NOTEBOOK_DIR = config.REPO_ROOT / "notebooks"
STUDENT_DIR = config.REPO_ROOT / "student"
CHECKED_DIR = config.REPO_ROOT / "_build" / "checked"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECKER = re.compile(r"\bexercises\.(check_\w+)\(")
INSERTED = "checked"  # metadata key (under "prodlab") of the cells the checked edition inserts: solution/checker/assert


def all_notebooks() -> list[Path]:
    """The workbook's notebooks, in order (not the hidden files an editor may leave beside them)."""
    return sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if not p.name.startswith("."))


def solution_metadata(grade_id: str) -> dict:
    """The cell metadata of a solution cell: nbgrader's (schema 3) and collapsed in the full notebook."""
    return {
        "nbgrader": {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
                     "solution": True, "task": False},
        "jupyter": {"source_hidden": True},
    }


def has_solutions(nb: nbformat.NotebookNode) -> bool:
    return any(is_solution(cell) for cell in nb.cells)


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


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and BEGIN in cell.source


def _inserted(cell: nbformat.NotebookNode, role: str) -> nbformat.NotebookNode:
    """A copy of ``cell`` for the checked edition: a new id, marked ``{"prodlab": {"checked": role}}``."""
    new = copy.deepcopy(cell)
    new.metadata.pop("nbgrader", None)
    new.metadata.pop("execution", None)
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None  # the full run's "correct" would give the answer away
    new.metadata.setdefault("prodlab", {})[INSERTED] = role
    new.id = f"{cell.get('id', 'cell')[:50]}-{role}"
    return new


def checked_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of ``nb`` with, after each exercise's checker, its solution, the checker again and an
    assert that the checker printed "not done yet" for the stub and then passed on the solution."""
    out = student_notebook(nb)
    if len(out.cells) != len(nb.cells):
        raise ValueError("nbgrader dropped or added a cell")
    cells = []
    for i, cell in enumerate(out.cells):
        cells.append(cell)
        if i == 0 or not is_solution(nb.cells[i - 1]):
            continue
        found = CHECKER.search(nb.cells[i].source) if nb.cells[i].cell_type == "code" else None
        if found is None:
            raise ValueError(f"cell {i}: a solution cell must be followed by its checker cell (exercises.check_*)")
        name = found.group(1)
        check = nbformat.v4.new_code_cell(
            "# checked edition only: the stub's checker said it is not done, the solution's passed\n"
            "from prodlab.exercises.core import outcomes as _outcomes\n\n"
            f"assert _outcomes()[-2:] == [({name!r}, 'not done yet'), ({name!r}, 'correct')], _outcomes()[-2:]\n"
            "del _outcomes")
        cells += [_inserted(nb.cells[i - 1], "solution"), _inserted(nb.cells[i], "checker"),
                  _inserted(check, "assert")]
    out.cells = cells
    return out


def build(notebooks: list[Path], out_dir: Path = STUDENT_DIR, checked: bool = False) -> list[Path]:
    """Write the student edition (or the checked edition) of each notebook into ``out_dir``; return the paths.

    A notebook without exercises is copied with its outputs, which give nothing away.
    """
    edition = checked_notebook if checked else student_notebook
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student = edition(nb) if has_solutions(nb) else nb
        written.append(files.write_text(Path(out_dir) / path.name, nbformat.writes(student)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prodlab.student", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--checked", action="store_true",
                        help="the checked edition: each exercise's solution and checker run again after its stub")
    parser.add_argument("--out", type=Path, help=f"output folder (default: {STUDENT_DIR}, --checked: {CHECKED_DIR})")
    args = parser.parse_args(argv)
    out = args.out or (CHECKED_DIR if args.checked else STUDENT_DIR)
    notebooks = args.notebooks or all_notebooks()
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        written = build(notebooks, out, args.checked)
    except (RuntimeError, ValueError, nbformat.ValidationError) as err:  # unmarked or unbalanced solution, no checker
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{'checked' if args.checked else 'student'} edition: {len(written)} notebooks in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
