"""GANs (chapter 02, §2.2, §3.1.2, §4): the figures of notebooks/02_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import cache, checkpoints, config, files, metrics, plotting, ruler, runs
from prodlab.figures import register
from prodlab.plotting import finish, new_figure
from prodlab.training import gan_measure, gan_rulers
from prodlab.training.gan import GANRecipe

GAN_COLORS = {"L_D": "#c44e52", "L_G": "#4c72b0", "D(x)": "#55a868", "D(G(z))": "#8172b2"}


def plot_training_curves(history: Sequence[Mapping[str, float]], title: str, smooth: int = 1) -> Figure:
    """Left: L_D and L_G per step; right: mean D(x) and D(G(z)) per step (§3.1.2 step 7: monitor).

    ``smooth > 1`` draws the raw values faintly and their running mean over ``smooth`` steps on top.
    """
    step = np.array([h["step"] for h in history])
    series = {"L_D": "loss_d", "L_G": "loss_g", "D(x)": "d_real", "D(G(z))": "d_fake"}
    fig = new_figure(9, 3.2)
    left, right = fig.subplots(1, 2)
    for label, key in series.items():
        ax = left if label.startswith("L_") else right
        values = np.array([h[key] for h in history])
        if smooth > 1 and len(values) > smooth:
            ax.plot(step, values, color=GAN_COLORS[label], lw=0.5, alpha=0.3)
            values = np.convolve(values, np.ones(smooth) / smooth, mode="same")
            values[: smooth // 2], values[-(smooth // 2) :] = np.nan, np.nan  # edges average fewer steps
        ax.plot(step, values, color=GAN_COLORS[label], lw=1.8, label=label)
    left.set_ylabel("loss")
    left.set_title("Losses (each player minimises its own)")
    right.axhline(0.5, color="0.6", lw=0.8, ls=":")
    right.set_ylim(0, 1)
    right.set_ylabel("mean discriminator output")
    right.set_title("D(x) on real, D(G(z)) on fake products")
    for ax in (left, right):
        ax.set_xlabel("training step")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    return finish(fig)


def time_to_fid(curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]], title: str) -> Figure:
    """FID (log scale) against training CPU minutes: one colour per recipe, one line style per generator of it."""
    fig = new_figure(7.5, 3.6)
    ax = fig.subplots()
    for i, (recipe, lines) in enumerate(curves.items()):
        for j, (kind, (minutes, fid)) in enumerate(lines.items()):
            ax.plot(minutes, fid, marker="o", lw=1.8, ms=4, color=f"C{i}", ls=("-", "--", ":")[j],
                    label=f"{recipe}: {kind}")
    ax.set_yscale("log")
    ax.set_xlabel("training CPU minutes (process time)")
    ax.set_ylabel("FID (ruler features; lower is better)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return finish(fig)


def ablation_bars(rows: Sequence[Mapping[str, float | str]], title: str) -> Figure:
    """One horizontal bar per recipe: FID (left, lower is better), precision and recall (right, higher is better)."""
    labels = [r["recipe"] for r in rows]
    y = np.arange(len(rows))[::-1]
    fig = new_figure(11, 0.45 * len(rows) + 1.4)
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=(1.2, 1))
    bars = left.barh(y, [r["fid"] for r in rows], color="#4c72b0")
    left.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    left.set_yticks(y, labels, fontsize=8)
    left.set_xlabel("FID (lower is better)")
    left.set_xlim(0, 1.18 * max(r["fid"] for r in rows))
    height = 0.38
    for offset, key, color in ((height / 2, "precision", "#55a868"), (-height / 2, "recall", "#c44e52")):
        b = right.barh(y + offset, [r[key] for r in rows], height, color=color, label=key)
        right.bar_label(b, fmt="%.2f", fontsize=7, padding=2)
    right.set_xlim(0, 1.12)
    right.set_xlabel("precision, recall\n(higher is better)")
    right.legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title)
    return finish(fig)


@register("gan-training-curves", "GAN training curves: the two losses and D's outputs", "§3.1.2 steps 5-7", "02_gan",
          "History of the shipped dcgan run (dcgan.json): L_D, L_G, D(x), D(G(z)) averaged over 50-step windows.")
def gan_training_curves() -> Figure:

    meta = checkpoints.read_meta("dcgan")
    batch = meta["recipe"]["fields"]["batch_size"]
    return plot_training_curves(meta["history"], f"Shipped dcgan: {meta['train_steps']:,} steps, batches of {batch} "
                                "(means over 50 steps)")


@register("gan-samples", "Random products from the DCGAN", "§2.2, §3.1.2 step 7", "02_gan",
          "64 samples of the shipped dcgan (EMA generator) with seed 0.")
def gan_samples() -> Figure:

    images, _ = checkpoints.generate("dcgan", 64, seed=0)
    return plotting.image_grid(images, ncols=16, suptitle="64 random products of the shipped dcgan (seed 0)", cell=0.6)


@register("gan-samples-per-class", "Asking for a class: products of the conditional DCGAN", "§2.2", "02_gan",
          "10 samples per class of the shipped cdcgan, seed 0 (the same 10 noise vectors in every row).")
def gan_samples_per_class() -> Figure:

    model = checkpoints.load("cdcgan")
    z = model.noise(10, torch.Generator().manual_seed(0))
    names = model.cfg.image.class_names
    rows = [model.render(z, torch.full((len(z),), c)) for c in range(len(names))]
    return plotting.labelled_rows(rows, names,
                               suptitle="cdcgan: one row per requested class, one column per noise vector z")


@register("gan-progress", "Samples across training (fixed noise)", "§3.1.2 step 7", "02_gan",
          "The same 10 noise vectors through the raw dcgan generator at steps 0, 10, 20, 50, ... and the last "
          "(snapshots stored in dcgan.json).")
def gan_progress() -> Figure:
    snapshots = gan_measure.decode_snapshots(checkpoints.read_meta("dcgan")["snapshots"])
    return plotting.labelled_rows(list(snapshots.values()), [f"step {s:,}" for s in snapshots],
                               suptitle="dcgan: the same noise z during training", cell=0.7)


@register("gan-class-coverage", "Mode-collapse check: which classes the DCGAN makes", "§2.2", "02_gan",
          "Class shares predicted by the ruler classifier for 10,000 dcgan samples (dcgan.json) and the test set.")
def gan_class_coverage() -> Figure:
    meta = checkpoints.read_meta("dcgan")["metrics"]
    r = ruler.load()
    test = metrics.class_coverage(r.predict(r.reference("test")), r.image.n_classes)
    return plotting.class_shares(
        {f"dcgan samples (TV to uniform {meta['coverage_tv']:.3f})": meta["class_share"],
         f"test images (TV {test['coverage_tv']:.3f})": test["class_share"]},
        r.image.class_names, f"Predicted class of {meta['n']:,} unconditional samples: no class is missing")


@register("gan-ablation", "Ablation: the article's losses, then the improvements", "§3.1.2, §4", "02_gan",
          "Measured rows (10,000 samples each) of dcgan.json, cdcgan.json and bench_gan.json; within a block of "
          "equal steps the CPU time is equal.")
def gan_ablation() -> Figure:
    rows = [{**r, "recipe": f"{r['model']}, {r['steps']:,} steps, {r['cpu_minutes']:.1f} CPU-min: {r['label']}"}
            for r in gan_measure.gan_ablation()]
    return ablation_bars(rows, "GAN recipes measured with the ruler (10,000 samples each)")


@register("gan-time-to-fid", "Time to FID: how fast each recipe gets good", "§3.1.2 step 7", "02_gan",
          "python -m prodlab bench gan: FID of 2,000 samples after every epoch, raw G (dashed) and EMA G (solid).")
def gan_time_to_fid() -> Figure:

    bench = files.read_json(gan_measure.BENCH_GAN_FILE)
    curves = {}
    for key, v in bench["variants"].items():
        points = [p for p in v["time_to_fid"] if p["epoch"] > 0]
        minutes = [p["cpu_seconds"] / 60 for p in points]
        raw = {"raw G": (minutes, [p["fid_raw"] for p in points])}
        curves[key] = {"EMA G": (minutes, [p["fid_ema"] for p in points]), **raw} if "fid_ema" in points[0] else raw
    return time_to_fid(curves, f"FID of {bench['n_fid']:,} samples after each epoch (bench gan)")


# The mode-collapse lesson: the article's losses but the saturating L_G of §2.2, trained like the live run of the
# notebook (first 3,200 training images, batches of 64, seed 0), so the two compare at equal steps.
COLLAPSE_RECIPE = GANRecipe(loss="bce-saturating", patience=10**9)  # patience: let the stuck run go on, to measure it
COLLAPSE_LIMIT = 3_200  # training images: those of the notebook's live run
COLLAPSE_EPOCHS = (4, 1)  # epochs (full, quick): 200 or 50 steps, as the live run
COLLAPSE_SAMPLES = (2_000, 500)  # samples classified by the ruler after each epoch (full, quick)


@cache.computation("gan-mode-collapse", "a GAN with the saturating L_G, class histogram of its samples per epoch")
def mode_collapse_result() -> cache.Result:
    """Chapter 02's collapsing recipe, trained for the live run's epochs, its class histogram after each; cached."""
    recipe = dataclasses.replace(COLLAPSE_RECIPE, train_limit=COLLAPSE_LIMIT)
    rows = gan_measure.coverage_curve(recipe, runs.Run(f"gan-mode-collapse{'-quick' if config.quick() else ''}"),
                                      epochs=config.budget(*COLLAPSE_EPOCHS), n=config.budget(*COLLAPSE_SAMPLES))
    return {"recipe": dataclasses.asdict(recipe), "rows": rows}


TRUNCATIONS = (None, 2.0, 1.0, 0.5, 0.25)  # thresholds t of the truncation sweep (None: plain N(0, I))
TRUNCATION_SAMPLES = (3_000, 500)


@cache.computation("gan-truncation", "FID, precision, recall of dcgan and cdcgan samples at several truncations")
def truncation_result() -> cache.Result:
    """The ruler's metrics of the shipped dcgan and cdcgan at each threshold of :data:`TRUNCATIONS`; cached."""
    n = config.budget(*TRUNCATION_SAMPLES)
    rows = []
    for name in ("dcgan", "cdcgan"):
        gan = checkpoints.load(name)
        for t in TRUNCATIONS:
            report = gan_measure.truncated_report(name, gan, n, t)
            rows.append({"model": name, "threshold": t, **{k: report.get(k) for k in (
                "n", "fid", "precision", "recall", "classes_covered", "coverage_tv", "class_fidelity")}})
    return {"rows": rows}


