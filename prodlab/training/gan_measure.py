"""Measuring GAN runs with the ruler: which generator of a run to ship, the ablation rows, the time-to-FID bench.

Chapter 02 reads these rows. Every row carries the recipe's fields (``recipe``) and the model's config
(``config``), so a table or a test picks rows by what was trained, never by display text; ``label`` is for reading.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from prodlab import checkpoints, config, data, datasets, files, metrics, ruler, runs
from prodlab.models import gan as gan_models
from prodlab.models.gan import GANConfig
from prodlab.training.base import Context, Trained
from prodlab.training.gan import GANRecipe, GANRun, train_gan, with_generator

VARIANT_LABELS = {"raw": "", "ema_stale_bn": " + EMA of G, BN statistics of G (not recomputed)",
                  "ema": " + EMA of G, BN statistics recomputed"}
BENCH_GAN_FILE = config.CHECKPOINT_DIR / "bench_gan.json"  # what ``python -m prodlab bench gan`` writes (full mode)


def summarise_history(history: list[dict[str, float]], window: int = 50) -> list[dict[str, float]]:
    """Means of the per-step history over windows of ``window`` steps (for a checkpoint's JSON and its plots).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    rows = []
    for start in range(0, len(history), window):
        chunk = history[start : start + window]
        means = {k: round(sum(r[k] for r in chunk) / len(chunk), 4) for k in ("loss_d", "loss_g", "d_real", "d_fake")}
        rows.append({"step": chunk[-1]["step"], "cpu_seconds": round(chunk[-1]["cpu_seconds"], 1), **means})
    return rows


def encode_snapshots(snapshots: dict[int, torch.Tensor]) -> dict[str, Any]:
    """Fixed-noise snapshots as JSON: steps and, per step, the uint8 pixels in base64 (about 1 kB per image).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    return {"steps": list(snapshots), "shape": list(next(iter(snapshots.values())).shape),
            "images_base64": [base64.b64encode(v.numpy().tobytes()).decode("ascii") for v in snapshots.values()]}


def decode_snapshots(encoded: dict[str, Any]) -> dict[int, torch.Tensor]:
    """The inverse of :func:`encode_snapshots`: step -> uint8 images N x H x W x C.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    shape = tuple(encoded["shape"])
    return {step: torch.frombuffer(bytearray(base64.b64decode(b64)), dtype=torch.uint8).reshape(shape)
            for step, b64 in zip(encoded["steps"], encoded["images_base64"], strict=True)}


def gan_report(name: str, gan: gan_models.GAN, n: int, seed: int = 0,
               dataset: str = datasets.DEFAULT) -> dict[str, Any]:
    """The ruler's metrics of ``n`` samples of ``gan``, drawn as ``python -m prodlab evaluate NAME`` draws them;
    for a GAN conditioned on attributes also ``attribute_fidelity_NAME`` per attribute (the share of samples whose
    attribute the ruler's head reads as the one asked for), when the ruler has those heads.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    return ruler.sample_report(name, gan, n, seed, ruler.load(dataset=dataset))


def unmeasured(cfg: GANConfig, dataset: str) -> list[str]:
    """The metrics :func:`gan_report` cannot give for a GAN of ``cfg`` on ``dataset`` now: all of them without a
    ruler, the attribute fidelities with a ruler that has no heads for the GAN's attributes; empty otherwise.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    attributes = [f"attribute_fidelity_{a}" for a in cfg.condition_names[1:]]
    if ruler.find(dataset) is None:
        return ["fid", "kid", "precision", "recall", "coverage_tv", "classes_covered",
                *(["class_fidelity"] if cfg.conditional else []), *attributes]
    return attributes if attributes and ruler.load(dataset=dataset).image.attributes != cfg.image.attributes else []


def quick_fid(name: str, gan: gan_models.GAN, n: int, seed: int = 0) -> float:
    """FID alone (no KID, precision or recall) of ``n`` samples against the test set: the cheap progress check.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    r = ruler.load()
    return metrics.fid(r.reference("test"), r.features(checkpoints.generate(name, n, seed, model=gan)[0]))


def ema_variants(result: GANRun) -> dict[str, gan_models.GAN]:
    """The generators one run yields at the same CPU time (the EMA only watches training).

    ``"raw"``: the trained G, i.e. the recipe without EMA; with EMA also ``"ema_stale_bn"``: the averaged weights
    with the BN statistics of the raw G (the trap: statistics of other weights) and ``"ema"``: the averaged weights
    with recomputed statistics.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    variants = {"raw": result.gan}
    if result.ema is not None:
        stale = with_generator(result.gan, result.ema)
        raw_buffers = dict(result.gan.generator.named_buffers())
        for key, buffer in stale.generator.named_buffers():
            buffer.copy_(raw_buffers[key])
        variants.update(ema_stale_bn=stale, ema=result.shipped())
    return variants


def choose_shipped(reports: dict[str, dict[str, Any]]) -> str:
    """The variant to ship: the raw G or the EMA (statistics recomputed), whichever has the lower FID.

    An improvement is kept only if it measured better; the stale-statistics EMA is a lesson, never shipped.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    return min((k for k in ("raw", "ema") if k in reports), key=lambda k: reports[k]["fid"])


def describe_recipe(recipe: GANRecipe, cfg: gan_models.GANConfig) -> str:
    """A short label of a recipe for reading a table (rows are identified by their ``recipe`` fields, not this).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    loss = {"bce": "BCE + non-saturating L_G", "bce-saturating": "BCE + saturating L_G", "hinge": "hinge",
            "lsgan": "least squares"}
    lr = f"lr {recipe.lr_g:g}" if recipe.lr_g == recipe.lr_d else f"TTUR lr G {recipe.lr_g:g} / D {recipe.lr_d:g}"
    batch = [] if recipe.batch_size == 64 else [f"batch {recipe.batch_size}"]
    return ", ".join([loss[recipe.loss], lr, *batch, *(["spectral norm in D"] if cfg.spectral_norm else [])])


def ablation_rows(name: str, result: GANRun, recipe: GANRecipe, reports: dict[str, dict[str, Any]],
                  n: int) -> list[dict[str, Any]]:
    """One row per generator of the run (:func:`ema_variants`): its recipe's fields, CPU minutes, the metrics.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    cfg = result.gan.cfg
    return [{"label": describe_recipe(recipe, cfg) + VARIANT_LABELS[key], "variant": key, "model": name,
             "recipe": dataclasses.asdict(recipe), "config": dataclasses.asdict(cfg),
             "cpu_minutes": round(result.cpu_seconds / 60.0, 1), "steps": int(result.history[-1]["step"]), "n": n,
             **{k: m[k] for k in ("fid", "kid", "precision", "recall", "coverage_tv", "classes_covered")},
             "class_fidelity": m.get("class_fidelity"),
             **{k: v for k, v in m.items() if k.startswith("attribute_fidelity_")}} for key, m in reports.items()]


@dataclasses.dataclass
class MeasuredRun:
    """A trained run, its generators and their reports, and its ablation rows.

    Chapter 02 (notebooks/02_gan.ipynb).
    """

    result: GANRun
    variants: dict[str, gan_models.GAN]
    reports: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]


def measured_run(ctx: Context, recipe: GANRecipe, run: runs.Run, n: int) -> MeasuredRun:
    """Train ``ctx.name`` with ``recipe`` and measure every generator of the run with ``n`` samples.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    result = train_gan(ctx.config, recipe, run, ctx.seed, ctx.progress, ctx.resume, ctx.device, ctx.dataset,
                       ctx.threads)
    variants = ema_variants(result)
    reports = {key: gan_report(ctx.name, gan, n, ctx.seed, ctx.dataset) for key, gan in variants.items()}
    return MeasuredRun(result, variants, reports, ablation_rows(ctx.name, result, recipe, reports, n))


def train_entry(recipe: GANRecipe, baseline: GANRecipe | None, ctx: Context) -> Trained:
    """``train dcgan|cdcgan|colour-cdcgan``: train and measure every generator of the run; ship the raw G or the
    EMA, whichever measured better. On a data set without a ruler nothing can be measured: the EMA (if any) is
    shipped unmeasured. What cannot be measured (:func:`unmeasured`) is said in one line before training and recorded
    as ``not_measured``.

    The baseline of the acceptance ratio is the article's recipe: a separate run of it when the entry has one
    (dcgan, whose recipe changes training itself), else the raw G of this run (the EMA only watches training).

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    note = _not_measured(ctx)
    if ctx.measures and note:  # one line, before the minutes of training: what this run will not measure
        print(f"{ctx.name} on {ctx.dataset}: not measured: {note}")
    if ruler.find(ctx.dataset) is None or not ctx.measures:
        result = train_gan(ctx.config, recipe, ctx.run, ctx.seed, ctx.progress, ctx.resume, ctx.device, ctx.dataset,
                           ctx.threads)
        return Trained(result.shipped(), {}, {"not_measured": note or f"no ruler for data set {ctx.dataset!r}",
                                              "history": summarise_history(result.history),
                                              "snapshots": encode_snapshots(result.snapshots)})
    n = config.budget(10_000, 500)
    shipped = measured_run(ctx, recipe, ctx.run, n)
    best = choose_shipped(shipped.reports)
    raw_row = next(r for r in shipped.rows if r["variant"] == "raw")
    rows = shipped.rows
    if baseline is not None and ctx.with_baseline:
        base = measured_run(ctx, baseline, runs.Run(f"{ctx.run.name}-article", ctx.run.directory), n)
        reference = {**base.rows[0], "note": "the article's losses, batches of 64: a separate run, as many epochs"}
        rows = base.rows + rows
    else:
        reference = {**raw_row, "note": "the raw G of this same run (the EMA only watches training): same CPU time"}
    extra = {
        "train_steps": raw_row["steps"], "train_cpu_seconds_steps": round(shipped.result.cpu_seconds, 1),
        "shipped_variant": best, "baseline": reference, "ablation": rows,
        "acceptance": acceptance(shipped, best, reference),
        "history": summarise_history(shipped.result.history),
        "snapshots": encode_snapshots(shipped.result.snapshots),
        **({"not_measured": note} if note else {}),
    }
    return Trained(shipped.variants[best], shipped.reports[best], extra)


def _not_measured(ctx: Context) -> str:
    """What :func:`unmeasured` leaves out and why, with the command that trains the ruler; "" when nothing."""
    missing = unmeasured(ctx.config, ctx.dataset)
    if not missing:
        return ""
    heads = " with attribute heads" if ruler.find(ctx.dataset) else ""
    return (f"{', '.join(missing)} (no ruler{heads} for data set {ctx.dataset!r}: "
            f"python -m prodlab train classifier --data {ctx.dataset})")  # what ruler.find finds, in any mode


def acceptance(shipped: MeasuredRun, best: str, baseline: dict[str, Any]) -> dict[str, Any]:
    """The shipped generator's FID against the baseline's, with both CPU times (chapter 02's acceptance ratio)."""
    raw = next(r for r in shipped.rows if r["variant"] == "raw")
    ratio = shipped.reports[best]["fid"] / baseline["fid"]
    return {"fid": shipped.reports[best]["fid"], "cpu_minutes": raw["cpu_minutes"], "baseline_fid": baseline["fid"],
            "baseline_cpu_minutes": baseline["cpu_minutes"], "fid_ratio": round(ratio, 4),
            "fid_ratio_at_most_0.75": ratio <= 0.75}


def bench_gan(variants: dict[str, tuple[dict[str, Any], GANRecipe]], seed: int = 0, n_fid: int = 2000,
              n_final: int = 10_000, progress: bool = True, out_path: Path | None = None) -> dict[str, Any]:
    """Train each variant (its config fields for Fashion-MNIST, its recipe) from scratch one epoch at a time
    (``resume``), measuring FID after every epoch.

    Returns (and writes to ``out_path`` as JSON, if given) per variant the throughput (images per wall second and
    per CPU second) and the time-to-FID curve (raw G and EMA G, ``n_fid`` samples), and the ablation rows of every
    final generator (``n_final`` samples). Resuming epoch by epoch trains exactly what one uninterrupted run of the
    same recipe trains. Chapter 02 plots it.
    """
    out: dict[str, Any] = {"command": "python -m prodlab bench gan", "seed": seed, "quick_mode": config.quick(),
                           "n_fid": n_fid, "n_final": n_final,
                           "ruler_sha256": checkpoints.read_meta("classifier").get("weights_sha256"),
                           "machine": checkpoints.machine(), "variants": {}, "ablation": []}
    for key, (fields, recipe) in variants.items():
        cfg = GANConfig(data.spec(), **fields)
        name = "cdcgan" if cfg.conditional else "dcgan"
        run, curve, wall = runs.Run(f"bench-gan-{key}{'-quick' if config.quick() else ''}"), [], 0.0
        for epoch in range(recipe.epochs + 1):
            start = time.perf_counter()
            result = train_gan(cfg, dataclasses.replace(recipe, epochs=epoch), run, seed, progress, resume=epoch > 0)
            wall += time.perf_counter() - start
            fids = {k: quick_fid(name, g, n_fid, seed) for k, g in ema_variants(result).items() if k != "ema_stale_bn"}
            steps = int(result.history[-1]["step"]) if result.history else 0
            curve.append({"epoch": epoch, "steps": steps, "cpu_seconds": round(result.cpu_seconds, 1),
                          "wall_seconds": round(wall, 1), **{f"fid_{k}": round(v, 3) for k, v in fids.items()}})
            if progress:
                tqdm.write(f"bench {key}: {curve[-1]}")
        images = steps * recipe.batch_size
        out["variants"][key] = {
            "label": describe_recipe(recipe, cfg), "config": dataclasses.asdict(cfg),
            "recipe": dataclasses.asdict(recipe), "images_per_second": round(images / max(wall, 1e-9), 1),
            "images_per_cpu_second": round(images / max(result.cpu_seconds, 1e-9), 1), "time_to_fid": curve,
        }
        reports = {k: gan_report(name, g, n_final, seed) for k, g in ema_variants(result).items()}
        out["ablation"] += [{**row, "bench_variant": key}
                            for row in ablation_rows(name, result, recipe, reports, n_final)]
    if out_path is not None:
        files.write_json(Path(out_path), out)
    return out


def gan_ablation(names: tuple[str, ...] = ("dcgan", "cdcgan"), bench: Path | None = BENCH_GAN_FILE,
                 directory: Path | None = None) -> list[dict[str, Any]]:
    """The measured ablation rows: those of each shipped checkpoint's JSON (its own runs), then those of
    ``python -m prodlab bench gan`` (other recipes, equal budgets). Chapter 02's table.

    Rows of missing files are left out (a fresh clone before training has none); nothing is re-measured here.
    """
    rows = []
    for name in names:
        if checkpoints.exists(name, directory):
            meta = checkpoints.read_meta(name, directory)
            rows += [{**r, "source": f"{name}.json (python -m prodlab train {name})"} for r in meta["ablation"]]
    if bench is not None and Path(bench).is_file():
        rows += [{**r, "source": f"{Path(bench).name} (python -m prodlab bench gan)"}
                 for r in files.read_json(Path(bench))["ablation"]]
    return rows


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    """The ablation rows as a Markdown table: recipe, CPU minutes, FID, KID, precision, recall, class fidelity.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    lines = ["| model | recipe | steps | CPU min | FID | KID | precision | recall | class fidelity |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fidelity = "–" if r["class_fidelity"] is None else f"{r['class_fidelity']:.3f}"
        lines.append(f"| {r['model']} | {r['label']} | {r['steps']:,} | {r['cpu_minutes']:.1f} | {r['fid']:.2f} | "
                     f"{r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | {fidelity} |")
    return "\n".join(lines)


def truncated_report(name: str, gan: gan_models.GAN, n: int, threshold: float | None, seed: int = 0,
                     batch_size: int = 1000) -> dict[str, Any]:
    """The ruler's metrics of ``n`` samples of ``gan`` with noise truncated to ``[-threshold, threshold]`` (None: the
    plain N(0, I)); balanced requested classes for a conditional GAN, as ``checkpoints.generate`` draws them.

    Chapter 02 (notebooks/02_gan.ipynb), the truncation trick: fidelity (precision) against diversity (recall).
    """
    gan.eval()
    generator = torch.Generator().manual_seed(seed)
    labels = checkpoints.requests(gan, n, seed)
    chunks = [gan.sample(min(batch_size, n - start), generator,
                         None if labels is None else labels[start : start + batch_size], threshold)
              for start in range(0, n, batch_size)]
    images = data.to_uint8(torch.cat(chunks))
    return ruler.generator_report(images, None if labels is None else labels.reshape(n, -1)[:, 0], seed=seed)


def coverage_curve(recipe: GANRecipe, run: runs.Run, epochs: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Train ``recipe`` one epoch at a time (resuming, so the run is one uninterrupted run) and after each epoch
    measure the class histogram of ``n`` samples with the ruler: the mode-collapse check of chapter 02.

    Returns one row per epoch: steps, CPU seconds, the class shares, ``classes_covered``, ``coverage_tv``, FID, and
    the last step's mean ``D(x)`` and ``D(G(z))``.
    """
    r, rows = ruler.load(), []
    for epoch in range(1, epochs + 1):
        result = train_gan(GANConfig(data.spec()), dataclasses.replace(recipe, epochs=epoch), run, seed,
                           progress=False, resume=epoch > 1)
        feats = r.features(result.gan.sample(n, torch.Generator().manual_seed(seed)))
        last = result.history[-1]
        rows.append({"epoch": epoch, "steps": int(last["step"]), "cpu_seconds": round(result.cpu_seconds, 1),
                     **metrics.class_coverage(r.predict(feats), r.image.n_classes),
                     "fid": metrics.fid(r.reference("test"), feats),
                     "d_real": last["d_real"], "d_fake": last["d_fake"]})
    return rows
