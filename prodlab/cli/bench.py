"""``python -m prodlab bench TARGET``: measurements of a task or of throughput, each target with its own options.

``gan`` (training throughput and time-to-FID, notebook 02), ``diffusion`` (FID and ms per image against sampler
steps, notebook 08), ``diffusion-sampling`` (the trainer's choice of sampler steps and guidance, run again on the
shipped weights), ``diffusion-screening`` (the candidates notebook 08 chose from), ``retrieval`` (search
quality of every embedding, notebook 06), ``editing`` (the enhancement and restoration tables, notebook 05),
``search`` (exact against approximate search at scale, notebook 06), ``devices`` (every family on a GPU and on the
CPU: where it ran, how fast; ``make gpu-check``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from prodlab import checkpoints, config, files
from prodlab.cli.common import command

MAX_SIZE = 100_000_000  # catalogue items for bench search


def _print(result: dict[str, Any], out: Path | None) -> None:
    print(json.dumps(result, indent=2))
    if out is not None:
        print(f"Wrote {out}", file=sys.stderr)


def bench_gan(args: argparse.Namespace) -> int:
    """GAN recipes at equal budgets: throughput and time-to-FID (notebook 02)."""
    from prodlab.training import gan_measure, registry  # the chapters' measuring code: only this target needs it

    out = args.out or (config.RUNS_DIR / "bench_gan_quick.json" if config.quick() else gan_measure.BENCH_GAN_FILE)
    variants = registry.QUICK_BENCH_GAN_VARIANTS if config.quick() else registry.BENCH_GAN_VARIANTS
    _print(gan_measure.bench_gan(variants, seed=args.seed, out_path=out), out)
    return 0


def bench_gan_rulers(args: argparse.Namespace) -> int:
    """Every run of notebook 02's ablation trained again and measured in both rulers' spaces, with intervals."""
    from prodlab.training import gan_rulers  # trains for minutes: only this target needs it

    out = args.out or (config.RUNS_DIR / "bench_gan_rulers_quick.json" if config.quick() else gan_rulers.BENCH_FILE)
    n = args.samples or config.budget(10_000, 300)
    _print(gan_rulers.bench_gan_rulers(n, seed=args.seed, jobs=args.jobs, out_path=out), out)
    return 0


def bench_diffusion(args: argparse.Namespace) -> int:
    """The shipped diffusion model's FID and CPU time per image against sampler steps (notebook 08)."""
    from prodlab.training import diffusion_measure  # samples for minutes: only this target needs it

    _print(diffusion_measure.write_bench(args.samples, seed=args.seed, out=args.out), args.out)
    return 0


def bench_sampling(args: argparse.Namespace) -> int:
    """The trainer's choice of sampler steps and guidance, run again on a shipped diffusion model's weights; its JSON
    is rewritten with the chosen setting, the sweep and the metrics in both rulers' spaces (notebook 08)."""
    from prodlab.training import diffusion_measure  # samples for minutes: only this target needs it

    if config.quick():
        raise checkpoints.ModelError("bench diffusion-sampling rewrites a shipped checkpoint's JSON with 10,000-sample "
                                     "metrics: run it without PRODLAB_QUICK")
    meta = diffusion_measure.rechoose_sampling(args.model, args.seed)
    print(json.dumps({k: meta[k] for k in ("model", "config", "metrics")}, indent=2))
    print(f"Rewrote {checkpoints.paths(args.model)[1]}", file=sys.stderr)
    return 0


def bench_screening(args: argparse.Namespace) -> int:
    """Diffusion candidates trained for equal CPU time and measured (notebook 08's screening table)."""
    from prodlab.training import diffusion_measure  # trains several models: only this target needs it

    _print(diffusion_measure.write_screening(args.cpu_seconds, args.samples, args.seed), None)
    return 0


def bench_retrieval(args: argparse.Namespace) -> int:
    """Search quality of every embedding: P@1, P@10, mAP@100 and timings on --queries test images (notebook 06)."""
    from prodlab import search  # FAISS and scikit-learn: only the search targets need them

    results = search.benchmark(args.queries)
    for result in results.values():
        result.pop("precision_curve", None)
    print(json.dumps(results) if args.json else search.format_table(results))
    return 0


def bench_editing(args: argparse.Namespace) -> int:
    """The enhancement and restoration tables of notebook 05 on the first --images test images."""
    from prodlab import edit  # loads torchmetrics (SSIM): only this target needs it

    start = time.perf_counter()
    result = edit.evaluate_editing(args.images, args.seed)
    result["seconds"] = round(time.perf_counter() - start, 1)
    tables = edit.format_table(result) + "\n\n" + edit.rank.markdown(result["rankings"])
    print(json.dumps(result) if args.json else tables)
    return 0


