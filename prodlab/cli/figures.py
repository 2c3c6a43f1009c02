"""``python -m prodlab figures``: reproduce the figure catalogue; ``compute NAME``: recompute a cached analysis."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prodlab import config
from prodlab.cli.common import command


def cmd_figures(args: argparse.Namespace) -> int:
    """Render the figure catalogue."""
    # Imported here, not at the top: the chapters load matplotlib and every model, which no other command needs.
    from prodlab import chapters, figures  # noqa: F401  (importing the chapters registers their figures)

    if args.list:
        for spec in figures.REGISTRY.values():
            print(f"{spec.id:32s} {spec.section:20s} {spec.title}")
        return 0
    jobs = 1 if args.only else args.jobs or figures.default_jobs()
    print(f"Writing figures to {args.out} (quick mode {'on' if config.quick() else 'off'}, "
          f"{jobs} process{'es' if jobs > 1 else ''})")
    written = figures.write_catalogue(args.out, args.only, jobs=jobs)
    print(f"{len(written)} figure(s) and {args.out / 'index.md'}")
    if args.gallery:
        for path in figures.write_gallery(args.out):
            print(f"  gallery: {path}")
    return 0


def cmd_compute(args: argparse.Namespace) -> int:
    """Recompute a cached analysis that figures and notebooks draw from (or list them)."""
    # Imported here, not at the top: the chapters register the computations and load matplotlib and every model.
    from prodlab import cache, chapters, widgets  # noqa: F401  (importing them registers their computations)

    if args.name is None:
        for spec in cache.REGISTRY.values():
            print(f"{spec.name:20s} {spec.description}")
        return 0
    if args.name not in cache.REGISTRY:
        raise KeyError(f"no computation {args.name!r}; known: {', '.join(sorted(cache.REGISTRY))}")
    start = time.perf_counter()
    cache.get(args.name, refresh=True)
    print(f"Recomputed {args.name} in {time.perf_counter() - start:.0f} s: {cache.path(args.name)}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "figures", "reproduce the figure catalogue", cmd_figures,
                "python -m prodlab figures --only gan-samples")
    p.add_argument("--out", type=Path, default=config.FIGURES_DIR, help="output folder (default: figures/)")
    p.add_argument("--only", help="render only this figure id")
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes drawing the figures (default: one per CPU, at most 4; 1 draws them here)")
    p.add_argument("--gallery", action="store_true",
                   help="also refresh the README's gallery (docs/gallery/, small copies of a few figures)")
    p = command(sub, "compute", "recompute a cached analysis (the beta sweep, ...); without NAME, list them",
                cmd_compute, "python -m prodlab compute vae-beta-sweep")
    p.add_argument("name", nargs="?", help="the computation (default: list them)")
