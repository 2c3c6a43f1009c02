"""The package's shape: modules under 400 lines, imports one way (CLI -> chapters -> engine -> models -> data), lazy
imports only where a comment says why, every function a chapter teaches names its chapter, and Fashion-MNIST's
numbers written in one module only."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from prodlab import config

PACKAGE = config.REPO_ROOT / "prodlab"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)

# Lower layers never import higher ones. A new module gets a layer here (the test says which one is missing).
LAYERS: dict[str, int] = {
    "config": 0, "files": 0,
    "data": 1, "datasets": 1, "losses": 1, "recipes": 1, "runs": 1, "provenance": 1, "imageio": 1, "degrade": 1,
    "distributed": 1, "text": 1,
    "models": 2, "metrics": 2, "bootstrap": 2, "toy": 2, "toy_vae": 2, "diffusion": 2, "flow_toy": 2,
    "checkpoints": 3, "plotting": 3, "figures": 3, "cache": 3, "show": 3,
    "ruler": 4, "ruler_checks": 4, "training": 4, "edit": 4, "search": 4, "exercises": 4,
    "widgets": 5, "catalogue_explorer": 5, "student": 5,
    "chapters": 6,
    "__main__": 7, "__init__": 7, "cli": 7,
}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts)


def _layer(module: str) -> int:
    top = module.split(".")[0]
    if top not in LAYERS:
        pytest.fail(f"prodlab.{module} has no layer in tests/test_layout.py LAYERS: give it one")
    return LAYERS[top]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported prodlab module, line, at module level) for every import of a prodlab module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prodlab"):
            base = node.module.removeprefix("prodlab").lstrip(".")
            names = [base] if base else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("prodlab.") for a in node.names if a.name.startswith("prodlab.")]
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_under_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) < 400, f"{_name(path)}: split it by topic"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_imports_run_one_way(path):
    here = _name(path)
    if here.endswith("__init__") and here != "__init__":
        here = here.removesuffix(".__init__")
    for module, line, _ in _imports(path):
        if module.split(".")[0] == here.split(".")[0]:
            continue  # inside one package (prodlab.training, prodlab.edit, ...)
        assert _layer(module) <= _layer(here), (
            f"prodlab.{here} (layer {_layer(here)}) imports prodlab.{module} (layer {_layer(module)}) at line {line}")


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_lazy_imports_say_why(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top_level:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            context = " ".join(lines[max(node.lineno - 3, 0) : node.lineno])
            assert "#" in context, f"prodlab.{_name(path)} line {node.lineno}: a lazy import needs a comment saying why"


TAUGHT = {  # module -> the chapter that teaches it
    "data": "00", "losses": "01", "models/gan": "02", "training/gan": "02", "training/gan_measure": "02",
    "models/vae": "03", "training/vae": "03", "training/vae_measure": "03", "metrics": "04", "ruler": "04",
    "bootstrap": "04", "ruler_checks": "04", "training/classifier": "04", "models/classifier": "04", "degrade": "05",
    "edit/restore": "05", "edit/evaluate": "05", "edit/personalise": "05", "edit/diffusion_prior": "05",
    "widgets": "07", "catalogue_explorer": "07",
    "models/encoder": "04", "training/contrastive": "04",
    "text": "10", "models/clip": "10", "training/clip": "10", "search/by_text": "10", "models/autoencoder": "10",
    "training/autoencoder": "10", "models/text_diffusion": "10", "training/text_diffusion": "10",
    "edit/by_prompt": "10",
}


@pytest.mark.parametrize("module", sorted(TAUGHT))
def test_taught_functions_name_their_chapter(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    public = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
    missing = [n.name for n in public if "chapter" not in (ast.get_docstring(n) or "").lower()]
    assert not missing, f"prodlab/{module}.py: docstrings that do not name chapter {TAUGHT[module]}: {missing}"


# ---------------------------------------------------------------- Fashion-MNIST's numbers, in one module

FASHION_MNIST = PACKAGE / "datasets" / "fashion_mnist.py"
SIDE_AND_PIXELS = {"28", "784", "28.0", "784.0"}
CLASS_COUNT_NAMES = {"n_classes", "num_classes", "null_label", "minlength", "n_class"}
CONVOLUTIONS = {"Conv2d", "ConvTranspose2d"}


def fashion_mnist_literals(source: str) -> list[str]:
    """Where code (not comments or strings: Python's tokenizer tells them apart) writes Fashion-MNIST's image side
    or pixel count (28, 784), a one-channel convolution (``Conv2d(1, ...)``, ``ConvTranspose2d(c, 1, ...)``) or ten
    classes (``n_classes=10``, ``range(10)``, ``% 10``, ``arange(10)``)."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]
    found = []
    for i, tok in enumerate(tokens):
        text = [t.string for t in tokens[i : i + 6]]
        where = f"line {tok.start[0]}: "
        if tok.type == tokenize.NUMBER and tok.string in SIDE_AND_PIXELS:
            found.append(where + tok.string)
        elif tok.string in CONVOLUTIONS and text[1:3] == ["(", "1"]:
            found.append(where + "".join(text[:4]))
        elif tok.string in CONVOLUTIONS and text[1] == "(" and text[3:5] == [",", "1"]:
            found.append(where + "".join(text[:6]))
        elif tok.string in CLASS_COUNT_NAMES and text[1:3] == ["=", "10"]:
            found.append(where + "".join(text[:3]))
        elif tok.string in ("range", "arange") and text[1:4] == ["(", "10", ")"]:
            found.append(where + "".join(text[:4]))
        elif tok.string == "%" and text[1] == "10":
            found.append(where + "% 10")
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if p != FASHION_MNIST], ids=_name)
def test_fashion_mnists_numbers_are_written_only_in_its_definition(path):
    found = fashion_mnist_literals(path.read_text(encoding="utf-8"))
    assert not found, (f"prodlab/{path.relative_to(PACKAGE)} writes Fashion-MNIST's shape or classes: {found}; "
                       "take them from the image spec (data.spec() or model.cfg.image)")


def test_the_literal_check_finds_what_it_looks_for_and_ignores_prose():
    code = (
        "# a 28 x 28 image in a comment\n"
        "doc = 'a 28 x 28 image in a string'\n"
        "x = torch.zeros(n, 1, 28, 28)\n"
        "conv = nn.Conv2d(1, 32, 3)\n"
        "up = nn.ConvTranspose2d(w, 1, 4)\n"
        "gan = GANConfig(n_classes=10)\n"
        "labels = torch.arange(10)\n"
        "y = i % 10\n"
        "flat = x.reshape(-1, 784)\n"
        "ok = nn.Conv2d(c, 32, 3) if n_classes == 12 else range(100)\n"
    )
    found = fashion_mnist_literals(code)
    assert [f.split(":")[0] for f in found] == ["line 3", "line 3", "line 4", "line 5", "line 6", "line 7",
                                                "line 8", "line 9"]
    assert fashion_mnist_literals(FASHION_MNIST.read_text(encoding="utf-8"))  # the definition does write them
