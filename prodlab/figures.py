"""The figure catalogue: every figure of the workbook, registered once, reproduced by one command.

``python -m prodlab figures [--out DIR] [--only ID]`` calls each registered function, saves its PNG and
writes ``index.md`` listing the figure, the article section it illustrates and how it was made.
A figure function takes no arguments, loads what it needs through ``prodlab`` and returns a Figure
built by a ``prodlab.plots`` helper; notebooks call the same helpers, so the catalogue and the book agree.

With ``jobs`` > 1 the figures are drawn by that many worker processes (one thread each), while the main
process hands them out in catalogue order and writes ``index.md``. A figure that needs a cached analysis another
worker is computing (``prodlab.cache``; one process computes each) goes to the back of the queue instead of
waiting. Each figure is drawn on one thread from the same seeded random state (:func:`draw`), so the PNGs are
those of a serial run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from prodlab import cache, config, files


@dataclass(frozen=True)
class FigureSpec:
    id: str
    title: str
    section: str  # the article section it illustrates, e.g. "§3.3 step 2"
    notebook: str  # where the figure is discussed
    how: str  # how it was made, one sentence
    make: Callable[[], Figure]


REGISTRY: dict[str, FigureSpec] = {}


def register(id: str, title: str, section: str, notebook: str, how: str):
    """Decorator: add a no-argument figure function to the catalogue under ``id``."""

    def wrap(make: Callable[[], Figure]) -> Callable[[], Figure]:
        if id in REGISTRY:
            raise ValueError(f"figure id {id!r} registered twice")
        REGISTRY[id] = FigureSpec(id, title, section, notebook, how, make)
        return make

    return wrap


def register_variants(make: Callable[[str], Figure], section: str, notebook: str,
                      variants: dict[str, tuple[str, str, str]]) -> None:
    """Register ``make(key)`` once per variant, ``variants`` mapping key -> (figure id, title, how it was made)."""
    for key, (fid, title, how) in variants.items():
        register(fid, title, section, notebook, how)(functools.partial(make, key))


def default_jobs() -> int:
    """Worker processes for the catalogue: one per CPU this process may use, at most 4 (each holds its models)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 4))


def write_catalogue(out: Path = config.FIGURES_DIR, only: str | None = None, jobs: int = 1) -> list[Path]:
    """Render the registered figures (or just ``only``) into ``out`` and (re)write ``out/index.md``; ``jobs`` > 1
    draws them in that many worker processes (see the module's docstring)."""
    if only is not None and only not in REGISTRY:
        raise KeyError(f"no figure {only!r}; known: {', '.join(sorted(REGISTRY))}")
    out.mkdir(parents=True, exist_ok=True)
    ids = [only] if only else list(REGISTRY)
    seconds: dict[str, float] = {}

    def done(fid: str, took: float) -> None:
        seconds[fid] = took
        print(f"  {fid:32s} {took:6.1f} s  {out / f'{fid}.png'}", flush=True)

    if jobs > 1 and len(ids) > 1:
        _draw_in_workers(ids, out, min(jobs, len(ids)), done)
    else:
        for fid in ids:
            done(fid, draw(fid, out))
    rows = [(REGISTRY[fid], seconds[fid]) for fid in ids]
    (out / "index.md").write_text(_index(rows, complete=only is None), encoding="utf-8")
    return [out / f"{fid}.png" for fid in ids]


def draw(fid: str, out: Path) -> float:
    """Draw figure ``fid`` into ``out/ID.png`` and return the seconds it took.

    From the seeded random state, so that the figure is the same whatever ran before it, in this process or another;
    on one thread (torch's and NumPy's BLAS), so that it is the same whatever ``jobs`` and the machine's cores: the
    models some figures train give other float roundings with another thread count.
    """
    # Imported here, not at the top: threadpoolctl (scikit-learn's) is needed only to cap NumPy's BLAS threads.
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    config.seed_everything(0)
    with config.one_thread(), threadpool_limits(1):
        REGISTRY[fid].make().savefig(out / f"{fid}.png", facecolor="white")
    return time.perf_counter() - start


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    task: str | None = None  # the figure it is drawing


