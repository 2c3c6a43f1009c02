"""``python -m prodlab report DIR``: notebook 09 run on a folder of product photos with papermill, written as the
executed notebook and an HTML copy (the whole pipeline on a shop's own catalogue: import, models, samples, measures,
edits, search).

papermill injects the parameters (``data_dir``, ``size``, ``quick``) after the notebook's cell tagged
``parameters`` and runs every cell; a cell that fails stops the run, the executed notebook up to that cell is kept,
and one line names the cell and the error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prodlab import config
from prodlab.cli.common import command

NOTEBOOK = config.REPO_ROOT / "notebooks" / "09_catalogue.ipynb"
SIZES = (16, 256)  # the smallest and largest side a report trains at (prodlab.datasets.folder.MAX_SIZE)


def cmd_report(args: argparse.Namespace) -> int:
    """Run notebook 09 on a folder; write NAME.ipynb and NAME.html."""
    if not args.folder.is_dir():
        raise ValueError(f"{args.folder}: not a folder of photos (give the folder that holds them, one subfolder "
                         "per class or a labels.csv)")
    if not SIZES[0] <= args.size <= SIZES[1]:
        raise ValueError(f"--size must be between {SIZES[0]} and {SIZES[1]} pixels, not {args.size}")
    from prodlab.chapters.ch09_catalogue import catalogue_name  # PyTorch: only a report needs it

    name = catalogue_name(args.folder)
    out = args.out or config.RUNS_DIR / "reports" / name
    out.mkdir(parents=True, exist_ok=True)
    executed, html = out / f"{name}.ipynb", out / f"{name}.html"
    params = {"data_dir": str(args.folder.resolve()), "size": args.size, "quick": args.quick}
    print(f"Running {NOTEBOOK.name} on {args.folder} as catalogue {name!r} "
          f"({'quick' if args.quick else 'full'} budgets); the notebook goes to {executed}")
    _execute(executed, params)
    _to_html(executed, html)
    print(f"Wrote {executed} and {html}")
    return 0


def _execute(executed: Path, params: dict) -> None:
    """papermill on notebook 09; a failing cell becomes one line (the partial notebook stays at ``executed``)."""
    import papermill  # jupyter's kernels and papermill: only a report needs them

    try:
        papermill.execute_notebook(str(NOTEBOOK), str(executed), parameters=params, kernel_name="python3",
                                   cwd=str(NOTEBOOK.parent), progress_bar=False)
    except papermill.PapermillExecutionError as err:
        raise ValueError(f"the notebook stopped at cell {err.exec_count} with {err.ename}: {err.evalue} "
                         f"(the notebook up to there: {executed})") from None


def _to_html(executed: Path, html: Path) -> None:
    """The executed notebook as one HTML page (images inline)."""
    import nbformat  # nbconvert: only a report needs it
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html.write_text(body, encoding="utf-8")


def add(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "report", "run notebook 09 on a folder of product photos: the executed notebook and an HTML copy",
                cmd_report, "python -m prodlab report ~/shop-photos --quick")
    p.add_argument("folder", type=Path, metavar="DIR",
                   help="the photos: one subfolder per class (or a labels.csv of file,class); unusable files are "
                        "skipped and listed")
    p.add_argument("--size", type=int, default=32, metavar="N",
                   help="side of the square RGB images the catalogue keeps and the models train at (default 32)")
    p.add_argument("--quick", action="store_true",
                   help="quick budgets (one short epoch per model): minutes, for a first look")
    p.add_argument("--out", type=Path, default=None, metavar="FOLDER",
                   help="where NAME.ipynb and NAME.html go (default: runs/reports/NAME/)")
