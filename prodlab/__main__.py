"""Command line: ``python -m prodlab COMMAND`` (``--help`` lists the commands).

Every command turns a ``prodlab`` error about the user's input (missing data, a bad file, an unknown
name) into one clear message and exit status 1, never a traceback.
"""

from __future__ import annotations

import os

# Threads that wait for work sleep instead of spinning: on a shared 2-core machine a spinning OpenMP thread
# that competes with another process for a core makes training several times slower. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from prodlab import checkpoints, config, data, runs  # noqa: E402


def cmd_data(args: argparse.Namespace) -> int:
    """Find, stage and verify Fashion-MNIST; report where it came from."""
    report = data.check(download=not args.no_download)
    print(f"Fashion-MNIST found: {report.source}")
    print(f"  staged in {report.raw_dir}; SHA-256 of all four files verified")
    print(f"  cache: {report.cache}")
    for split in data.SPLITS:
        images, labels = data.load(split)
        size = f"{images.shape[1]}x{images.shape[2]}"
        print(f"  {split}: {len(images):,} images of {size}, {labels.unique().numel()} classes")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """Render the figure catalogue."""
    from prodlab import figures

    if args.list:
        for spec in figures.REGISTRY.values():
            print(f"{spec.id:32s} {spec.section:20s} {spec.title}")
        return 0
    print(f"Writing figures to {args.out} (quick mode {'on' if config.quick() else 'off'})")
    written = figures.write_catalogue(args.out, args.only)
    print(f"{len(written)} figure(s) and {args.out / 'index.md'}")
    if args.gallery:
        for path in figures.write_gallery(args.out):
            print(f"  gallery: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a registered model with its recipe and write its checkpoint (weights + JSON)."""
    from prodlab import train

    checkpoints.spec(args.model)
    command = "python -m prodlab " + shlex.join(args.argv)
    print(f"Training {args.model} (seed {args.seed}, quick mode {'on' if config.quick() else 'off'})")
    metrics, meta_path = train.train_and_save(args.model, args.seed, command, args.checkpoint_dir, resume=args.resume)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    print(f"Wrote {meta_path.with_suffix('.safetensors')} and {meta_path} ({meta['train_seconds']:.0f} s)")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key}: {value:.4f}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Draw samples of a generative model into an .npz file (images uint8 N x 28 x 28, labels if conditional)."""
    images, labels = checkpoints.generate(args.model, args.n, args.seed, args.checkpoint_dir)
    arrays = {"images": images.numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"Wrote {len(images):,} samples of {args.model} (seed {args.seed}) to {args.out}"
          + (" with balanced labels" if labels is not None else ""))
    return 0


def _number(value: object) -> str:
    """A metric for the evaluate table: floats with 4 decimals, integers as they are, nothing for None."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Measure a checkpoint: test accuracy for the classifier, FID/KID/precision/recall for a generator."""
    from prodlab import metrics

    args.n = args.n or (1000 if args.model == "edit" else 10_000)
    if args.model == "search":
        return cmd_evaluate_search(args)
    if args.model == "edit":
        return cmd_evaluate_edit(args)

    start = time.perf_counter()
    result = metrics.evaluate(args.model, n=args.n, seed=args.seed, directory=args.checkpoint_dir)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model}: measured now ({result['seconds']:.1f} s)")
    recorded = checkpoints.read_meta(args.model, args.checkpoint_dir).get("metrics", {})
    print(f"  {'metric':26s} {'value':>10s} {'in checkpoint':>14s}")
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and key != "seconds":
            print(f"  {key:26s} {_number(value):>10s} {_number(recorded.get(key)):>14s}")
        elif isinstance(value, dict):
            print(f"  {key}:")
            for sub, v in value.items():
                print(f"    {sub:24s} {v:10.4f}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Find the catalogue products that look most like an image file (notebook 06, §2.4 item 3)."""
    from prodlab import imageio, search

    x = imageio.to_product_image(args.image)
    emb, index = search.catalogue_index(args.embedding, args.checkpoint_dir)
    scores, ids = search.query(emb, index, x, args.k)
    hits = [{"id": i, "label": int(index.labels[i]), "class": data.CLASS_NAMES[index.labels[i]], "score": round(s, 4)}
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)]
    if args.grid:
        from prodlab import figures

        fig = figures.retrieval_figure(emb, index, x, None, [f"query\n{args.image.name[:14]}"],
                                       f"Top {args.k} of {len(index):,} catalogue products ({emb.name})", k=args.k)
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.grid, facecolor="white")
    if args.json:
        print(json.dumps(hits))
        return 0
    print(f"Top {args.k} of {len(index):,} catalogue products for {args.image} ({emb.name} embedding):")
    for rank, hit in enumerate(hits, 1):
        print(f"  {rank:3d}. id {hit['id']:5d}  {hit['class']:12s} score {hit['score']:.4f}")
    return 0


