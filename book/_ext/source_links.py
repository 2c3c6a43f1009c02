"""Links from the book to the package's source: a ``prodlab-modules`` directive and the repository button.

The directive lists every module of ``prodlab`` (read with ``ast``, nothing is imported, no network) with the first
line of its docstring and a link to the file in the repository, so the list follows the package as it grows.
The repository is ``PRODLAB_REPO_URL`` when set (the GitHub Pages workflow sets it to the repository it runs in),
else ``repository.url`` of ``book/_config.yml``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

PACKAGE = Path(__file__).resolve().parents[2] / "prodlab"


def repository_url(config: Any) -> str:
    return os.environ.get("PRODLAB_REPO_URL") or config.html_theme_options.get("repository_url", "")


def configure(app: Any, config: Any) -> None:
    """Let ``PRODLAB_REPO_URL`` override the repository of the button at the top of every page."""
    if os.environ.get("PRODLAB_REPO_URL"):
        config.html_theme_options = {**config.html_theme_options, "repository_url": os.environ["PRODLAB_REPO_URL"]}


def summary(path: Path) -> str:
    """The first line of a module's docstring (empty if it has none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class ModulesDirective(SphinxDirective):
    """A bullet list: each module of the package, linked to its source, with its one-line summary."""

    def run(self) -> list[nodes.Node]:
        base = repository_url(self.config).rstrip("/")
        branch = self.config.html_theme_options.get("repository_branch", "main")
        lines = []
        for path in sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts):
            relative = path.relative_to(PACKAGE.parent).as_posix()
            lines.append(f"- [`{relative}`]({base}/blob/{branch}/{relative}): {summary(path)}")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="prodlab-modules"), self.content_offset, container)
        return container.children


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", configure, priority=900)
    app.add_directive("prodlab-modules", ModulesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
