"""Measuring generators (chapter 04, §2.4, §4): the figures of notebooks/04_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import bootstrap, cache, checkpoints, config, data, metrics, plotting, ruler, ruler_checks
from prodlab.figures import register
from prodlab.plotting import finish, new_figure
from prodlab.training import diffusion_measure, registry


def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Figure:
    """Row-normalised confusion matrix (true class in rows), each cell annotated with its percentage."""
    counts = np.asarray(confusion, dtype=np.float64)
    share = counts / counts.sum(1, keepdims=True)
    fig = new_figure(6.4, 5.6)
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(share)):
        for j in range(len(share)):
            if counts[i, j]:
                text = f"{100 * share[i, j]:.0f}" if share[i, j] >= 0.005 else "·"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=40, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return finish(fig)


def metric_curves(
    sweeps: Mapping[str, Sequence[Mapping[str, float]]],
    metrics: Mapping[str, str],
    xlabels: Mapping[str, str],
    log_x: Sequence[str] = (),
    reversed_x: Sequence[str] = (),
    suptitle: str | None = None,
    unit_interval: Sequence[str] = ("precision", "recall"),
) -> Figure:
    """One row per sweep (e.g. a degradation), one column per metric: metric value against the sweep's level.

    ``sweeps[name]`` is a list of rows with a ``level`` and the metric keys; ``metrics`` maps key -> axis label.
    Metrics in ``unit_interval`` get the full 0..1 axis, so that a change of 0.01 does not look like a collapse.
    """
    fig = new_figure(2.6 * len(metrics) + 0.4, 2.1 * len(sweeps) + (0.4 if suptitle else 0.0))
    axes = np.atleast_2d(fig.subplots(len(sweeps), len(metrics)))
    for r, (name, rows) in enumerate(sweeps.items()):
        levels = [row["level"] for row in rows]
        for c, (key, label) in enumerate(metrics.items()):
            ax = axes[r, c]
            ax.plot(levels, [row[key] for row in rows], "o-", color=f"C{c}", ms=4)
            if key in unit_interval:
                ax.set_ylim(-0.02, 1.02)
            if name in log_x:
                ax.set_xscale("log")
            if name in reversed_x:
                ax.invert_xaxis()
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(label)
            ax.set_xlabel(xlabels.get(name, "level"), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return finish(fig)


def floor_plot(rows: Sequence[Mapping[str, float]], title: str) -> Figure:
    """FID and KID of real-vs-real comparisons against sample size: mean and spread over independent draws."""
    sizes = sorted({int(row["n"]) for row in rows})
    fig = new_figure(8.5, 3.0)
    axes = fig.subplots(1, 2)
    labels = ("FID (lower is better)", "KID (lower is better; 0 = same distribution)")
    for ax, key, label in zip(axes, ("fid", "kid"), labels, strict=True):
        values = [np.array([row[key] for row in rows if row["n"] == n]) for n in sizes]
        mean = np.array([v.mean() for v in values])
        std = np.array([v.std() for v in values])
        for n, v in zip(sizes, values, strict=True):
            ax.plot([n] * len(v), v, ".", color="0.6", ms=4)
        ax.errorbar(sizes, mean, yerr=std, fmt="o-", color="C0", capsize=3, ms=4, label="mean ± std over draws")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("samples N (train images vs the 10,000 test images)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    limit = max(0.005, 1.5 * max(abs(row["kid"]) for row in rows))  # symmetric, so "about 0" reads as such
    axes[1].set_ylim(-limit, limit)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    return finish(fig)


EVAL_N = 10_000  # samples per set in the metric figures (quick mode: 2,000)
KID_SUBSETS = 50  # KID's subsets in the sweeps and the floor curve (quick mode: 10, a noisier mean)
EVAL_METRICS = {"fid": "FID (lower is better)", "kid": "KID (lower is better)",
                "precision": "precision (higher is better)", "recall": "recall (higher is better)"}


@cache.computation("ruler-sanity", "every metric on real images blurred, noised, missing classes or collapsed")
def eval_sweeps() -> dict[str, list[dict]]:
    """Every sanity sweep of ``ruler_checks.SANITY_LEVELS`` on ``EVAL_N`` training images against the test set
    (quick mode: 2,000 images, 10 KID subsets); cached (``python -m prodlab compute ruler-sanity``)."""
    n, reports = config.budget(EVAL_N, 2_000), {}  # reports: the undegraded images are measured once, not 4 times
    subsets = config.budget(KID_SUBSETS, 10)
    return {kind: ruler_checks.sanity_sweep(kind, n=n, reports=reports, kid_subsets=subsets)
            for kind in ruler_checks.SANITY_LEVELS}


@cache.computation("copy-screen", "the copy rate of every shipped generator: its samples' nearest training images")
def copy_screen_result() -> cache.Result:
    """``metrics.memorisation`` of 500 samples (seed 0; quick mode 100) of every generative model with a checkpoint:
    section 7's copy-rate column. Cached, because the diffusion models need tens of seconds for 500 samples."""
    n = config.budget(500, 100)
    names = [name for name in registry.generative_models() if checkpoints.exists(name)]
    return {"n": n, **{name: metrics.memorisation(checkpoints.generate(name, n)[0]) for name in names}}


