"""The student edition (``make student``) and the checked edition that ``make test`` executes under nbval.

``python -m prodlab.student --checked`` writes each notebook's student edition with three cells inserted after every
exercise's checker: the hidden solution cell, the checker again, and an assert that the stub's checker said "not done
yet" and the solution's "correct" (``prodlab.student.checked_notebook``). ``make test`` runs those under nbval in quick
mode, instead of the full notebooks, so one execution proves both, given what this file checks without a kernel:

- every cell of the full notebook runs, in order: the checked edition less its stubs, each stub's checker and the
  asserts is the full notebook, cell for cell (``test_the_checked_edition_runs_every_cell_of_the_full_notebook``);
- the student edition runs end to end, one "not done yet" line per exercise: it is the checked edition less the
  inserted cells (same test), which change nothing a later cell reads: no later cell uses a name that only a
  solution defines (``test_no_later_cell_needs_a_solution``), and a checker keeps torch's random state
  (tests/test_exercises.py); each stub runs and its checker prints exactly that one line
  (``test_every_stub_runs_and_its_checker_prints_one_not_done_line``).

Also: no solution line is left in the student edition, and none appears before its exercise in the full notebook.
"""

from __future__ import annotations

import ast
import contextlib
import html
import io
import keyword
import re
import symtable
import tokenize

import nbformat
import pytest
from conftest import make_recipe
from IPython.core.inputtransformer2 import TransformerManager

from prodlab import config, exercises, student

NOTEBOOKS = [p for p in student.all_notebooks() if student.has_solutions(nbformat.read(p, as_version=4))]
STUB = "raise NotImplementedError()"


def is_checker(cell) -> bool:
    return cell.cell_type == "code" and "exercises.check_" in cell.source


def is_stub(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def role(cell) -> str | None:
    return cell.metadata.get("prodlab", {}).get(student.INSERTED)


def exercise_pairs(cells: list) -> list[tuple[int, int]]:
    """(stub cell, checker cell) of each exercise."""
    return [(i - 1, i) for i, c in enumerate(cells) if is_checker(c) and i and is_stub(cells[i - 1])]


def sources(cells: list) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in cells]


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.stem: nbformat.read(path, as_version=4) for p, path in zip(NOTEBOOKS, student.build(NOTEBOOKS, out),
                                                                         strict=True)}


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    out = tmp_path_factory.mktemp("checked")
    return {p.stem: nbformat.read(path, as_version=4)
            for p, path in zip(NOTEBOOKS, student.build(NOTEBOOKS, out, checked=True), strict=True)}


def test_notebooks_with_exercises_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"00_products", "01_losses", "02_gan", "03_vae", "04_evaluation",
                                          "05_editing", "06_search", "07_explorer", "08_diffusion"}


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
def test_the_checked_edition_runs_every_cell_of_the_full_notebook(path, edition, checked):
    full, stud, cells = nbformat.read(path, as_version=4).cells, edition[path.stem].cells, checked[path.stem].cells
    pairs = exercise_pairs(stud)
    assert len(pairs) == sum(map(is_stub, stud)), "each stub cell is followed by its checker cell"
    assert sources([c for c in cells if role(c) is None]) == sources(stud), "checked edition less inserted cells"
    first_runs = {id(cells[i + 1]) for i, c in enumerate(cells) if role(c) is None and is_stub(c)}
    kept = [c for c in cells if not is_stub(c) and id(c) not in first_runs and role(c) != "assert"]
    assert sources(kept) == sources(full), "the checked edition must run the full notebook's cells, in order"
    asserts = [i for i, c in enumerate(cells) if role(c) == "assert"]
    assert len(asserts) == len(pairs) and all(role(cells[i - 1]) == "checker" for i in asserts)
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code"), "the full run's outputs stay out"


def test_the_command_writes_either_edition(tmp_path, capsys):
    path = NOTEBOOKS[0]
    assert student.main(["--checked", "--out", str(tmp_path / "c"), str(path)]) == 0
    assert student.main(["--out", str(tmp_path / "s"), str(path)]) == 0
    assert "checked edition: 1 notebooks" in capsys.readouterr().out
    cells = nbformat.read(tmp_path / "c" / path.name, as_version=4).cells
    assert [c for c in cells if role(c) is None] == nbformat.read(tmp_path / "s" / path.name, as_version=4).cells
    assert student.main([str(tmp_path / "missing.ipynb")]) == 2


