"""The figure catalogue: every figure of the workbook, registered once, reproduced by one command.

``python -m prodlab figures [--out DIR] [--only ID]`` calls each registered function, saves its PNG and
writes ``index.md`` listing the figure, the article section it illustrates and how it was made.
A figure function takes no arguments, loads what it needs through ``prodlab`` and returns a Figure
built by a ``prodlab.plots`` helper; notebooks call the same helpers, so the catalogue and the book agree.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from prodlab import config


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


def write_catalogue(out: Path = config.FIGURES_DIR, only: str | None = None) -> list[Path]:
    """Render the registered figures (or just ``only``) into ``out`` and (re)write ``out/index.md``."""
    if only is not None and only not in REGISTRY:
        raise KeyError(f"no figure {only!r}; known: {', '.join(sorted(REGISTRY))}")
    out.mkdir(parents=True, exist_ok=True)
    specs = [REGISTRY[only]] if only else list(REGISTRY.values())
    written, rows = [], []
    for spec in specs:
        start = time.perf_counter()
        fig = spec.make()
        path = out / f"{spec.id}.png"
        fig.savefig(path, facecolor="white")
        seconds = time.perf_counter() - start
        written.append(path)
        rows.append((spec, seconds))
        print(f"  {spec.id:32s} {seconds:6.1f} s  {path}")
    (out / "index.md").write_text(_index(rows, complete=only is None), encoding="utf-8")
    return written


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



