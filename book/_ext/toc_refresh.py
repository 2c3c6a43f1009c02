"""Every page's sidebar follows ``book/_toc.yml``: when the table of contents changes, every page is written again.

Each page of the book carries the whole table of contents in its sidebar (the chapters in order, with the article
sections each covers), but Sphinx rewrites only the pages whose source changed, and sphinx-external-toc adds only
the pages whose own toctree changed. After a chapter is added or retitled (notebook 08 was), an incremental
``make book`` left the other chapters' sidebars without it. This extension keeps the SHA-256 of the toc file in
the build environment and, when it differs from the last build's, marks every page as changed: a full rebuild
only when the table of contents changed, incremental builds otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

KEY = "prodlab_toc_sha256"  # stored on the pickled build environment between builds


def toc_digest(app: Any) -> str:
    """The SHA-256 of the table of contents file that Jupyter Book passed to sphinx-external-toc."""
    return hashlib.sha256((Path(app.srcdir) / app.config.external_toc_path).read_bytes()).hexdigest()


def outdated(app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Every page, when the toc changed since the environment was last saved; none otherwise."""
    digest, previous = toc_digest(app), getattr(env, KEY, None)
    setattr(env, KEY, digest)
    return sorted(env.found_docs - removed) if previous not in (None, digest) else []


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-get-outdated", outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