def test_a_solution_without_its_checker_is_refused():
    solution = nbformat.v4.new_code_cell(f"def f(x):\n    {student.BEGIN}\n    return x\n    {student.END}\n",
                                         metadata=student.solution_metadata("ex-1"))
    nb = nbformat.v4.new_notebook(cells=[solution, nbformat.v4.new_markdown_cell("no checker")])
    with pytest.raises(ValueError, match="followed by its checker"):
        student.checked_notebook(nb)


def test_make_test_runs_the_checked_edition_under_nbval():
    target = make_recipe("test")
    assert "prodlab.student --checked --out $(CHECKED)" in target and "--nbval-lax" in target
    assert "$(CHECKED)/*.ipynb" in target and "--dist loadfile" in target and "PRODLAB_QUICK=1" in target


# ---------------------------------------------------------------- the student edition equals the checked one less
# the inserted cells: no later cell may read what only a solution defines


def _python(cell) -> str:
    """A code cell's source as plain Python (IPython's own translation of magics, as a kernel does)."""
    return TransformerManager().transform_cell(cell.source)


def bound(source: str) -> set[str]:
    """The names a cell binds at top level (assignments, loop and ``with`` targets, imports, defs, classes)."""
    names = set()
    for node in ast.parse(source).body:
        inner = [node] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) else ast.walk(node)
        for sub in inner:
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(sub.name)
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, ast.Import | ast.ImportFrom):
                names |= {(alias.asname or alias.name).split(".")[0] for alias in sub.names}
    return names


def read(source: str) -> set[str]:
    """The global names a cell reads: at top level, or free in its functions and classes (not their locals)."""
    names: set[str] = set()

    def walk(table: symtable.SymbolTable, top: bool) -> None:
        names.update(s.get_name() for s in table.get_symbols() if s.is_referenced() and (top or s.is_global()))
        for child in table.get_children():
            walk(child, False)

    walk(symtable.symtable(source, "cell", "exec"), True)
    return names


def stub_names(source: str) -> set[str]:
    """The functions a stub cell defines that still raise ``NotImplementedError``."""
    return {node.name for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and "NotImplementedError" in ast.unparse(node)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_later_cell_needs_a_solution(path, edition):
    """A cell after an exercise's checker that reads a name only the solution defines (or the stubbed function)
    would fail in the student edition, where the solution never runs."""
    full, stud = nbformat.read(path, as_version=4).cells, edition[path.stem].cells
    unsolved: dict[str, int] = {}  # name -> the solution cell that alone defines it
    problems = []
    for i, cell in enumerate(stud):
        if cell.cell_type != "code":
            continue
        source = _python(cell)
        own_checker = i - 1 if is_checker(cell) and is_stub(stud[i - 1]) else None
        problems += [f"cell {i} reads {name!r}, which only solution cell {sol} defines"
                     for name, sol in sorted(unsolved.items()) if sol != own_checker and name in read(source)]
        names = bound(source)
        unsolved = {name: sol for name, sol in unsolved.items() if name not in names}
        if is_stub(cell):
            unsolved |= dict.fromkeys((bound(_python(full[i])) - names) | stub_names(source), i)
    assert not problems, f"{path.name}: the student edition would fail here: " + "; ".join(problems)


def _imports(cells: list) -> str:
    """The top-level import statements of the code cells ``cells``, in order."""
    found = []
    for cell in (c for c in cells if c.cell_type == "code"):
        source = _python(cell)
        found += [ast.get_source_segment(source, node) for node in ast.parse(source).body
                  if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_runs_and_its_checker_prints_one_not_done_line(path, edition, monkeypatch):
    """In a namespace holding the notebook's imports, each stub cell runs (it only defines its function) and its
    checker cell prints exactly one line, "<exercise>: not done yet - <what is missing>", and returns."""
    monkeypatch.setenv(config.QUICK_ENV, "1")
    cells = edition[path.stem].cells
    pairs = exercise_pairs(cells)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(_imports(cells[: pairs[-1][1]]), f"{path.stem}: imports", "exec"), namespace)
    for stub, checker in pairs:
        exec(compile(_python(cells[stub]), f"{path.stem} cell {stub}", "exec"), namespace)  # only defines
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(_python(cells[checker]), f"{path.stem} cell {checker}", "exec"), namespace)
        lines = printed.getvalue().splitlines()
        assert len(lines) == 1 and f": {exercises.NOT_DONE} - " in lines[0], f"{path.stem} cell {checker}: {lines}"
        assert exercises.STUB_MESSAGE in lines[0]


