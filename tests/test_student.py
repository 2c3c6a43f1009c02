"""The student edition (``make student``): no solution left, each stub in place, runs up to the first exercise, and
every checker fails on the empty stub with its "not answered yet" message.

Running every notebook up to its first exercise again would repeat what nbval already does, so it is proven in
three cheaper parts:

- up to its first exercise, each student notebook's code is the full notebook's, cell for cell, with no solution
  among it: nbval runs the full notebooks in ``make test``, so those cells run (checked here cell by cell);
- one student notebook (``KERNEL_RUN``, the one whose first exercise comes earliest) is executed for real, in a
  kernel with nbclient, in quick mode: its cells before the first exercise, then each stub and its checker;
- in every notebook, each stub cell and its checker are executed in a fresh namespace holding the imports of the
  cells before the first exercise: the stub must run (it only defines a function), its checker must fail with
  ``STUB_MESSAGE``.
"""

from __future__ import annotations

import ast

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from prodlab import config, exercises, student

NOTEBOOKS = [p for p in sorted(student.NOTEBOOK_DIR.glob("*.ipynb"))
             if student.has_solutions(nbformat.read(p, as_version=4))]
STUB = "raise NotImplementedError()"
KERNEL_RUN = "02_gan"  # two code cells before its first exercise


def is_checker(cell) -> bool:
    return cell.cell_type == "code" and "exercises.check_" in cell.source


def is_stub(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def first_checker(cells: list) -> int:
    return next(i for i, c in enumerate(cells) if is_checker(c))


def exercise_pairs(cells: list) -> list[tuple[int, int]]:
    """(stub cell, checker cell) of each exercise."""
    return [(i - 1, i) for i, c in enumerate(cells) if is_checker(c)]


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.stem: nbformat.read(path, as_version=4) for p, path in zip(NOTEBOOKS, student.build(NOTEBOOKS, out),
                                                                         strict=True)}


def test_notebooks_with_exercises_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"00_products", "01_losses", "03_vae", "04_evaluation", "05_editing",
                                          "06_search", "07_explorer", KERNEL_RUN}


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_up_to_the_first_exercise_the_code_is_what_nbval_runs(path, edition):
    full, stud = nbformat.read(path, as_version=4).cells, edition[path.stem].cells
    first = first_checker(stud)
    assert first == first_checker(full)
    assert all(is_stub(stud[stub]) for stub, _ in exercise_pairs(stud)), "each checker follows its stub cell"
    for i in range(first - 1):  # the first exercise's stub is at first - 1
        assert full[i].cell_type == stud[i].cell_type, f"cell {i}"
        if stud[i].cell_type == "code":
            assert not is_stub(stud[i]) and student.BEGIN not in full[i].source, f"cell {i}: a solution before the " \
                "first exercise's stub (the student edition would stop there)"
            assert stud[i].source == full[i].source, f"cell {i} differs from the full notebook's"


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


def test_one_notebook_runs_in_a_kernel_to_the_first_exercise_and_its_checkers_fail_on_the_stubs(edition,
                                                                                              monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")  # the kernel inherits it
    cells = edition[KERNEL_RUN].cells
    pairs = exercise_pairs(cells)
    before = [c for c in cells[: first_checker(cells)] if c.cell_type == "code" and not is_stub(c)]
    errors = _run(edition[KERNEL_RUN], before + [cells[i] for pair in pairs for i in pair])
    head, tail = errors[: len(before)], errors[len(before):]
    assert head == [None] * len(before), f"the student edition fails before its first exercise: {head}"
    for (stub, checker), stub_error, checker_error in zip(pairs, tail[::2], tail[1::2], strict=True):
        assert stub_error is None, f"stub cell {stub} must run (it only defines a function): {stub_error}"
        assert checker_error is not None and exercises.ExerciseFailed.__name__ in checker_error, \
            f"checker cell {checker} must fail on the stub"
        assert exercises.STUB_MESSAGE in checker_error


def _python(cell) -> str:
    """A code cell's source as plain Python (IPython's own translation of magics, as a kernel does)."""
    return TransformerManager().transform_cell(cell.source)


def _imports(cells: list) -> str:
    """The top-level import statements of the code cells ``cells``, in order."""
    found = []
    for cell in (c for c in cells if c.cell_type == "code"):
        source = _python(cell)
        found += [ast.get_source_segment(source, node) for node in ast.parse(source).body
                  if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_runs_and_its_checker_fails_on_it(path, edition, monkeypatch):
    monkeypatch.setenv(config.QUICK_ENV, "1")
    cells = edition[path.stem].cells
    namespace: dict = {"__name__": "__main__"}
    exec(compile(_imports(cells[: first_checker(cells)]), f"{path.stem}: imports", "exec"), namespace)
    for stub, checker in exercise_pairs(cells):
        exec(compile(_python(cells[stub]), f"{path.stem} cell {stub}", "exec"), namespace)  # only defines
        with pytest.raises(exercises.ExerciseFailed) as failure:
            exec(compile(_python(cells[checker]), f"{path.stem} cell {checker}", "exec"), namespace)
        assert exercises.STUB_MESSAGE in str(failure.value), f"{path.stem} cell {checker}: {failure.value}"