@register("eval-confusion", "Confusion matrix of the product classifier", "§2.4, §4", "04_evaluation",
          "Shipped classifier on the 10,000 test images; rows are true classes, cells the % of that class.")
def eval_confusion() -> Figure:
    model = ruler.load().model
    report = ruler.classifier_report(model, "test")
    return confusion_matrix(report["test_confusion"], model.cfg.image.class_names,
                                  f"Product classifier on the test set: {100 * report['test_accuracy']:.1f} % correct")


@register("eval-errors", "The classifier's most confident errors", "§2.4", "04_evaluation",
          "The 12 misclassified test images with the highest softmax probability of the wrong class.")
def eval_errors() -> Figure:
    r = ruler.load()
    errors = ruler.confident_errors(r, k=12)
    names = r.image.class_names
    titles = [f"{names[t]}\n→ {names[p]} {100 * c:.0f}%"
              for t, p, c in zip(errors["labels"], errors["preds"], errors["confidence"], strict=True)]
    return plotting.image_grid(errors["images"], ncols=6, titles=titles, cell=1.45,
                            suptitle="Most confident errors (true class → predicted class, confidence)")


@register("eval-degradations", "Blur and noise levels of the sanity checks", "§4", "04_evaluation",
          "Eight test images under each Gaussian blur and Gaussian noise level used in the sanity sweeps.")
def eval_degradations() -> Figure:
    images, _ = data.showcase()
    x = images[[0, 1, 3, 5, 6, 7, 8, 9]]
    rows, labels = [], []
    for sigma in ruler_checks.SANITY_LEVELS["blur"][1:]:
        rows.append(ruler_checks.blur(x, sigma))
        labels.append(f"blur σ={sigma:g}")
    for sigma in ruler_checks.SANITY_LEVELS["noise"][1:]:
        rows.append(ruler_checks.add_noise(x, sigma))
        labels.append(f"noise σ={sigma:g}")
    return plotting.labelled_rows([data.to_float(x), *rows], ["original", *labels],
                               suptitle="Degradations applied on purpose to real images")


@register("eval-sanity", "How each metric reacts to degraded real images", "§4", "04_evaluation",
          "Training images (10,000; quick 2,000) blurred, noised, with classes removed or collapsed to few "
          "distinct images, each set measured against the 10,000 test images.")
def eval_sanity() -> Figure:
    return sanity_figure(eval_sweeps())


def sanity_figure(sweeps: dict[str, list[dict]]) -> Figure:
    """The sanity sweeps as curves (the notebook passes the sweeps it computed)."""
    return metric_curves(sweeps, EVAL_METRICS, ruler_checks.SANITY_LABELS, log_x=("collapse",),
                               reversed_x=("collapse",), suptitle="Sanity check of the ruler: real images degraded "
                               "on purpose (left end of each row = undegraded = the floor)")


FLOOR_SIZES = (500, 1000, 2000, 5000, 10_000)  # N of the floor curve, 5 draws each (quick mode: the first three, 3)


@cache.computation("ruler-floor", "FID and KID of real against real at several sample sizes")
def floor_result() -> cache.Result:
    """``ruler_checks.floor_curve``: the floor of FID and KID at each of ``FLOOR_SIZES``, 5 draws each (quick mode:
    N up to 2,000, 3 draws, 10 KID subsets: FID's bias with N shows as well); cached."""
    quick = config.quick()
    return {"rows": ruler_checks.floor_curve(FLOOR_SIZES[:3] if quick else FLOOR_SIZES, draws=3 if quick else 5,
                                             kid_subsets=config.budget(KID_SUBSETS, 10))}


@register("eval-floor", "The floor of FID and KID: real against real", "§4", "04_evaluation",
          "FID and KID of N random training images vs the test set, 5 independent draws per N (quick: N up to "
          "2,000, 3 draws).")
def eval_floor() -> Figure:
    return floor_plot(floor_result()["rows"], "What a perfect generator would score: FID is biased at small N, "
                            "KID is not")


@register("eval-coverage", "Predicted classes of healthy, class-dropping and collapsed sets", "§4", "04_evaluation",
          "Share of each predicted class among 10,000 training images (quick 2,000): untouched, 4 classes removed, "
          "collapsed to 10 distinct images (quick 2); from the cached sanity sweeps.")