def _draw_in_workers(ids: list[str], out: Path, jobs: int, done: Callable[[str, float], None]) -> None:
    """Draw ``ids`` in ``jobs`` worker processes, calling ``done(id, seconds)`` as each is written. A worker's
    error is raised here (after the workers stopped), with the worker's traceback as its cause."""
    # The workers import the modules that registered the figures (they have them already when forked).
    modules = sorted({getattr(spec.make, "func", spec.make).__module__ for spec in REGISTRY.values()})
    # fork: the workers start with everything imported, at once; this process has run no torch threads yet
    # (figures are drawn only in the workers). spawn where fork is unsafe (macOS) or missing (Windows).
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    sys.stdout.flush()  # else a forked worker writes this process's buffered output a second time
    sys.stderr.flush()
    workers = []
    for _ in range(jobs):
        mine, theirs = context.Pipe()
        process = context.Process(target=_work, args=(theirs, modules))
        process.start()
        theirs.close()
        workers.append(_Worker(process, mine))
    queue = deque((fid, False) for fid in ids)  # (figure, wait for a computation that another worker holds)
    try:
        while queue or any(w.task for w in workers):
            for w in workers:
                if w.task is None and queue:
                    w.task, wait = queue.popleft()
                    w.conn.send((w.task, out, wait))
            drawing = [w for w in workers if w.task]
            ready = wait_for([w.conn for w in drawing] + [w.process.sentinel for w in drawing])
            for w in (w for w in drawing if w.conn in ready or w.process.sentinel in ready):
                try:
                    kind, payload = w.conn.recv()
                except EOFError:
                    raise RuntimeError(f"the worker drawing {w.task} died (exit code {w.process.exitcode})") from None
                fid, w.task = w.task, None
                if kind == "busy":
                    queue.append((fid, True))  # drawn last; then it waits for the other worker
                elif kind == "error":
                    err, remote = payload
                    raise err from _RemoteTraceback(remote)
                else:
                    done(fid, payload)
    except BaseException as err:
        _stop(workers, interrupted=isinstance(err, KeyboardInterrupt))  # Ctrl-C reached the workers too
        raise
    _stop(workers, interrupted=False)


class _RemoteTraceback(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return f"in the figure worker:\n{self.args[0]}"


def _stop(workers: list[_Worker], interrupted: bool) -> None:
    """End the workers. A figure in progress is interrupted (its atomic writes leave nothing behind), unless Ctrl-C
    (``interrupted``), which reached them already."""
    for w in workers:
        if not w.process.is_alive():
            continue
        with contextlib.suppress(OSError):  # it may be gone already
            w.conn.send(None)  # read after its figure: the stop holds even where a signal is lost (just after fork)
        if w.task is not None and not interrupted:
            os.kill(w.process.pid, signal.SIGINT)
    for w in workers:
        w.process.join(timeout=30)
        if w.process.is_alive():
            w.process.terminate()
            w.process.join()
        w.conn.close()


def _work(conn: Connection, modules: list[str]) -> None:
    """A worker: draw the figures it is sent until it is sent None or interrupted."""
    # Ctrl-C, or the main process stopping this worker mid-figure, raises KeyboardInterrupt here even where this
    # process started with SIGINT ignored (a background job): else a long figure would run to its end first.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for name in modules:
            importlib.import_module(name)  # registers the figures (and their computations) under spawn
        while (task := conn.recv()) is not None:
            fid, out, wait = task
            cache.WAIT_WHEN_BUSY = wait
            try:
                conn.send(("done", draw(fid, out)))
            except files.Busy:
                conn.send(("busy", None))
            except Exception as err:
                conn.send(("error", (_picklable(err), traceback.format_exc())))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # Ctrl-C (the main process reports it) or the main process went away


def _picklable(err: Exception) -> Exception:
    """``err`` itself if it survives pickling (the CLI then reports it as it would in one process), else a
    RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


GALLERY = ("gan-samples-per-class", "edit-class-transfer", "edit-inpaint-center", "edit-directions-cdcgan",
           "vae-manifold", "search-good")  # the README's gallery, in its order
GALLERY_DIR = config.REPO_ROOT / "docs" / "gallery"


def write_gallery(source: Path = config.FIGURES_DIR, dest: Path = GALLERY_DIR, width: int = 640) -> list[Path]:
    """Small copies (``width`` pixels wide at most) of the ``GALLERY`` figures rendered in ``source``, for the
    README; a missing figure raises ``FileNotFoundError`` naming the command that makes it."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for fid in GALLERY:
        path = source / f"{fid}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run python -m prodlab figures --out {source} first")
        with Image.open(path) as img:
            img.thumbnail((width, width * 4))
            img.save(dest / path.name, optimize=True)
        written.append(dest / path.name)
    return written


def _index(rows: list[tuple[FigureSpec, float]], complete: bool) -> str:
    lines = [
        "# prodlab figure catalogue",
        "",
        "Made by `python -m prodlab figures`" + ("" if complete else " (partial run: `--only`)") + ".",
        f"Quick mode: {'on (reduced budgets)' if config.quick() else 'off'}.",
        "",
        "| figure | article section | notebook | how it was made | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| [{s.title}]({s.id}.png) | {s.section} | {s.notebook} | {s.how} | {sec:.1f} |" for s, sec in rows
    ]
    lines.append("")
    for spec, _ in rows:
        lines += [f"## {spec.title}", "", f"![{spec.title}]({spec.id}.png)", ""]
    return "\n".join(lines)



