"""Command-line options of product search (notebook 06): ``search IMAGE --index exact|approx`` and
``bench search --n N [--json]``. ``prodlab.__main__`` adds them to its parsers; this module owns their meaning.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prodlab import config, files
from prodlab.search import bench, sizing
from prodlab.search.embed import SearchError
from prodlab.search.index import KINDS

MAX_N = 100_000_000


def add_search_index_argument(parser: argparse.ArgumentParser) -> None:
    """``--index exact|approx`` (default exact): the exact matrix product, or the FAISS index (built and cached in
    ``data/cache`` on first use)."""
    parser.add_argument("--index", choices=KINDS, default="exact",
                        help="exact (default): every catalogue vector is compared; approx: the FAISS IVF index, "
                             "built and cached on first use")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench search`` (``--seed`` and ``--out`` are shared with ``bench gan``)."""
    parser.add_argument("--n", type=int, action="append", default=None, metavar="N",
                        help="catalogue size for 'search' (repeatable; default 60,000, 1,000,000 and 10,000,000; "
                             "quick mode 60,000 and 200,000); for 'diffusion', samples per point (default 1,000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON ('search')")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for building and batched queries ('search'; single queries use one)")
    parser.add_argument("--no-compare", action="store_true",
                        help="measure only the default index type ('search'), not the alternatives")


def _sizes(args: argparse.Namespace) -> list[int] | None:
    """The ``--n`` values, checked: ``SearchError`` naming the valid range for a bad one."""
    for n in args.n or ():
        if not 1_000 <= n <= MAX_N:
            raise SearchError(f"--n must be between 1,000 and {MAX_N:,}, not {n:,}")
    if args.threads < 1:
        raise SearchError(f"--threads must be at least 1, not {args.threads}")
    return args.n


def output_path(args: argparse.Namespace) -> Path:
    """``--out``, else the shipped file for the full run, else one in ``runs/`` (quick or chosen sizes)."""
    if getattr(args, "out", None):
        return Path(args.out)
    if config.quick():
        return bench.QUICK_FILE
    return config.RUNS_DIR / "bench_search.json" if args.n else bench.BENCH_FILE


def format_bench(result: dict[str, Any]) -> str:
    """The scale benchmark as a text table: one row per catalogue size and index."""
    lines = [f"{'items':>11s} {'index':24s} {'recall@10':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'batch ms':>8s} "
             f"{'build s':>8s} {'bytes/item':>10s}"]
    for r in result["results"]:
        if "skipped" in r:
            lines.append(f"{r['n']:11,d} skipped: {r['skipped']}")
            continue
        for m in [r["exact"], r["approx"], *r["compared"]]:
            name = m.get("factory", "exact")
            recall = f"{m['recall_at_10']:9.3f}" if "recall_at_10" in m else f"{'1':>9s}"
            lines.append(f"{r['n']:11,d} {name:24s} {recall} {m['single_ms']['p50']:8.3f} {m['single_ms']['p99']:8.3f} "
                         f"{m['batched_ms_per_query']:8.4f} {m['build_s']:8.1f} {m['bytes_per_item']:10.0f}")
    return "\n".join(lines + [f"stand-in: {result['stand_in']}"])


def run_bench(args: argparse.Namespace) -> int:
    """``bench search``: run :func:`bench.bench_search`, write its JSON atomically (and, for the shipped run,
    ``docs/search-at-scale.md``), print a table or the JSON."""
    sizes = _sizes(args)
    result = bench.bench_search(sizes, threads=args.threads, compare=not args.no_compare,
                                seed=getattr(args, "seed", 0))
    out = output_path(args)
    files.write_json(out, result)
    if out == bench.BENCH_FILE:
        sizing.write_note(result)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    print(f"Wrote {out}", file=sys.stderr)
    return 0
