"""The student edition (``make student``): no solution left, each stub in place, runs up to the first exercise, and
every checker fails on the empty stub with its "not answered yet" message.

The notebooks are executed with nbclient in one kernel each, in quick mode: the cells before the first checker,
then for each exercise its stub cell and its checker.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from prodlab import config, exercises, student

NOTEBOOKS = [p for p in sorted(student.NOTEBOOK_DIR.glob("*.ipynb"))
             if student.has_solutions(nbformat.read(p, as_version=4))]
STUB = "raise NotImplementedError()"


def is_checker(cell) -> bool:
    return cell.cell_type == "code" and "exercises.check_" in cell.source


def is_stub(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.stem: nbformat.read(path, as_version=4) for p, path in zip(NOTEBOOKS, student.build(NOTEBOOKS, out),
                                                                         strict=True)}


def test_notebooks_with_exercises_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"00_products", "01_losses", "03_vae", "04_evaluation", "05_editing",
                                          "06_search", "07_explorer"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_solution_code_is_left(path, edition):
    full, stud = nbformat.read(path, as_version=4), edition[path.stem]
    assert len(full.cells) == len(stud.cells)
    solutions = [c for c in full.cells if student.BEGIN in c.source]
    stubs = [c for c in stud.cells if is_stub(c)]
    assert len(solutions) == len(stubs) >= 1, "every solution cell becomes one stub cell"
    for sol, stub in zip(solutions, stubs, strict=True):
        body = sol.source.split(student.BEGIN)[1].split(student.END)[0]
        for line in filter(None, (line.strip() for line in body.splitlines())):
            assert line not in stub.source, f"solution line left in the student edition: {line!r}"
        assert STUB in stub.source and "# YOUR CODE HERE" in stub.source
        assert sol.source.split(student.BEGIN)[0] in stub.source  # the function's signature stays
        assert not stub.metadata.get("jupyter", {}).get("source_hidden"), "the stub must be visible"
    assert not any(c.get("outputs") for c in stud.cells if c.cell_type == "code"), "outputs would show the answers"
    assert not any(student.BEGIN in c.source or student.END in c.source for c in stud.cells)


def _run(nb: nbformat.NotebookNode, cells: list) -> list:
    """Execute ``cells`` of ``nb`` in order in one fresh kernel; the error of each cell (None when it ran)."""
    work = nbformat.v4.new_notebook(metadata=nb.metadata, cells=cells)
    client = NotebookClient(work, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(student.NOTEBOOK_DIR)}})
    errors = []
    with client.setup_kernel():
        for index, cell in enumerate(work.cells):
            try:
                client.execute_cell(cell, index)
                errors.append(None)
            except CellExecutionError as err:
                errors.append(str(err))
    return errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_to_the_first_exercise_and_every_checker_fails_on_the_stub(path, edition, monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")  # the kernel inherits it
    cells = edition[path.stem].cells
    first = next(i for i, c in enumerate(cells) if is_checker(c))
    pairs = [(i - 1, i) for i, c in enumerate(cells) if is_checker(c)]
    assert all(is_stub(cells[stub]) for stub, _ in pairs), "each checker follows its stub cell"
    before = [c for c in cells[:first] if c.cell_type == "code" and not is_stub(c)]
    errors = _run(edition[path.stem], before + [cells[i] for pair in pairs for i in pair])
    head, tail = errors[: len(before)], errors[len(before):]
    assert head == [None] * len(before), f"the student edition fails before its first exercise: {head}"
    for (stub, checker), stub_error, checker_error in zip(pairs, tail[::2], tail[1::2], strict=True):
        assert stub_error is None, f"stub cell {stub} must run (it only defines a function): {stub_error}"
        assert checker_error is not None and exercises.ExerciseFailed.__name__ in checker_error, \
            f"checker cell {checker} must fail on the stub"
        assert exercises.STUB_MESSAGE in checker_error
