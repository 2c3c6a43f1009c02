"""Command line: ``python -m prodlab COMMAND`` or ``prodlab COMMAND`` (``--help`` lists the commands).

Exit status: 0 done; 1 the user's input was refused (missing data, a bad file, an unknown name or recipe key),
with one line saying why and what to do, never a traceback; 2 a usage error (argparse); 130 interrupted (Ctrl-C),
with the command that resumes a training run.
"""

from __future__ import annotations

import os

# Threads that wait for work sleep instead of spinning: on a shared 2-core machine a spinning OpenMP thread
# that competes with another process for a core makes training several times slower. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import prodlab  # noqa: E402

# Every import here is cheap next to torch's (torchvision and torchmetrics are imported where they are used; search
# with FAISS takes under 0.1 s and the parser needs its options); edit, which loads torchmetrics, is imported by
# the one command that uses it.
from prodlab import checkpoints, config, data, distributed, imageio, ruler, runs, search  # noqa: E402
from prodlab.training import gan_measure, registry  # noqa: E402


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


def cmd_train(args: argparse.Namespace) -> int:
    """Train a registered model with its recipe (and ``--set`` overrides) and write its checkpoint.

    Under torchrun every process runs this as one rank of a data-parallel run (``prodlab.distributed``; each
    training loop joins the ranks); rank 0 alone prints and writes the checkpoint."""
    recipe = registry.resolve(args.model, args.set)
    command = f"{distributed.command_prefix()} {shlex.join(args.argv)}"
    shipped = recipe == registry.entry(args.model).recipe
    with distributed.quiet_unless_main():
        print(f"Training {args.model} (seed {args.seed}, quick mode {'on' if config.quick() else 'off'}, "
              f"{'the shipped recipe' if shipped else 'recipe ' + registry.run_name(args.model, recipe)}, "
              f"on {config.use_device(args.device)}, {distributed.processes()} process(es))")
        try:
            metrics, meta_path = registry.train_and_save(args.model, recipe, args.seed, command,
                                                         args.checkpoint_dir, resume=args.resume)
        except runs.Interrupted as err:
            again = command if args.resume else f"{command} --resume"
            print(f"{err}; continue with: {again}", file=sys.stderr)
            return 130
    if meta_path is None:  # not rank 0: rank 0 wrote the checkpoint
        return 0
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    print(f"Wrote {meta_path.with_suffix('.safetensors')} and {meta_path} ({meta['train_seconds']:.0f} s)")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key}: {value:.4f}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """Print the named recipes (or one of them) with every field's default value."""
    names = [args.name] if args.name else list(registry.ENTRIES)
    for name in names:
        e = registry.entry(name)
        print(f"{name}: {e.description}")
        for label, recipe in (("shipped", e.recipe), ("quick", e.quick), ("baseline", e.baseline)):
            if recipe is not None:
                fields = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(recipe).items())
                print(f"  {label:8s} {type(recipe).__name__}({fields})")
    if args.name:
        print(f"Override any field with --set KEY=VALUE, e.g. python -m prodlab train {args.name} --set epochs=1")
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

    args.n = args.n or (1000 if args.model == "edit" else 10_000)
    if args.model == "search":
        return cmd_evaluate_search(args)
    if args.model == "edit":
        return cmd_evaluate_edit(args)

    start = time.perf_counter()
    result = ruler.evaluate(args.model, n=args.n, seed=args.seed, directory=args.checkpoint_dir)
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

    x = imageio.to_product_image(args.image)
    emb, index = search.catalogue_index(args.embedding, args.checkpoint_dir, kind=args.index)
    scores, ids = search.query(emb, index, x, args.k)
    hits = [{"id": i, "label": int(index.labels[i]), "class": data.CLASS_NAMES[index.labels[i]], "score": round(s, 4)}
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)]
    if args.grid:
        # Imported here, not at the top: only --grid draws (matplotlib and the chapters are slow to import).
        from prodlab.chapters import ch06_search

        fig = ch06_search.retrieval_figure(emb, index, x, None, [f"query\n{args.image.name[:14]}"],
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
    # Imported here, not at the top: prodlab.edit loads torchmetrics (SSIM), seconds that no other command needs.
    from prodlab import edit

    start = time.perf_counter()
    result = edit.evaluate_editing(args.n, args.seed)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result) if args.json else edit.format_table(result))
    return 0


