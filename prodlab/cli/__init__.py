"""Command line: ``python -m prodlab COMMAND`` or ``prodlab COMMAND`` (``--help`` lists the commands).

One module per command group, each owning its options and handlers: :mod:`~prodlab.cli.data` (data sets),
:mod:`~prodlab.cli.train` (train, recipes), :mod:`~prodlab.cli.models` (sample, evaluate),
:mod:`~prodlab.cli.search` (search), :mod:`~prodlab.cli.edit` (edit: inpaint, denoise, recolour or re-pattern
a photo), :mod:`~prodlab.cli.report` (notebook 09 on a folder), :mod:`~prodlab.cli.bench` (measurements of tasks
and throughput), :mod:`~prodlab.cli.figures` (figures, compute).

Exit status: 0 done; 1 the user's input was refused (missing data, a bad file, an unknown name or recipe key, a
request too large for this machine), with one line saying why and what to do, never a traceback; 2 a usage error
(argparse); 130 interrupted (Ctrl-C), with the command that resumes a training run.
"""

from __future__ import annotations

import argparse
import sys

import prodlab
from prodlab import checkpoints, runs
from prodlab.cli import bench, data, edit, figures, models, report, search, train
from prodlab.datasets.fashion_mnist import DataError

GROUPS = (data, figures, train, models, search, edit, report, bench)
USER_ERRORS = (DataError, checkpoints.CheckpointError, runs.RunError, KeyError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every group adds its commands."""
    parser = argparse.ArgumentParser(
        prog="python -m prodlab", description=__doc__.splitlines()[0],
        epilog="exit status: 0 ok, 1 the input was refused (one line says why), 2 usage, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"prodlab {prodlab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add(sub)
    return parser


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
    except USER_ERRORS as err:  # RecipeError, ImageError, ModelError, TooLarge are ValueErrors
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1
