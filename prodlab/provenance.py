"""Which checkpoints a notebook read, by SHA-256, so a test can tell when one changed after the notebook ran.

Notebook 04 once kept an old dcgan row in its prose after the checkpoint was retrained; ``--nbval-lax`` compares no
outputs, so nothing noticed. Now :func:`prodlab.checkpoints.load` calls :func:`record` for every checkpoint it
loads, and the last code cell of every notebook calls :func:`report`, which prints one stable line::

    checkpoints read: classifier=sha256:6f1c... dcgan=sha256:5bcc...

(``checkpoints read: none`` for a notebook that reads none). ``tests/test_freshness.py`` parses that stored output
with :func:`parse` and fails when a checkpoint file's SHA-256 differs from the one the notebook read: the notebook
must be re-run (``make notebooks``).
"""

from __future__ import annotations

import re
from pathlib import Path

from prodlab import files

PREFIX = "checkpoints read:"
_READ: dict[str, str] = {}  # checkpoint name -> SHA-256 of its .safetensors file, for this process (kernel)
_ENTRY = re.compile(r"([\w.-]+)=sha256:([0-9a-f]{64})")


def record(name: str, path: Path, sha256: str | None = None) -> str:
    """Note that checkpoint ``name`` was read from ``path`` (its SHA-256 computed unless given); return the hash."""
    _READ[name] = sha256 or files.sha256(path)
    return _READ[name]


def read() -> dict[str, str]:
    """The checkpoints read so far in this process: name -> SHA-256."""
    return dict(_READ)


def line(checkpoints: dict[str, str] | None = None) -> str:
    """The report line for ``checkpoints`` (default: those read so far), names sorted."""
    entries = sorted((checkpoints if checkpoints is not None else _READ).items())
    return f"{PREFIX} " + (" ".join(f"{name}=sha256:{sha}" for name, sha in entries) or "none")


def report() -> None:
    """Print the report line: the last code cell of every notebook calls this."""
    print(line())


def parse(text: str) -> dict[str, str] | None:
    """The checkpoints of a report line found in ``text`` (a cell's stored output), or None if there is none."""
    for row in text.splitlines():
        if row.startswith(PREFIX):
            return dict(_ENTRY.findall(row))
    return None
