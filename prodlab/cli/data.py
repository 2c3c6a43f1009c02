"""``python -m prodlab data``: find, verify and cache Fashion-MNIST; ``data colour``: build the colour catalogue from
it; ``data import``: a folder of your own images as a catalogue; ``data list``: the data sets there are."""

from __future__ import annotations

import argparse
from pathlib import Path

from prodlab import data, datasets
from prodlab.cli.common import command
from prodlab.datasets import colour, fashion_mnist, folder, store


def cmd_check(args: argparse.Namespace) -> int:
    """Find, stage and verify Fashion-MNIST; report where it came from."""
    report = fashion_mnist.check(download=not args.no_download)
    print(f"Fashion-MNIST found: {report.source}")
    print(f"  staged in {report.raw_dir}; SHA-256 of all four files verified")
    print(f"  cache: {report.cache}")
    for split in datasets.SPLITS:
        images, labels = data.load(split)
        present = labels.unique().numel()
        print(f"  {split}: {len(images):,} images of {data.spec().describe()}; labels seen: {present}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import an image folder as a catalogue (converted, split, verified, cached)."""
    report = folder.import_folder(args.folder, args.name, size=args.size, seed=args.seed,
                                  test_fraction=args.test_fraction, progress=True)
    datasets.forget()
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}")
    counts = ", ".join(f"{split} {n:,}" for split, n in report.counts.items())
    print(f"Imported {args.folder} as {report.name!r}: {report.spec.describe()} ({counts}; "
          f"{len(report.skipped)} file(s) skipped) in {report.seconds:.1f} s -> {report.path}")
    print(f"  classes: {', '.join(report.spec.class_names)}")
    print(f"  next: python -m prodlab train classifier --data {report.name}")
    return 0


def cmd_colour(args: argparse.Namespace) -> int:
    """Build (or verify, when it is current) the colour catalogue made from Fashion-MNIST."""
    report = colour.build(force=args.rebuild)
    datasets.forget()
    counts = ", ".join(f"{split} {n:,}" for split, n in report.counts.items())
    verb = "built" if report.built else "verified (current: --rebuild makes it again)"
    print(f"Colour catalogue {colour.NAME!r} {verb}: {report.spec.describe()} ({counts}) in {report.seconds:.1f} s "
          f"-> {report.path}")
    for name, values in report.spec.attributes:
        print(f"  {name}: {', '.join(values)}")
    print(f"  next: python -m prodlab train classifier --data {colour.NAME}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """The data sets there are: the built-in one and every stored catalogue."""
    print(f"{datasets.DEFAULT:24s} {fashion_mnist.SPEC.describe():40s} built in (python -m prodlab data)")
    if colour.NAME not in {info.name for info in store.list_catalogues()}:
        print(f"{colour.NAME:24s} {'not built yet':40s} made from Fashion-MNIST on first use, or by "
              "python -m prodlab data colour")
    for info in store.list_catalogues():
        if info.problem is not None:
            print(f"{info.name:24s} {'unreadable':40s} {info.problem}")
            continue
        counts = ", ".join(f"{split} {n:,}" for split, n in info.counts.items())
        print(f"{info.name:24s} {info.spec.describe():40s} {counts}; from {info.source}")
    return 0


def dispatch(args: argparse.Namespace) -> int:
    return {"colour": cmd_colour, "import": cmd_import, "list": cmd_list}.get(args.action, cmd_check)(args)


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "data", "find, verify and cache Fashion-MNIST; import and list your own catalogues", dispatch,
                "python -m prodlab data import ~/shop-photos --name shop --size 32")
    p.add_argument("--no-download", action="store_true", help="do not try torchvision's download")
    actions = p.add_subparsers(dest="action", required=False, metavar="{colour,import,list}")
    c = actions.add_parser("colour", help="build the colour catalogue (Fashion-MNIST coloured and patterned)",
                           description="Build the colour catalogue: every Fashion-MNIST product at 32 x 32 RGB with "
                                       "a named colour and a pattern (deterministic, offline; seconds).")
    c.add_argument("--rebuild", action="store_true", help="build it again even when the stored one is current")
    q = actions.add_parser("import", help="import an image folder (one subfolder per class, or labels.csv)",
                           description="Import an image folder as a catalogue: one subfolder per class (like "
                                       "torchvision's ImageFolder), or a flat folder with labels.csv (file,class).")
    q.add_argument("folder", type=Path, help="the folder of images")
    q.add_argument("--name", required=True, help="the catalogue's name (letters, digits, - and _)")
    q.add_argument("--size", type=int, default=32, help="side of the square RGB images (default 32)")
    q.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default 0)")
    q.add_argument("--test-fraction", type=float, default=0.2, help="share of each class kept for testing")
    actions.add_parser("list", help="list the data sets there are")