# ---------------------------------------------------------------- no solution before its exercise
# A solution line counts when, without its comment and with its whitespace collapsed, it has at least MIN_LINE
# characters and computes something (an operator, a subscript or a number). Blank lines, comments, imports, def and
# loop headers, `return x` and plain calls such as `mu, logvar = model.encode(x)` are plumbing that every chapter shows.
# It must not appear in any earlier cell's source or text output (show() prints the package's source as text/plain):
# verbatim, or, for a line of at least MIN_RENAMED characters, with other names (a package function that the
# exercise re-implements, printed by show()). Attribute names (.softplus, .logsumexp) are kept: they are the content.

MIN_LINE, MIN_RENAMED = 20, 30
COMPUTES = re.compile(r"[-+*/%@<>\[]|\d")
PLUMBING = {"import", "from", "def", "class", "for", "with", "else", "try"}


def _tokens(line: str) -> list[str]:
    """The line's Python tokens (without comments); a line Python cannot read (prose) splits at whitespace."""
    skip = (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(line.strip()).readline) if t.type not in skip]
    except (tokenize.TokenError, SyntaxError):
        return line.split()


def _renamed(tokens: list[str]) -> str:
    """The tokens with each name (not a keyword, not an attribute) replaced by ``N``."""
    return " ".join("N" if token.isidentifier() and not keyword.iskeyword(token) and before != "." else token
                    for before, token in zip(["", *tokens], tokens, strict=False))


def solution_lines(cell) -> list[tuple[str, list[str], int]]:
    """Each line of the solution that computes something (see above), with its tokens and length."""
    body = cell.source.split(student.BEGIN)[1].split(student.END)[0]
    lines = [(line.strip(), _tokens(line), _length(line)) for line in body.splitlines()]
    return [(line, tokens, n) for line, tokens, n in lines if n >= MIN_LINE and tokens[0] not in PLUMBING
            and COMPUTES.search(" ".join(t for t in tokens if not t.startswith(("'", '"'))))]


def _length(line: str) -> int:
    """The line's length without its comment, its whitespace collapsed."""
    return len(" ".join(line.split("#")[0].split()))


def _text(cell) -> list[list[str]]:
    """The tokens of each line of a cell's source and text outputs (stream, text/plain, HTML without its tags)."""
    parts = [cell.source]
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") if out.get("output_type") == "stream" else "")
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/markdown", "")]
        parts.append(html.unescape(re.sub(r"<[^>]+>", "", data.get("text/html", ""))))
    return [_tokens(line) for part in parts for line in part.splitlines() if line.strip()]


@pytest.mark.parametrize("path", student.all_notebooks(), ids=lambda p: p.stem)
def test_no_solution_appears_before_its_exercise(path):
    cells = nbformat.read(path, as_version=4).cells
    texts = [[(" " + " ".join(tokens) + " ", _renamed(tokens)) for tokens in _text(cell)] for cell in cells]
    found = []
    for i, cell in enumerate(cells):
        if not student.is_solution(cell):
            continue
        for line, tokens, length in solution_lines(cell):
            verbatim, renamed = " " + " ".join(tokens) + " ", _renamed(tokens)
            check_renamed = length >= MIN_RENAMED
            found += [f"cell {j} shows {line!r} of solution cell {i} "
                      f"({cell.metadata.get('nbgrader', {}).get('grade_id')})" for j in range(i)
                      if any(verbatim in v or (check_renamed and renamed == r) for v, r in texts[j])]
    assert not found, f"{path.name}: " + "; ".join(found)
