"""The book's maths, rendered offline: MathJax is copied into the site instead of loaded from a CDN.

Jupyter Book 1 points every page at MathJax on a CDN, so a reader offline (or a site behind a firewall) sees raw
``\\(...\\)``. The copy served here is MathJax 2.7 as shipped by Jupyter's own ``jupyter-server-mathjax`` package
(a dev dependency, so ``make setup`` installs it; no Node or system package is needed). It is configured as the
classic notebook configured it: TeX input, HTML-CSS output with the STIX-Web fonts that the package includes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jupyter_server_mathjax

MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
TARGET = "mathjax"  # under the site's _static/
CONFIG = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
    "HTML-CSS": {"availableFonts": [], "imageFont": None, "preferredFont": None, "webFont": "STIX-Web"},
    "messageStyle": "none",
}


def configure(app: Any, config: Any) -> None:
    """Point Sphinx at the copy, in MathJax 2 syntax, and keep MyST from adding MathJax 3 settings."""
    config.mathjax_path = f"{TARGET}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    config.mathjax2_config = CONFIG
    config.mathjax3_config = None
    config.myst_update_mathjax = False


def copy_mathjax(app: Any, exception: Exception | None) -> None:
    """After a successful HTML build, put MathJax (12 MB, without its translations of the menus) in the site."""
    if exception is None and app.builder.format == "html":
        shutil.copytree(MATHJAX, Path(app.outdir) / "_static" / TARGET, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("localization", "__pycache__"))


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", configure, priority=900)  # after Jupyter Book's own defaults
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
