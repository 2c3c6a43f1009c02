"""Command line: ``python -m prodlab COMMAND`` (``--help`` lists the commands).

Every command turns a ``prodlab`` error about the user's input (missing data, a bad file, an unknown
name) into one clear message and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prodlab import config, data


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
    p.set_defaults(func=cmd_figures)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (data.DataError, KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