def bench_devices(args: argparse.Namespace) -> int:
    """Every family's quick recipe on a device and on the CPU: where it ran, images per second, what the shipped
    recipe takes at that speed (``make gpu-check``)."""
    from prodlab.training import device_bench  # trains four models: only this target needs it

    device = config.use_device(args.device)
    out = args.out or config.RUNS_DIR / f"bench_devices_{device.type}.json"
    result = device_bench.bench_devices(device, args.bf16, out=out)
    print(device_bench.format_rows(result))
    print(f"Wrote {out}", file=sys.stderr)
    return 0 if result["all_ran_where_asked"] else 1


def bench_search(args: argparse.Namespace) -> int:
    """Exact against approximate search at 60,000 to 10,000,000 items; writes its JSON (and the sizing note)."""
    from prodlab.search import bench, sizing  # FAISS: only the search targets need it

    for n in args.sizes or ():
        if not 1_000 <= n <= MAX_SIZE:
            raise files.TooLarge(f"--sizes must be between 1,000 and {MAX_SIZE:,}, not {n:,}")
    result = bench.bench_search(args.sizes, threads=args.threads, compare=not args.no_compare, seed=args.seed)
    out = args.out or (bench.QUICK_FILE if config.quick() else
                       config.RUNS_DIR / "bench_search.json" if args.sizes else bench.BENCH_FILE)
    files.write_json(out, result)
    if out == bench.BENCH_FILE:
        sizing.write_note(result)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    print(f"Wrote {out}", file=sys.stderr)
    return 0


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "bench", "measure a task or throughput: gan, gan-rulers, diffusion, diffusion-sampling, "
                "diffusion-screening, retrieval, editing, search", lambda args: args.target_func(args),
                "python -m prodlab bench search --sizes 1000000")
    targets = p.add_subparsers(dest="target", required=True)

    def target(name: str, func: Any, help_text: str, out_default: str | None) -> argparse.ArgumentParser:
        q = targets.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(target_func=func)
        q.add_argument("--seed", type=int, default=0)
        if out_default is not None:
            q.add_argument("--out", type=Path, default=None, help=f"output JSON (default: {out_default})")
        return q

    target("gan", bench_gan, "GAN recipes at equal budgets: throughput and time-to-FID (notebook 02)",
           "data/checkpoints/bench_gan.json; quick mode runs/bench_gan_quick.json")
    q = target("gan-rulers", bench_gan_rulers, "every run of notebook 02's GAN ablation trained again and measured "
               "in both rulers' spaces with intervals (notebook 02)",
               "data/checkpoints/bench_gan_rulers.json; quick mode runs/bench_gan_rulers_quick.json")
    q.add_argument("--samples", type=_positive, default=None, help="samples per generator (default 10,000; quick 300)")
    q.add_argument("--jobs", type=_positive, default=2, help="runs trained at once, one process each (default 2)")
    q = target("diffusion", bench_diffusion, "FID and ms per image of the shipped diffusion model against sampler "
               "steps (notebook 08)", "data/checkpoints/bench_diffusion.json; quick mode runs/")
    q.add_argument("--samples", type=_positive, default=None, help="samples per point (default 1,000; quick 30)")
    q = target("diffusion-sampling", bench_sampling, "choose a shipped diffusion model's sampler steps and guidance "
               "again, as its trainer does, and rewrite its JSON (notebook 08)", None)
    q.add_argument("--model", default="diffusion", help="the diffusion checkpoint (default: diffusion)")
    q = target("diffusion-screening", bench_screening, "the diffusion candidates of notebook 08, trained for equal "
               "CPU time", None)
    q.add_argument("--cpu-seconds", type=float, default=30.0, help="training CPU seconds per candidate (default 30)")
    q.add_argument("--samples", type=_positive, default=300, help="samples measured per candidate (default 300)")
    q = target("retrieval", bench_retrieval, "search quality of every embedding (notebook 06)", None)
    q.add_argument("--queries", type=_positive, default=10_000, help="test images used as queries (default 10,000)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = target("editing", bench_editing, "the enhancement and restoration tables of notebook 05", None)
    q.add_argument("--images", type=_positive, default=1000, help="test images edited (default 1,000)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = target("devices", bench_devices, "every family's quick recipe on a device (GPU) and on the CPU: where it "
               "ran and how fast (make gpu-check)", "runs/bench_devices_DEVICE.json")
    q.add_argument("--device", choices=config.DEVICES, default="auto", help="the device to check (default: auto)")
    q.add_argument("--bf16", action="store_true", help="train with bf16 autocast on the device")
    q = target("search", bench_search, "exact against approximate (FAISS) search at scale (notebook 06)",
               "data/checkpoints/bench_search.json; quick mode or --sizes: runs/")
    q.add_argument("--sizes", type=int, action="append", default=None, metavar="N",
                   help="catalogue size (repeatable; default 60,000, 1,000,000 and 10,000,000; quick mode 60,000 and "
                        "200,000)")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.add_argument("--threads", type=_positive, default=1,
                   help="threads for building and batched queries (single queries use one)")
    q.add_argument("--no-compare", action="store_true", help="measure only the default index type")