def eval_coverage(sweeps: dict | None = None) -> Figure:
    sweeps = sweeps or eval_sweeps()
    n = sweeps["blur"][0]["n"]
    collapsed = sweeps["collapse"][-1]
    distinct = max(1, round(collapsed["level"] * n))
    shares = {"real images": sweeps["blur"][0]["class_share"],
              "4 classes removed": next(r for r in sweeps["drop"] if r["level"] == 4)["class_share"],
              f"{distinct} distinct images": collapsed["class_share"]}
    return plotting.class_shares(shares, data.spec().class_names,
                                 "Which classes does the classifier see in each sample set?")


RANKED = ("dcgan", "cdcgan", "vae", "diffusion")  # the generators section 7 ranks with both rulers
RANK_N = 2_000  # samples per generator (quick mode: 200)
SPACE_KEYS = ("fid", "precision", "recall", "density", "coverage")
FEW_STEPS = "diffusion-4"  # the shipped diffusion weights, sampled as the classifier alone would choose at 4 steps


def ranked_models() -> dict[str, torch.nn.Module]:
    """:data:`RANKED`'s shipped models by name, and :data:`FEW_STEPS`: the diffusion weights with the setting of
    ``diffusion_measure.classifier_pick``."""
    out = {name: checkpoints.load(name) for name in RANKED if checkpoints.exists(name)}
    if "diffusion" in out:
        pick = diffusion_measure.classifier_pick(checkpoints.read_meta("diffusion")["sampling_sweep"])
        out[FEW_STEPS] = diffusion_measure.with_sampling(out["diffusion"], sampler="heun", steps=pick["steps"],
                                                         guidance=pick["guidance"])
    return out


@cache.computation("two-rulers", "the shipped generators measured in both rulers' feature spaces, with intervals")
def two_rulers() -> cache.Result:
    """The samples of :func:`ranked_models` (``RANK_N``, seed 0, balanced requests) measured with the classifier
    and with the second ruler (``ruler.load_second``), each metric with its 95 % bootstrap interval (quick mode: 200
    samples, 20 resamples). Cached: the diffusion model needs minutes for its samples (``python -m prodlab compute
    two-rulers``)."""
    n, replicates, first, second = config.budget(RANK_N, 200), config.budget(200, 20), ruler.load(), ruler.load_second()
    if second is None:
        raise checkpoints.CheckpointError("no second ruler is shipped: python -m prodlab train encoder")
    rows = []
    for name, model in ranked_models().items():
        report = ruler.sample_report(name, model, n, 0, first, replicates=replicates, second=second)
        rows += [{"model": name, "space": space, **{k: r[k] for k in SPACE_KEYS}, "intervals": r["intervals"]}
                 for space, r in (("classifier", report), ("encoder", report["second_ruler"]))]
    return {"n": n, "rows": rows}


def rankings(rows: Sequence[Mapping], key: str = "fid") -> list[dict]:
    """Every pair of models compared on ``key`` in each space: who is better, whether the intervals separate, and
    whether both spaces agree. Chapter 04 (notebooks/04_evaluation.ipynb)."""
    lower = key == "fid"
    by = {(r["model"], r["space"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            pair = {"pair": f"{a} vs {b}"}
            for space in ("classifier", "encoder"):
                ra, rb = by[(a, space)], by[(b, space)]
                pair[f"{space} better"] = a if (ra[key] < rb[key]) == lower else b
                pair[f"{space} separated"] = bootstrap.separated(ra["intervals"][key], rb["intervals"][key])
            pair["agree"] = pair["classifier better"] == pair["encoder better"]
            out.append(pair)
    return out


def two_rulers_figure(rows: Sequence[Mapping], keys: Sequence[str] = ("fid", "recall", "coverage")) -> Figure:
    """One column per metric, one row per ruler: each model's value with its 95 % bootstrap interval.
    Chapter 04 (notebooks/04_evaluation.ipynb)."""
    spaces = ("classifier", "encoder")
    fig = new_figure(3.0 * len(keys) + 0.6, 4.6)
    axes = np.atleast_2d(fig.subplots(len(spaces), len(keys)))
    for r, space in enumerate(spaces):
        chosen = [row for row in rows if row["space"] == space]
        for c, key in enumerate(keys):
            ax = axes[r, c]
            values = [row[key] for row in chosen]
            low = [row[key] - row["intervals"][key][0] for row in chosen]
            high = [row["intervals"][key][1] - row[key] for row in chosen]
            ax.errorbar(range(len(chosen)), values, yerr=[low, high], fmt="o", color=f"C{c}", capsize=4)
            ax.set_xticks(range(len(chosen)), [row["model"] for row in chosen], fontsize=8)
            ax.grid(alpha=0.3)
            ax.set_title(f"{key} ({'lower' if key == 'fid' else 'higher'} is better)" if r == 0 else "", fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{space}'s space", fontsize=9)
    fig.suptitle("The same samples measured by two rulers (bars: 95 % bootstrap intervals)")
    return finish(fig)
