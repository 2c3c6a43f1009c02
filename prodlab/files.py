"""Writing files so that an interruption never leaves half of one: every JSON, weights and cache file goes through here.

Each writer puts the bytes in a temporary file beside the target, then renames it over the target (``os.replace``
is atomic on one file system): a reader, or a run stopped by Ctrl-C, sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes it 0600: give the file the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_with(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` to write a temporary file, then move it to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors (no pickled code: loading runs nothing) to ``path`` atomically."""
    contiguous = {k: v.detach().contiguous() for k, v in tensors.items()}
    return write_with(path, lambda tmp: save_file(contiguous, str(tmp), metadata=metadata))


def write_torch(path: Path, obj: Any) -> Path:
    """``torch.save`` to ``path`` atomically (plain tensors and values only, so ``weights_only=True`` loads it)."""
    return write_with(path, lambda tmp: torch.save(obj, tmp))
