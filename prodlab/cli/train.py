"""``python -m prodlab train MODEL``: train a registered model with its named recipe; ``recipes``: print them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from prodlab import config, datasets, distributed, runs
from prodlab.cli.common import add_device, command
from prodlab.training import registry


def cmd_train(args: argparse.Namespace) -> int:
    """Train a registered model with its recipe (and ``--set`` overrides) and write its checkpoint.

    Under torchrun every process runs this as one rank of a data-parallel run (``prodlab.distributed``; the
    training loop joins the ranks); rank 0 alone prints and writes the checkpoint."""
    recipe = registry.resolve(args.model, args.set)
    dataset = args.data or registry.entry(args.model).dataset
    datasets.spec(dataset)  # an unknown or broken data set says so before anything starts
    command_line = f"{distributed.command_prefix()} {shlex.join(args.argv)}"
    shipped = recipe == registry.entry(args.model).recipe
    device = config.use_device(args.device)
    with distributed.quiet_unless_main():
        print(f"Training {args.model} on {dataset} (seed {args.seed}, quick mode {'on' if config.quick() else 'off'}, "
              f"{'the shipped recipe' if shipped else 'recipe ' + registry.run_name(args.model, recipe)}, "
              f"on {device}, {args.threads or 'all'} thread(s), {distributed.processes()} process(es))")
        try:
            metrics, meta_path = registry.train_and_save(args.model, recipe, args.seed, command_line,
                                                         args.checkpoint_dir, resume=args.resume, dataset=dataset,
                                                         device=device, threads=args.threads)
        except runs.Interrupted as err:
            again = command_line if args.resume else f"{command_line} --resume"
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


def _threads(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"threads must be at least 1, not {value}")
    return value


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "train", "train a model with its named recipe and write its checkpoint", cmd_train,
                "PRODLAB_QUICK=1 python -m prodlab train dcgan --data shop --set epochs=1 --out runs/try")
    p.add_argument("model", help=f"model with a recipe ({', '.join(registry.ENTRIES)})")
    p.add_argument("--data", default=None, metavar="NAME",
                   help="the data set to train on (default: the model's own, Fashion-MNIST); "
                        "python -m prodlab data list shows them")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (repeatable); python -m prodlab recipes MODEL lists them")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last complete epoch")
    add_device(p, "train")
    p.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="CPU threads (default: all cores; 1 for exact timing comparisons)")
    p.add_argument("--out", "--checkpoint-dir", dest="checkpoint_dir", type=Path, default=None,
                   help="where the checkpoint goes (default: data/checkpoints/ for the shipped recipe, else the "
                        "run folder runs/[DATASET/]MODEL-...)")
    p = command(sub, "recipes", "print the named training recipes and their default values", cmd_recipes,
                "python -m prodlab recipes dcgan")
    p.add_argument("name", nargs="?", help="one recipe (default: all)")