def cmd_evaluate_search(args: argparse.Namespace) -> int:
    """``evaluate search``: the search benchmark of notebook 06 (every embedding, --n test queries)."""
    results = search.benchmark(args.n, directory=args.checkpoint_dir)
    for result in results.values():
        result.pop("precision_curve", None)
    print(json.dumps(results) if args.json else search.format_table(results))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench gan``: training throughput and time-to-FID of GAN recipes at equal budgets (notebook 02);
    ``bench diffusion``: the shipped diffusion model's FID and time per image against sampler steps (notebook 08);
    ``bench search``: exact against approximate search at scale (notebook 06)."""
    if args.target == "search":
        return search.cli.run_bench(args)
    if args.target == "diffusion":
        from prodlab.training import diffusion_measure  # only this command needs it (it samples for minutes)

        n = args.n[0] if args.n else None
        result = diffusion_measure.write_bench(n, seed=args.seed, out=args.out)
        print(json.dumps(result, indent=2))
        return 0
    out = args.out or (config.RUNS_DIR / "bench_gan_quick.json" if config.quick() else gan_measure.BENCH_GAN_FILE)
    variants = registry.QUICK_BENCH_GAN_VARIANTS if config.quick() else registry.BENCH_GAN_VARIANTS
    result = gan_measure.bench_gan(variants, seed=args.seed, out_path=out)
    print(json.dumps(result, indent=2))
    print(f"Wrote {out}", file=sys.stderr)
    return 0


EXAMPLES = {
    "data": "python -m prodlab data",
    "figures": "python -m prodlab figures --only gan-samples",
    "train": "PRODLAB_QUICK=1 python -m prodlab train dcgan --set batch_size=32 --set epochs=1 --out runs/try",
    "recipes": "python -m prodlab recipes dcgan",
    "compute": "python -m prodlab compute vae-beta-sweep",
    "sample": "python -m prodlab sample cdcgan --n 16 --out samples.npz",
    "evaluate": "python -m prodlab evaluate vae --n 2000",
    "search": "python -m prodlab search photo.jpg --k 8 --grid results.png",
    "bench": "python -m prodlab bench search --n 1000000",
}


def _command(sub: argparse._SubParsersAction, name: str, help_text: str, func) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {EXAMPLES[name]}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # the example stays one line
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prodlab", description=__doc__.splitlines()[0],
        epilog="exit status: 0 ok, 1 the input was refused (one line says why), 2 usage, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"prodlab {prodlab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "data", "find, verify and cache Fashion-MNIST", cmd_data)
    p.add_argument("--no-download", action="store_true", help="do not try torchvision's download")

    p = _command(sub, "figures", "reproduce the figure catalogue", cmd_figures)
    p.add_argument("--out", type=Path, default=config.FIGURES_DIR, help="output folder (default: figures/)")
    p.add_argument("--only", help="render only this figure id")
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes drawing the figures (default: one per CPU, at most 4; 1 draws them here)")
    p.add_argument("--gallery", action="store_true",
                   help="also refresh the README's gallery (docs/gallery/, small copies of a few figures)")

    models = ", ".join(checkpoints.MODELS)
    ckpt_help = "checkpoint folder (default: data/checkpoints/)"
    p = _command(sub, "train", "train a model with its named recipe and write its checkpoint", cmd_train)
    p.add_argument("model", help=f"model with a recipe ({', '.join(registry.ENTRIES)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (repeatable); python -m prodlab recipes MODEL lists them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last complete epoch")
    p.add_argument("--device", choices=config.DEVICES, default=None,
                   help="where to train: auto (a GPU if there is one; the default, or $PRODLAB_DEVICE), cpu, cuda, mps")
    p.add_argument("--out", "--checkpoint-dir", dest="checkpoint_dir", type=Path, default=None,
                   help="where the checkpoint goes (default: data/checkpoints/ for the shipped recipe, else the "
                        "run folder runs/MODEL-...)")

    p = _command(sub, "recipes", "print the named training recipes and their default values", cmd_recipes)
    p.add_argument("name", nargs="?", help="one recipe (default: all)")

    p = _command(sub, "compute", "recompute a cached analysis (the beta sweep, ...); without NAME, list them",
                 cmd_compute)
    p.add_argument("name", nargs="?", help="the computation (default: list them)")

    p = _command(sub, "sample", "draw samples of a generative model into an .npz file", cmd_sample)
    p.add_argument("model", help="registered generative model")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", type=Path, required=True, help="output .npz (arrays: images, and labels if conditional)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)

    p = _command(sub, "evaluate", "measure a checkpoint (accuracy, or FID/KID/precision/recall)", cmd_evaluate)
    p.add_argument("model", help=f"registered model ({models}), or 'search', or 'edit'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--n", type=int, default=None,
                   help="samples drawn from a generator, or test queries for 'search' (default 10,000); test images "
                        "for 'edit' (default 1,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)

    p = _command(sub, "search", "find the catalogue products that look like an image file", cmd_search)
    p.add_argument("image", type=Path, help="any image file PIL can read (photo, PNG with transparency, ...)")
    p.add_argument("--k", type=int, default=8, help="number of results (default 8)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {id, label, class, score}")
    p.add_argument("--grid", type=Path, help="also save the query and its results as a PNG")
    p.add_argument("--embedding", default="classifier", help="pixels, pca, vae, dcgan or classifier (default)")
    p.add_argument("--checkpoint-dir", type=Path, default=None, help=ckpt_help)
    search.cli.add_search_index_argument(p)

    p = _command(sub, "bench", "benchmark GAN training (throughput, time-to-FID), diffusion sampler steps or "
                 "search at scale", cmd_bench)
    p.add_argument("target", choices=["gan", "diffusion", "search"], help="what to benchmark")
    search.cli.add_bench_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="output JSON (default: data/checkpoints/bench_gan.json, quick mode runs/bench_gan_quick.json; "
                        "diffusion: data/checkpoints/bench_diffusion.json, quick mode runs/; "
                        "search: data/checkpoints/bench_search.json, quick mode or --n: runs/)")
    return parser


USER_ERRORS = (data.DataError, checkpoints.CheckpointError, runs.RunError, KeyError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run one command; map the user's errors to one line and status 1, Ctrl-C to status 130."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as err:  # recipes.RecipeError, imageio.ImageError and ModelError are ValueErrors
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
