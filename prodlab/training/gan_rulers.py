"""Chapter 02's GAN rankings read by both rulers (issue 27): ``python -m prodlab bench gan-rulers``.

The ablation table of chapter 02 (``gan_measure.gan_ablation``: the rows of ``dcgan.json``, ``cdcgan.json`` and
``bench_gan.json``) ranks recipes by FID in the classifier's feature space alone, and only the shipped generators'
weights are kept. This bench trains every run of that table again, from its recorded recipe, config and seed, on
this machine, and measures every generator of each run (raw G, EMA with stale and with recomputed BN statistics)
on 10,000 samples in both rulers' spaces with bootstrap intervals (``ruler.sample_report``). Its classifier-space FIDs
are not the recorded ones: the same recipe on another CPU trains other weights (floating point differs across CPU
generations, field notes), so each row also keeps the recorded FID to compare. Within the bench every generator is
trained and measured on one machine: the rankings compare like with like. The runs are independent and run in
worker processes, one thread each.

Chapter 02 (notebooks/02_gan.ipynb).
"""

from __future__ import annotations

import dataclasses
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from prodlab import bootstrap, checkpoints, config, data, files, recipes, ruler, runs
from prodlab.models.gan import GANConfig
from prodlab.training.gan import GANRecipe, train_gan
from prodlab.training.gan_measure import ablation_rows, ema_variants, gan_ablation

BENCH_FILE = config.CHECKPOINT_DIR / "bench_gan_rulers.json"  # what the bench writes (full mode)
QUICK_LIMIT = 512  # quick mode: training images per run (one epoch), to test the bench in seconds


def planned_runs() -> list[dict[str, Any]]:
    """The distinct training runs behind chapter 02's ablation rows: model, recipe and config fields, the label
    and the recorded classifier-space FID of each of its generators."""
    out: dict[str, dict[str, Any]] = {}
    for row in gan_ablation():
        key = f"{row['model']} {row['recipe']} {row['config']}"
        run = out.setdefault(key, {"model": row["model"], "recipe": row["recipe"], "config": row["config"],
                                   "recorded_fid": {}})
        run["recorded_fid"][row["variant"]] = row["fid"]
    return list(out.values())


def gan_config(fields: dict[str, Any]) -> GANConfig:
    """A recorded config (this format's, or format 2's with a class count) for Fashion-MNIST."""
    return GANConfig(data.spec(), **checkpoints.conditional_fields(fields))


def measure_run(plan: dict[str, Any], n: int, seed: int = 0, replicates: int = bootstrap.REPLICATES
                ) -> list[dict[str, Any]]:
    """Train one planned run from scratch (one thread; quick mode: one epoch on ``QUICK_LIMIT`` images) and
    measure each of its generators in both spaces with intervals of ``replicates`` resamples: its ablation rows,
    with the recorded recipe (what the rows are found by, also in quick mode) and ``recorded_fid``."""
    torch.set_num_threads(1)
    recipe = recipes.from_json(GANRecipe, plan["recipe"])
    if config.quick():
        recipe = dataclasses.replace(recipe, epochs=1, train_limit=QUICK_LIMIT)
    cfg = gan_config(plan["config"])
    with tempfile.TemporaryDirectory() as tmp:
        result = train_gan(cfg, recipe, runs.Run("bench", Path(tmp)), seed, progress=False, threads=1)
    first, second = ruler.load(), ruler.load_second()
    reports = {key: ruler.sample_report(plan["model"], g, n, seed, first, replicates=replicates, second=second)
               for key, g in ema_variants(result).items()}
    rows = ablation_rows(plan["model"], result, recipe, reports, n)
    return [{**row, "recipe": plan["recipe"], "recorded_fid": plan["recorded_fid"].get(row["variant"]),
             "intervals": reports[row["variant"]]["intervals"], "second_ruler": reports[row["variant"]]["second_ruler"]}
            for row in rows]


def bench_gan_rulers(n: int = 10_000, seed: int = 0, jobs: int = 2, out_path: Path | None = None) -> dict[str, Any]:
    """Every run of :func:`planned_runs` trained again and measured (:func:`measure_run`) in ``jobs`` worker
    processes; the rows in the table's order (quick mode: 20 resamples per interval, not 200). Written to ``out_path``
    as JSON when given. Chapter 02."""
    plans, replicates = planned_runs(), config.budget(bootstrap.REPLICATES, 20)
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = [row for rows in pool.map(measure_run, plans, [n] * len(plans), [seed] * len(plans),
                                         [replicates] * len(plans)) for row in rows]
    out = {"command": "python -m prodlab bench gan-rulers", "seed": seed, "n": n, "quick_mode": config.quick(),
           "replicates": replicates, "second_ruler": ruler.second_name(data.DEFAULT),
           "machine": checkpoints.machine(), "rows": rows}
    if out_path is not None:
        files.write_json(Path(out_path), out)
    return out


def pick(rows: list[dict[str, Any]], model: str, variant: str, **recipe: Any) -> dict[str, Any]:
    """The one row of ``model``'s generator ``variant`` ("raw", "ema", "ema_stale_bn") trained with the recipe
    fields given (e.g. ``batch_size=16``); ``KeyError`` when none or several match. Chapter 02."""
    found = [r for r in rows if r["model"] == model and r["variant"] == variant
             and all(r["recipe"][k] == v for k, v in recipe.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} rows of {model} {variant} {recipe}")
    return found[0]


def holds(better: dict[str, Any], worse: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per space (classifier, encoder): both FIDs, whether ``better`` has the lower one and whether their intervals
    are apart. Chapter 02's verdict on each ranking it states."""
    spaces = {"classifier": (better, worse), "encoder": (better["second_ruler"], worse["second_ruler"])}
    return {space: {"fid": [a["fid"], b["fid"]], "lower": a["fid"] < b["fid"],
                    "separated": bootstrap.separated(a["intervals"]["fid"], b["intervals"]["fid"])}
            for space, (a, b) in spaces.items()}


def verdict_markdown(claims: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    """Chapter 02's rankings as a Markdown table: each claim (better row over worse row) with both FIDs in each
    space, whether it holds there (lower FID) and whether the intervals are apart, and the FIDs recorded by the
    shipped runs. Chapter 02."""
    lines = ["| ranking | recorded FID | FID, classifier | holds, apart | FID, encoder | holds, apart |",
             "|---|---|---|---|---|---|"]
    for claim, better, worse in claims:
        v = holds(better, worse)
        cells = [f"{better['recorded_fid']:.2f} < {worse['recorded_fid']:.2f}"]
        for space, digits in (("classifier", 2), ("encoder", 3)):
            a, b = v[space]["fid"]
            cells += [f"{a:.{digits}f} vs {b:.{digits}f}",
                      f"{'yes' if v[space]['lower'] else 'no'}, {'yes' if v[space]['separated'] else 'no'}"]
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