def cmd_evaluate_edit(args: argparse.Namespace) -> int:
    """``evaluate edit``: the enhancement and restoration tables of notebook 05 on the first --n test images."""
    from prodlab import edit

    start = time.perf_counter()
    result = edit.evaluate_editing(args.n, args.seed)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result) if args.json else edit.format_table(result))
    return 0


def cmd_evaluate_search(args: argparse.Namespace) -> int:
    """``evaluate search``: the search benchmark of notebook 06 (every embedding, --n test queries)."""
    from prodlab import search

    results = search.benchmark(args.n, directory=args.checkpoint_dir)
    for result in results.values():
        result.pop("precision_curve", None)
    print(json.dumps(results) if args.json else search.format_table(results))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench gan``: training throughput and time-to-FID of GAN recipes at equal budgets (notebook 02)."""
    from prodlab import train

    out = args.out or (config.RUNS_DIR / "bench_gan_quick.json" if config.quick() else train.BENCH_GAN_FILE)
    result = train.bench_gan(seed=args.seed, out_path=out)
    print(json.dumps(result, indent=2))
    print(f"Wrote {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m prodlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="find, verify and cache Fashion-MNIST")
    p.add_argument("--no-download", action="store_true", help="do not try torchvision's download")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("figures", help="reproduce the figure catalogue")
    p.add_argument("--out", type=Path, default=config.FIGURES_DIR, help="output folder (default: figures/)")
    p.add_argument("--only", help="render only this figure id")
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    p.add_argument("--gallery", action="store_true",
                   help="also refresh the README's gallery (docs/gallery/, small copies of a few figures)")
    p.set_defaults(func=cmd_figures)

    models = ", ".join(checkpoints.MODELS)
    ckpt_help = "checkpoint folder (default: data/checkpoints/)"
    p = sub.add_parser("train", help="train a model and write its checkpoint")
    p.add_argument("model", help=f"registered model ({models})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from runs/MODEL/ (last epoch)")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="draw samples of a generative model into an .npz file")
    p.add_argument("model", help="registered generative model")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, required=True, help="output .npz (arrays: images, and labels if conditional)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="measure a checkpoint (accuracy, or FID/KID/precision/recall)")
    p.add_argument("model", help=f"registered model ({models})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--n", type=int, default=None,
                   help="samples drawn from a generator, or test queries for 'search' (default 10,000); test images "
                        "for 'edit' (default 1,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("search", help="find the catalogue products that look like an image file")
    p.add_argument("image", type=Path, help="any image file PIL can read (photo, PNG with transparency, ...)")
    p.add_argument("--k", type=int, default=8, help="number of results (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, label, class, score}")
    p.add_argument("--grid", type=Path, help="also save the query and its results as a PNG")
    p.add_argument("--embedding", default="classifier", help="pixels, pca, vae, dcgan or classifier (default)")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("bench", help="benchmark training: throughput and time-to-FID of GAN recipes")
    p.add_argument("target", choices=["gan"], help="what to benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="output JSON (default: data/checkpoints/bench_gan.json; quick mode: runs/bench_gan_quick.json)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (data.DataError, checkpoints.CheckpointError, runs.RunError, KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
