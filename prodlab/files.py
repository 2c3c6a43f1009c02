"""Writing files so that an interruption never leaves half of one: every JSON, weights and cache file goes through here.

Each writer puts the bytes in a temporary file beside the target, then renames it over the target (``os.replace``
is atomic on one file system): a reader, or a run stopped by Ctrl-C, sees the old file or the new one, never a mix.
A cache file is built by one process at a time (:func:`exclusive`, :func:`load_or_build`): another process that
needs it waits, then reads it, rather than computing it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

# fcntl (advisory file locks) is POSIX only: on Windows each process builds what it needs (writes stay atomic)
try:
    import fcntl
except ImportError:
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")


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


def sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (data files, checkpoints, catalogues)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TooLarge(ValueError):
    """A request whose result cannot fit in this machine's memory or on its disk; refused before any work."""


def available_memory() -> int | None:
    """Bytes of memory free now (Linux and macOS: ``sysconf``), or None where it cannot be read."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(nbytes: float) -> str:
    """``nbytes`` for a message: ``1.6 MB``, ``78.4 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:.0f} bytes"


def check_memory(nbytes: int, what: str) -> None:
    """``TooLarge`` (one line) when ``what`` needs ``nbytes`` and that is over half the memory free now."""
    free = available_memory()
    if free is not None and nbytes > free // 2:
        raise TooLarge(f"{what} need {size_text(nbytes)} of memory and {size_text(free)} are free: "
                       "refused; ask for fewer")


def check_disk(nbytes: int, path: Path, what: str) -> None:
    """``TooLarge`` (one line) when writing ``nbytes`` to ``path`` would not fit on its disk."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise TooLarge(f"{what} need up to {size_text(nbytes)} on disk and {size_text(free)} are free "
                       f"at {folder}: refused; ask for fewer or write elsewhere")


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


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (written by :func:`write_tensors`)."""
    return load_file(str(path))


class Busy(RuntimeError):
    """Another process is building this file now (:func:`exclusive` with ``wait=False``)."""


@contextmanager
def exclusive(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold the lock of ``path`` (an advisory lock on ``.NAME.lock`` beside it) while building it, so that two
    processes never build the same file at once; the lock goes with the process even if it is killed.

    ``wait=False``: raise :class:`Busy` at once when another process holds the lock.
    """
    if fcntl is None:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(f"{path.name} is being built by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_MISSING: Any = object()


def _load_valid(path: Path, load: Callable[[Path], T], valid: Callable[[T], bool] | None) -> T:
    """What ``load(path)`` gives if it works and passes ``valid``, else ``_MISSING``."""
    if not path.is_file():
        return _MISSING
    try:
        found = load(path)
    except Exception:  # a damaged file (unreadable, a bad header, a missing key) is rebuilt, never trusted
        return _MISSING
    return found if valid is None or valid(found) else _MISSING


def load_or_build(
    path: Path,
    build: Callable[[], T],
    *,
    valid: Callable[[T], bool] | None = None,
    load: Callable[[Path], T] | None = None,
    save: Callable[[Path, T], Any] | None = None,
    refresh: bool = False,
) -> T:
    """What the cache file ``path`` holds, else ``build()``, saved there (atomically) and returned.

    By default the file is safetensors: ``load`` is :func:`read_tensors`, ``save`` is :func:`write_tensors`. A file
    that cannot be read, or whose content fails ``valid``, is removed and rebuilt, never trusted; ``refresh``
    rebuilds whatever the file holds. The build holds :func:`exclusive`: a process that needs the file meanwhile
    waits for it, then reads it.
    """
    path = Path(path)
    load = load or read_tensors  # type: ignore[assignment]
    save = save or write_tensors  # type: ignore[assignment]
    found = _MISSING if refresh else _load_valid(path, load, valid)
    if found is not _MISSING:
        return found
    with exclusive(path):
        found = _MISSING if refresh else _load_valid(path, load, valid)  # built by another process while we waited
        if found is not _MISSING:
            return found
        if not refresh:
            path.unlink(missing_ok=True)  # damaged or stale: gone even if the build fails
        built = build()
        save(path, built)
    return built
