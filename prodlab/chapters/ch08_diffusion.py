"""Diffusion and flow models beside the GANs and VAEs (chapter 08): figures, cached analyses and exercise checkers.

The figures draw from the shipped checkpoints' JSON (``diffusion``, ``latent-diffusion``), the screening table
(``data/checkpoints/diffusion_screening.json``), the sampler-steps bench (``data/checkpoints/bench_diffusion.json``,
``python -m prodlab bench diffusion``) and two cached computations: the family table and the vae's ceiling
(``python -m prodlab compute diffusion-family|diffusion-vae-ceiling`` recompute them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure

from prodlab import bootstrap, cache, checkpoints, config, data, diffusion, files, flow_toy, plotting, recipes, ruler
from prodlab.chapters.ch04_evaluation import SPACE_KEYS  # the metrics measured in both rulers' spaces
from prodlab.figures import register
from prodlab.models.unet import parameter_count
from prodlab.plotting import finish, new_figure
from prodlab.training import diffusion_measure, distill
from prodlab.training.diffusion import DiffusionRecipe

FAMILY = ("dcgan", "cdcgan", "vae", "vae-sharp", "latent-diffusion", "diffusion-short", "diffusion",
          "diffusion-fast")
METRIC_KEYS = ("fid", "kid", "precision", "recall", "class_fidelity")


def screening() -> dict[str, Any]:
    """The screening table that chose the objective and the width (``write_screening`` wrote it)."""
    return files.read_json(diffusion_measure.SCREENING_FILE)


def train_cpu_seconds(meta: Mapping[str, Any]) -> float:
    """CPU seconds of a model's training steps, as its JSON records them (the GANs and diffusion models time
    their steps; the VAE its epochs). ``latent-diffusion`` adds the VAE it stands on (its recipe's first stage), a
    distilled student its teacher's training and trajectories."""
    own = meta.get("train_cpu_seconds_steps", meta.get("epochs_cpu_seconds", meta.get("train_cpu_seconds", 0.0)))
    if meta["model"] == "latent-diffusion":
        own += checkpoints.read_meta(first_stage(meta))["epochs_cpu_seconds"]
    if "teacher_cpu_seconds" in meta:
        teacher = checkpoints.read_meta(meta["recipe"]["fields"]["teacher"])
        own += meta["teacher_cpu_seconds"] + train_cpu_seconds(teacher)
    return float(own)


def first_stage(meta: Mapping[str, Any]) -> str:
    """The VAE a ``latent-diffusion`` checkpoint's prior sits on, as its recorded recipe names it."""
    return recipes.recipe_from_json(meta["recipe"], DiffusionRecipe).first_stage


def prior_hole_vaes() -> list[str]:
    """The VAEs section 11 compares: ``vae`` and the one the shipped ``latent-diffusion`` sits on."""
    return list(dict.fromkeys(["vae", first_stage(checkpoints.read_meta("latent-diffusion"))]))


def sampling_ms(name: str, n: int, seed: int = 0) -> float:
    """CPU milliseconds per image to draw ``n`` samples of ``name`` on one thread (its shipped sampler)."""
    model = checkpoints.load(name)
    with config.one_thread():
        checkpoints.generate(name, min(n, 10), seed, model=model)  # warm-up
        start = time.process_time()
        checkpoints.generate(name, n, seed, model=model, batch_size=500)
        return 1000 * (time.process_time() - start) / n


FAMILY_REPLICATES = 200  # bootstrap resamples of the family table's intervals (quick mode: 20)


def family_report(name: str, n: int, replicates: int) -> dict[str, Any]:
    """Model ``name`` measured by both rulers on ``n`` samples (seed 0) with bootstrap intervals: the metrics its
    JSON records where its trainer measured it so (the diffusion models, 10,000 samples), else measured here by
    ``ruler.evaluate_generator``, the same protocol."""
    recorded = checkpoints.read_meta(name)["metrics"]
    if recorded.get("n") == n and "second_ruler" in recorded and "intervals" in recorded:
        return recorded
    return ruler.evaluate_generator(name, n, 0, replicates=replicates)


@cache.computation("diffusion-family", "GAN, VAE and diffusion models on both rulers: metrics, intervals, budgets")
def family_result() -> cache.Result:
    """One row per model of :data:`FAMILY` with a checkpoint: both rulers' metrics on 10,000 samples with 95 %
    bootstrap intervals (quick mode: 100 samples, 20 resamples; :func:`family_report`), training CPU-minutes,
    parameters and the sampling time measured here (200 samples; quick mode 50)."""
    n, replicates = config.budget(10_000, 100), config.budget(FAMILY_REPLICATES, 20)
    rows = []
    for name in FAMILY:
        if not checkpoints.exists(name):
            continue
        meta, report = checkpoints.read_meta(name), family_report(name, n, replicates)
        second = report["second_ruler"]
        rows.append({"model": name, "train_cpu_minutes": round(train_cpu_seconds(meta) / 60, 1),
                     **{k: report.get(k) for k in (*METRIC_KEYS, *SPACE_KEYS)},
                     **{f"encoder_{k}": second[k] for k in SPACE_KEYS},
                     "intervals": {**{k: report["intervals"][k] for k in SPACE_KEYS},
                                   **{f"encoder_{k}": second["intervals"][k] for k in SPACE_KEYS}},
                     "sample_ms_per_image": round(sampling_ms(name, config.budget(200, 50)), 2),
                     "parameters": parameter_count(checkpoints.load(name))})
    return {"n": n, "replicates": replicates, "rows": rows}


def with_interval(value: float, interval: Sequence[float]) -> str:
    """``value [low, high]`` with three significant digits each: a measurement and its 95 % interval."""
    return f"{value:.3g} [{interval[0]:.3g}, {interval[1]:.3g}]"


def interval_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """A text table of ``keys`` per model, each value followed by its 95 % interval (:func:`with_interval`)."""
    lines = [f"{'model':18s}" + "".join(f"{k:>26s}" for k in keys)]
    for r in rows:
        lines.append(f"{r['model']:18s}" + "".join(f"{with_interval(r[k], r['intervals'][k]):>26s}" for k in keys))
    return "\n".join(lines)


def wins(row: Mapping[str, Any], other: Mapping[str, Any], space: str = "") -> dict[str, bool]:
    """Issue 27's test of ``row`` against ``other`` in one space (``""``: the classifier's, ``"encoder_"``): FID at
    most 0.8 times the other's, recall above it, and each with separated 95 % intervals."""
    fid, recall = f"{space}fid", f"{space}recall"
    return {"fid_at_most_0.8x": row[fid] <= 0.8 * other[fid], "recall_above": row[recall] > other[recall],
            "fid_separated": bootstrap.separated(row["intervals"][fid], other["intervals"][fid]),
            "recall_separated": bootstrap.separated(row["intervals"][recall], other["intervals"][recall])}


def sampler_steps_bench() -> dict[str, Any]:
    """The sampler-steps bench beside the weights (``python -m prodlab bench diffusion`` wrote it: 1,000 samples per
    point, one thread), checked to belong to the shipped weights."""
    bench = files.read_json(diffusion_measure.BENCH_DIFFUSION_FILE)
    if bench["weights_sha256"] != checkpoints.read_meta("diffusion")["weights_sha256"]:
        raise RuntimeError("data/checkpoints/bench_diffusion.json measured other weights than the shipped diffusion: "
                           "rerun python -m prodlab bench diffusion")
    return bench


ANCESTRAL_STEPS = (10, 25, 50)  # 100 steps would take 7 CPU-minutes more (Euler: 440 ms per image)


@cache.computation("diffusion-ancestral", "the shipped diffusion model with the ancestral sampler: FID and time")
def ancestral_result() -> cache.Result:
    """Section 10's bench for the ancestral (DDPM) sampler on the shipped weights and guidance: 10, 25 and 50 steps,
    1,000 samples per point, seed 0, one thread (quick mode: 30 samples, 10 steps), beside its Euler rows."""
    counts = {"ancestral": ANCESTRAL_STEPS if not config.quick() else ANCESTRAL_STEPS[:1]}
    return diffusion_measure.bench_sampler_steps(config.budget(1000, 30), 0, counts)


def sampler_steps_figure(result: Mapping[str, Any], extra: Sequence[Mapping[str, Any]] = ()) -> Figure:
    """FID in both rulers' spaces and ms per image against network calls per image, one line per sampler of the
    bench, and each row of ``extra`` (a distilled student's bench row) as a star."""
    panels = {"fid": "FID, classifier (lower is better)", "second_fid": "FID, encoder (lower is better)",
              "ms_per_image": "CPU ms per image (one thread)"}
    fig = new_figure(12.0, 3.2)
    axes = fig.subplots(1, len(panels))
    for i, sampler in enumerate(dict.fromkeys(r["sampler"] for r in result["rows"])):
        rows = [r for r in result["rows"] if r["sampler"] == sampler]
        for ax, key in zip(axes, panels, strict=True):
            ax.plot([r["network_calls"] for r in rows], [r[key] for r in rows], "o-", color=f"C{i}", label=sampler)
    for row in extra:
        for ax, key in zip(axes, panels, strict=True):
            ax.plot([row["network_calls"]], [row[key]], "*", color="C3", markersize=13,
                    label=f"{row['sampler']}, {row['steps']} Euler steps")
    for ax, label in zip(axes, panels.values(), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("network calls per image")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Fewer calls, faster samples: {result['n']:,} samples per point, guidance {result['guidance']:g} "
                 "(2 calls per guided step)")
    return finish(fig)


@register("diffusion-sampler-steps", "Sampler steps against FID and time", "§3.3 step 4, beyond the article",
          "08_diffusion",
          "The shipped diffusion model sampled with 5-100 Euler and 2-10 Heun steps, 1,000 samples each "
          "(data/checkpoints/bench_diffusion.json; python -m prodlab bench diffusion), and its distilled student "
          "(diffusion-fast.json).")
def diffusion_sampler_steps() -> Figure:
    return sampler_steps_figure(sampler_steps_bench(), distilled_bench())


DISTILLED = "diffusion-fast"  # the shipped student of ``diffusion`` (``training.distill``)


def distilled_bench() -> list[dict[str, Any]]:
    """The student's point of the sampler-steps bench, as its trainer measured it ([] without its checkpoint)."""
    return [checkpoints.read_meta(DISTILLED)["bench"]] if checkpoints.exists(DISTILLED) else []


def distilled_rows() -> list[dict[str, Any]]:
    """The teacher's shipped sampler and the student, each on 10,000 samples in both rulers' spaces with 95 %
    intervals, as their JSON records them: ``model``, network calls, FID, recall, ms per image, each ``encoder_``."""
    rows = []
    for name in ("diffusion", DISTILLED):
        meta = checkpoints.read_meta(name)
        m, cfg = meta["metrics"], meta["config"]
        second = m["second_ruler"]
        rows.append({"model": name, "network_calls": diffusion.network_calls(cfg["sampler"], cfg["steps"],
                                                                             cfg["guidance"] != 1.0),
                     "fid": m["fid"], "recall": m["recall"], "class_fidelity": m["class_fidelity"],
                     "encoder_fid": second["fid"], "encoder_recall": second["recall"],
                     "ms_per_image": m["sample_cpu_ms_per_image"],
                     "intervals": {**{k: m["intervals"][k] for k in ("fid", "recall")},
                                   **{f"encoder_{k}": second["intervals"][k] for k in ("fid", "recall")}}})
    return rows


def distilled_paths(seed: int = 0) -> dict[str, torch.Tensor]:
    """One product per class from the same noise (``seed``): the teacher's full guided solve, the teacher with the
    student's sampler (its Euler steps, no guidance) and the student; label -> n_classes x C x H x W in [0, 1]."""
    student, teacher = checkpoints.load(DISTILLED), checkpoints.load("diffusion")
    labels = torch.arange(teacher.cfg.image.n_classes)
    noise = torch.randn(len(labels), *teacher.cfg.image.shape, generator=torch.Generator().manual_seed(seed))
    untrained = distill.student_of(teacher, student.cfg.steps)  # the teacher's weights, the student's sampler
    out = {}
    with config.one_thread(), torch.no_grad():
        for name, model in (("diffusion", teacher), ("diffusion, Euler", untrained), (DISTILLED, student)):
            c = model.cfg
            x = diffusion.sample_trajectory(model, noise.shape, c.objective, c.sampler, c.steps, labels, c.guidance,
                                            null_label=c.null_label, noise=noise)[-1]
            calls = diffusion.network_calls(c.sampler, c.steps, c.guidance != 1.0)
            out[f"{name}: {calls} calls"] = (x.clamp(-1, 1) + 1) / 2
    return out


@register("diffusion-distilled", "Four network calls: the distilled student beside its teacher",
          "§3.3 step 4, beyond the article", "08_diffusion",
          "One product per class from the same noise: diffusion's full sampler, the same network with 4 calls, and "
          "diffusion-fast, its student trained by python -m prodlab train diffusion-fast.")
def diffusion_distilled() -> Figure:
    rows = distilled_paths()
    return plotting.labelled_rows(list(rows.values()), list(rows), "The same noise, three samplers",
                                  col_titles=list(data.spec().class_names), label_width=2.4)


def guidance_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """FID in both rulers' spaces, recall and class fidelity against the guidance scale, one line per number of
    Heun steps (the trainer's sampling sweep)."""
    keys = {"fid": "FID, classifier", "second_fid": "FID, encoder", "recall": "recall", "class_fidelity":
            "class fidelity"}
    fig = new_figure(12.0, 2.9)
    axes = fig.subplots(1, len(keys))
    for i, steps in enumerate(dict.fromkeys(r["steps"] for r in rows)):
        chosen = [r for r in rows if r["steps"] == steps]
        for ax, key in zip(axes, keys, strict=True):
            ax.plot([r["guidance"] for r in chosen], [r[key] for r in chosen], "o-", color=f"C{i}",
                    label=f"{steps} Heun steps")
    for ax, label in zip(axes, keys.values(), strict=True):
        ax.set_xlabel("guidance scale w")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Guidance trades diversity (recall) for fidelity; the steps decide how sharp a sample is")
    return finish(fig)


@register("diffusion-guidance", "Guidance scale and sampler steps against fidelity and diversity",
          "§3.3 step 4, beyond the article", "08_diffusion",
          "The trainer's sweep on 1,000 samples per setting, recorded in data/checkpoints/diffusion.json "
          "(python -m prodlab bench diffusion-sampling).")
def diffusion_guidance() -> Figure:
    return guidance_figure(checkpoints.read_meta("diffusion")["sampling_sweep"])


def samples_per_class(name: str = "diffusion", per_class: int = 8, seed: int = 0) -> torch.Tensor:
    """``per_class`` samples of each class from a conditional model: uint8 n_classes x per_class x H x W x C."""
    model = checkpoints.load(name)
    n_classes = model.cfg.image.n_classes
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    with config.one_thread():
        x = model.sample(len(labels), torch.Generator().manual_seed(seed), labels=labels)
    images = data.to_uint8(x)
    return images.reshape(n_classes, per_class, *images.shape[1:])


@register("diffusion-samples", "The shipped diffusion model, one row per class", "§3.3 step 4, beyond the article",
          "08_diffusion", "8 samples per class of the shipped diffusion model (seed 0, its shipped sampler).")
def diffusion_samples() -> Figure:
    rows = samples_per_class()
    return plotting.labelled_rows(list(rows), data.spec().class_names, "diffusion: samples per requested class")


def trajectory(label: int = 7, n: int = 4, steps: int = 10, seed: int = 0) -> list[torch.Tensor]:
    """The states ``x_1 -> x_0`` of ``n`` samples of class ``label`` (Euler, ``steps`` steps), in [0, 1]."""
    model = checkpoints.load("diffusion")
    with config.one_thread(), torch.no_grad():
        states = diffusion.sample_trajectory(model, (n, *model.cfg.image.shape), model.cfg.objective, "euler", steps,
                                             torch.full((n,), label), model.cfg.guidance,
                                             torch.Generator().manual_seed(seed), model.cfg.n_classes)
    return [((s.clamp(-1, 1) + 1) / 2) for s in states]


@register("diffusion-trajectory", "From noise to a product", "§3.3 step 4, beyond the article", "08_diffusion",
          "Four sneakers of the shipped diffusion model: the state after each of 10 Euler steps, t = 1 to 0.")
def diffusion_trajectory() -> Figure:
    states = trajectory()
    times = diffusion.time_grid(len(states) - 1)
    rows = [torch.stack([s[i] for s in states]) for i in range(len(states[0]))]
    return plotting.labelled_rows(rows, [f"sample {i + 1}" for i in range(len(rows))],
                                  "x_t from t = 1 (noise) to t = 0", col_titles=[f"t={t:.1f}" for t in times])


@cache.computation("diffusion-vae-ceiling", "the ruler on the reconstructions of vae and of latent-diffusion's VAE")
def vae_ceiling_result() -> cache.Result:
    """FID, KID, precision and recall of the reconstructions (decoded posterior means) of the 10,000 test images
    (quick mode 1,000) by ``vae`` and by the VAE that ``latent-diffusion`` sits on: what a perfect prior over its
    posterior means could reach with its decoder, the ceiling of any second stage (section 11)."""
    x = data.to_float(data.load("test")[0][: config.budget(10_000, 1000)])
    out: dict[str, Any] = {"n": len(x)}
    for name in prior_hole_vaes():
        with config.one_thread():
            recon = checkpoints.load(name).reconstruct(x)
        report = ruler.generator_report(data.to_uint8(recon))
        out[name] = {k: report[k] for k in ("fid", "kid", "precision", "recall")}
    return out


@register("diffusion-latent", "The prior hole, filled", "§2.3, §3.2 step 8", "08_diffusion",
          "16 samples each: vae and vae-sharp decoding z ~ N(0, I), and vae-sharp's decoder fed by the flow prior.")
def diffusion_latent() -> Figure:
    gen = torch.Generator
    vaes = prior_hole_vaes()
    rows = [checkpoints.load(name).sample(16, gen().manual_seed(0)) for name in [*vaes, "latent-diffusion"]]
    labels = [f"{name}, z ~ N(0, I)" for name in vaes] + [f"latent-diffusion ({vaes[-1]}'s decoder)"]
    title = f"Rows {len(rows) - 1} and {len(rows)}: the same decoder, two priors"
    return plotting.labelled_rows(rows, labels, title, label_width=2.9)


def ring_field_figure(ring: flow_toy.Ring, net: torch.nn.Module, times: Sequence[float] = (0.9, 0.5, 0.2, 0.05),
                      paths: int = 32, steps: int = 20, seed: int = 0) -> Figure:
    """Chapter 01's ring with a velocity field: at each time the arrows show ``-v``, where a sample moves as ``t``
    falls, and the dots the samples then (Euler, ``steps`` steps); the last panel draws their whole paths."""
    with torch.no_grad():
        states = diffusion.sample_trajectory(net, (paths, 2), "flow", "euler", steps,
                                             generator=torch.Generator().manual_seed(seed))
    track = torch.stack(states).numpy()  # steps + 1 x paths x 2
    modes = ring.means.numpy()
    fig = new_figure(2.6 * (len(times) + 1), 2.8)
    axes = fig.subplots(1, len(times) + 1)
    for ax, t in zip(axes, times, strict=False):
        grid, v = flow_toy.field_on_grid(net, t)
        ax.quiver(grid[:, 0], grid[:, 1], -v[:, 0], -v[:, 1], color="0.55", width=0.004)
        here = track[round((1 - t) * steps)]
        ax.scatter(here[:, 0], here[:, 1], s=9, color="C0", zorder=3)
        ax.set_title(f"t = {t:g}: arrows -v")
    axes[-1].plot(track[:, :, 0], track[:, :, 1], color="C0", lw=0.7, alpha=0.7)
    axes[-1].scatter(track[0, :, 0], track[0, :, 1], s=7, color="0.5", label="x_1 (noise)")
    axes[-1].scatter(track[-1, :, 0], track[-1, :, 1], s=9, color="C0", label="x_0")
    axes[-1].set_title(f"paths, {steps} Euler steps")
    axes[-1].legend(loc="lower left", fontsize=7)
    for ax in axes:
        ax.scatter(modes[:, 0], modes[:, 1], marker="x", color="C3", s=30, zorder=4)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("A flow-matching velocity field learned on chapter 01's ring (x: the 8 modes)")
    return finish(fig)


@register("diffusion-ring-field", "A learned velocity field on chapter 01's ring",
          "§2.2 (chapter 01's ring), beyond the article", "08_diffusion",
          "A 3-layer MLP trained by flow matching on the ring of 8 Gaussians (seed 0, seconds); "
          "its field -v at four times and 32 Euler paths from noise to the ring.")
def diffusion_ring_field() -> Figure:
    ring = flow_toy.Ring.of()
    with config.one_thread():
        net = flow_toy.train_velocity(ring)[0]
    return ring_field_figure(ring, net)