def truncation_figure(rows: Sequence[Mapping[str, float | str | None]]) -> Figure:
    """Left: precision against recall per model, one point per threshold; right: FID against the threshold."""
    fig = new_figure(10, 3.4)
    left, right = fig.subplots(1, 2)
    for i, name in enumerate(sorted({str(r["model"]) for r in rows})):
        mine = [r for r in rows if r["model"] == name]
        left.plot([r["recall"] for r in mine], [r["precision"] for r in mine], "o-", color=f"C{i}", label=name)
        for r in mine:
            left.annotate("none" if r["threshold"] is None else f"t={r['threshold']:g}",
                          (r["recall"], r["precision"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        finite = [r for r in mine if r["threshold"] is not None]
        right.plot([r["threshold"] for r in finite], [r["fid"] for r in finite], "o-", color=f"C{i}", label=name)
        plain = next(r for r in mine if r["threshold"] is None)
        right.axhline(plain["fid"], color=f"C{i}", ls=":", lw=1)
    left.set_xlabel("recall (diversity)")
    left.set_ylabel("precision (fidelity)")
    left.set_title("Truncation trades diversity for fidelity")
    right.set_xscale("log")
    ticks = sorted({float(r["threshold"]) for r in rows if r["threshold"] is not None})
    right.set_xticks(ticks, [f"{t:g}" for t in ticks])
    right.minorticks_off()
    right.set_xlabel("truncation threshold t (dotted: no truncation)")
    right.set_ylabel("FID (lower is better)")
    right.set_title("FID against the threshold")
    for ax in (left, right):
        ax.legend(frameon=False, fontsize=8)
    return finish(fig)


@register("gan-truncation", "The truncation trick: fidelity against diversity", "§2.2 (sampling z)", "02_gan",
          "Shipped dcgan and cdcgan, 3,000 samples per truncation threshold (python -m prodlab compute "
          "gan-truncation).")
def gan_truncation() -> Figure:
    return truncation_figure(truncation_result()["rows"])


def ranking_claims(rows: list[dict]) -> list[tuple[str, dict, dict]]:
    """Every ranking section 7 states, as (claim, the row said to be better, the row said to be worse), from the
    rows of ``python -m prodlab bench gan-rulers`` (``gan_rulers.pick`` finds them by model, variant and recipe)."""
    def dc(variant: str, **recipe: object) -> dict:
        return gan_rulers.pick(rows, "dcgan", variant, **recipe)

    full, short = {"epochs": 6}, {"epochs": 2}
    return [
        ("batches of 16 + EMA over batches of 64 (dcgan, shipped vs article)",
         dc("ema", batch_size=16, **full), dc("raw", batch_size=64, **full)),
        ("batch 16 over batch 64, raw G (dcgan)", dc("raw", batch_size=16, **full), dc("raw", batch_size=64, **full)),
        ("EMA over raw G at batch 16 (dcgan)", dc("ema", batch_size=16, **full), dc("raw", batch_size=16, **full)),
        ("raw G over EMA at batch 64 (dcgan)", dc("raw", batch_size=64, **full), dc("ema", batch_size=64, **full)),
        ("EMA over raw G (cdcgan)", gan_rulers.pick(rows, "cdcgan", "ema"), gan_rulers.pick(rows, "cdcgan", "raw")),
        ("recomputed over stale BN statistics, 2 epochs (article's losses)",
         dc("ema", loss="bce", **short), dc("ema_stale_bn", loss="bce", **short)),
        ("recomputed over stale BN statistics, 2 epochs (hinge + SN + TTUR)",
         dc("ema", loss="hinge", **short), dc("ema_stale_bn", loss="hinge", **short)),
        ("article's losses over hinge + SN + TTUR, 2 epochs, raw G",
         dc("raw", loss="bce", **short), dc("raw", loss="hinge", **short)),
    ]
