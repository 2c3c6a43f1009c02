"""Editing (chapter 05, §2.4 item 2, §3.3 step 4):
the figures of notebooks/05_*.ipynb and the plot helpers they draw with.

Every figure is registered in the catalogue (``python -m prodlab figures``); the notebook calls the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from prodlab import cache, config, data, edit, plotting, ruler
from prodlab.figures import register, register_variants
from prodlab.plotting import as_numpy, finish, new_figure, show_image

LEARNED = "#c44e52"  # methods with a generative prior
CLASSICAL = "#8c8c8c"  # filters, interpolation, fills


def method_scores(scores: Mapping[str, Mapping[str, float]], title: str, metric: str = "psnr",
                  learned: Sequence[str] = ("vae_inversion", "gan_inversion", "vae_encode_decode", "flow_sdedit",
                                            "flow_repaint")) -> Figure:
    """One panel per task: a horizontal bar per method (learned priors red, classical grey), the value written at the
    bar's end, the best method's bar outlined. ``scores``: task -> method -> value of ``metric``."""
    fig = new_figure(3.0 * len(scores), 0.35 * max(len(m) for m in scores.values()) + 1.3)
    axes = np.atleast_1d(fig.subplots(1, len(scores)))
    for ax, (task, methods) in zip(axes, scores.items(), strict=True):
        names, values = list(methods), [methods[m] for m in methods]
        bars = ax.barh(range(len(names)), values, color=[LEARNED if n in learned else CLASSICAL for n in names])
        bars[int(np.argmax(values))].set_edgecolor("black")
        bars[int(np.argmax(values))].set_linewidth(1.5)
        ax.bar_label(bars, fmt="%.1f" if metric == "psnr" else "%.2f", fontsize=7, padding=2)
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(values) * 0.9 if metric == "psnr" else 0, max(values) * 1.12)
        ax.set_title(task.replace("_", " "))
        ax.set_xlabel("PSNR (dB)" if metric == "psnr" else metric.upper())
    fig.suptitle(title)
    return finish(fig)


def interpolation(rows: Sequence[torch.Tensor], labels: Sequence[str], t: np.ndarray,
                  norms: Mapping[str, np.ndarray], typical_norm: float, title: str) -> Figure:
    """Interpolation strips (one row per path) above the norm of the latent code along each path."""
    fig = new_figure(0.8 * len(t) + 1.6, 0.8 * len(rows) + 2.8)
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.8 * len(rows) + 0.3, 2.2])
    axes = np.atleast_2d(top.subplots(len(rows), len(t)))
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        arr = as_numpy(row)
        for c in range(len(t)):
            show_image(axes[r, c], arr[c], f"t={t[c]:.2f}" if r == 0 else None)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    ax = bottom.subplots()
    for label, values in norms.items():
        ax.plot(np.linspace(0, 1, len(values)), values, label=label)
    ax.axhline(typical_norm, color="black", lw=0.8, ls=":", label=f"typical |z| = sqrt(d) = {typical_norm:.1f}")
    ax.set_xlabel("t (0: first product, 1: second)")
    ax.set_ylabel("|z| (mean over pairs)")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.suptitle(title)
    return finish(fig)


def property_profiles(reports: Sequence[Mapping], title: str) -> Figure:
    """The measured property (mean over held-out codes) at each step along each latent direction, one panel per
    property, one line per model; the legend gives the share of codes whose property is monotone."""
    props = list(dict.fromkeys(r["property"] for r in reports))
    fig = new_figure(3.2 * len(props), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(props)))
    for ax, prop in zip(axes, props, strict=True):
        mine = [r for r in reports if r["property"] == prop]
        for r in mine:
            ax.plot(r["steps"], r["mean"], marker="o", ms=3, label=f"{r['model']}: monotone {r['share_monotone']:.0%}")
        ax.set_title(f"{prop}: {mine[0]['label']}")
        ax.set_xlabel("step along the direction (within-class s.d.)")
        ax.set_ylabel(prop)
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    return finish(fig)



EDIT_SCORE_IMAGES = 200  # test images behind the editing tables of notebook 05 and the score chart (quick: 32)
DENOISE_SHOWN = {"gaussian": 0.3, "saltpepper": 0.1}  # the strengths shown in the image grids


def _class_titles(labels: torch.Tensor) -> list[str]:
    names = data.spec().class_names
    return [names[int(c)] for c in labels]


def enhancement_grid(task: str) -> Figure:
    """The showcase products, their degraded versions and every method's output, one row each."""
    x, labels = edit.showcase()
    level = DENOISE_SHOWN.get(task, 0.0)
    y, outputs = edit.enhancement_outputs(x, task, level)
    shown = torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest") if task == "superres" else y
    what = {"gaussian": f"Gaussian noise sigma {level}", "saltpepper": f"salt and pepper, {level:.0%} of pixels",
            "superres": "14 x 14 thumbnail (shown enlarged, nearest)"}[task]
    rows = [x, shown] + [v for k, v in outputs.items() if k != "noisy_input"]
    names = ["original", "degraded"] + [k.replace("_", " ") for k in outputs if k != "noisy_input"]
    psnrs = [""] * 2 + [f"  {float(edit.psnr(v, x).mean()):.1f} dB" for k, v in outputs.items() if k != "noisy_input"]
    return plotting.labelled_rows(rows, [n + p for n, p in zip(names, psnrs, strict=True)],
                               f"Enhancement: {what}; number: mean PSNR of the row", col_titles=_class_titles(labels),
                               label_width=2.2)


@register("edit-denoise", "Denoising: filters against generative priors", "§2.4 item 2 (增强), §3.3 step 4",
          "05_editing",
          "One test product per class with Gaussian noise (sigma 0.3), restored by filters, by latent optimisation "
          "in the shipped VAE and DCGAN, and by SDEdit with the shipped flow model.")
def edit_denoise() -> Figure:
    return enhancement_grid("gaussian")


@register("edit-saltpepper", "Removing salt-and-pepper noise", "§2.4 item 2 (增强), §3.3 step 4", "05_editing",
          "One test product per class with 10% of the pixels set to 0 or 1; median filter against the priors "
          "(started from the median-filtered image).")
def edit_saltpepper() -> Figure:
    return enhancement_grid("saltpepper")


@register("edit-superres", "Super-resolution 14 x 14 -> 28 x 28", "§2.4 item 2 (增强), §3.3 step 4", "05_editing",
          "2 x 2 average-pooled test products, upsampled by bicubic interpolation and by latent optimisation "
          "(the code whose decoding pools to the thumbnail).")
def edit_superres() -> Figure:
    return enhancement_grid("superres")


@cache.computation("edit-scores", "PSNR and SSIM of every editing method on the first 200 test images")
def edit_scores_result() -> cache.Result:
    """``edit.evaluate_editing`` on the first ``EDIT_SCORE_IMAGES`` test images (quick mode: 32); cached."""
    return edit.evaluate_editing(config.budget(EDIT_SCORE_IMAGES, 32))


@register("edit-scores", "Enhancement and restoration scores per method", "§2.4 item 2, §3.3 step 4", "05_editing",
          "Mean PSNR on the first 200 test images (quick 32): denoising (mean over 3 strengths), super-resolution, "
          "inpainting (PSNR of the missing pixels); the flow model (SDEdit, RePaint) only where it applies. "
          "`python -m prodlab evaluate edit --n 1000` gives the full table.")
def edit_scores(result: dict | None = None) -> Figure:
    result = result or edit_scores_result()
    tasks = {t: {m: v["psnr"] for m, v in result[t].items()} for t in edit.TASKS}
    return method_scores(tasks, f"Mean PSNR on {result['n']:,} test images (higher is better; red: generative "
                                      "prior, grey: classical; outlined: best)")


def inpainting_grid(kind: str) -> Figure:
    x, labels = edit.showcase()
    y, m, outputs = edit.inpainting_outputs(x, kind)
    rows = [x, edit.shown_masked(y, m)] + list(outputs.values())
    psnrs = [""] * 2 + [f"  {float(edit.psnr(v, x, m).mean()):.1f} dB" for v in outputs.values()]
    names = ["original", "masked (grey)"] + [k.replace("_", " ") for k in outputs]
    return plotting.labelled_rows(rows, [n + p for n, p in zip(names, psnrs, strict=True)],
                               f"Inpainting, mask '{kind}': number: mean PSNR of the missing pixels",
                               col_titles=_class_titles(labels), label_width=2.2)


register_variants(inpainting_grid, "§2.4 item 2 (修复), §3.3 step 4", "05_editing", {
    "center": ("edit-inpaint-center", "Inpainting a centre box",
               "One test product per class with its central 12 x 12 pixels missing, filled by mean fill, diffusion "
               "fill, latent optimisation on the visible pixels (VAE, DCGAN) and RePaint with the flow model."),
    "blocks": ("edit-inpaint-blocks", "Inpainting random blocks",
               "As edit-inpaint-center with four random 7 x 7 blocks missing (seed 0)."),
    "half": ("edit-inpaint-half", "Inpainting a missing half",
             "As edit-inpaint-center with the left (even images) or right half (odd images) missing."),
})


FLOW_SHOWN_MASKS = ("center", "half")  # the masks of the flow-prior figure


@register("edit-flow-prior", "The flow model as a prior: SDEdit and RePaint", "§2.4 item 2 (增强, 修复), §3.3 step 4",
          "05_editing", "One test product per class: Gaussian noise (sigma 0.3) removed by SDEdit, and a centre box "
          "and a missing half filled by RePaint, both with the shipped flow model (unconditional).")
def edit_flow_prior() -> Figure:
    """Noisy -> SDEdit and masked -> RePaint on the showcase products, the mean PSNR in each row's label (RePaint:
    of the missing pixels)."""
    x, labels = edit.showcase()
    sigma = DENOISE_SHOWN["gaussian"]
    y = edit.gaussian_noise(x, sigma)
    rows, names = [x, y, edit.sdedit(y, sigma)], ["original", f"noise sigma {sigma}", "SDEdit"]
    names[2] += f"  {float(edit.psnr(rows[2], x).mean()):.1f} dB"
    for kind in FLOW_SHOWN_MASKS:
        m = edit.missing_mask(kind, len(x))
        filled = edit.repaint(x.masked_fill(m, 0.0), m)
        rows += [edit.shown_masked(x.masked_fill(m, 0.0), m), filled]
        names += [f"missing {kind} (grey)", f"RePaint  {float(edit.psnr(filled, x, m).mean()):.1f} dB"]
    return plotting.labelled_rows(rows, names, "The flow model as a prior (unconditional): SDEdit denoises from t*, "
                                  "RePaint samples around the visible pixels", col_titles=_class_titles(labels),
                                  label_width=2.2)


INTERPOLATION_PAIRS = 500  # random code pairs behind the norm curves


@register("edit-interpolation", "Interpolating between two products: linear against spherical", "§2.4 item 2 (个性化)",
          "05_editing", "DCGAN codes (seed 3): two pairs decoded along the straight line and the great circle; "
          "below, |z| along both paths averaged over 500 random pairs.")
def edit_interpolation() -> Figure:
    gan = edit.shipped("dcgan")
    z = gan.noise(4, torch.Generator().manual_seed(3))
    t = torch.linspace(0, 1, 9)
    rows, labels = [], []
    for i, (a, b) in enumerate([(0, 1), (2, 3)]):
        for spherical in (False, True):
            rows.append(gan.render(edit.interpolate(z[a], z[b], len(t), spherical)))
            labels.append(f"pair {i + 1}, {'slerp' if spherical else 'linear'}")
    pairs = gan.noise(2 * INTERPOLATION_PAIRS, torch.Generator().manual_seed(4)).reshape(2, INTERPOLATION_PAIRS, -1)
    norms = {name: torch.stack([edit.interpolate(a, b, 21, spherical).norm(dim=1) for a, b in zip(*pairs, strict=True)])
             .mean(0).numpy() for name, spherical in (("linear", False), ("spherical", True))}
    return interpolation(rows, labels, t.numpy(), norms, gan.cfg.latent_dim ** 0.5,
                               "Interpolation in the DCGAN's 64-d latent space:\nthe straight line cuts through the "
                               "middle, where codes are rare; the great circle stays where they live")


@register("edit-class-transfer", "Class transfer: the same code as every class", "§2.4 item 2 (个性化)", "05_editing",
          "Conditional DCGAN: five codes (seed 5), each drawn with all ten class labels.")
def edit_class_transfer() -> Figure:
    gan = edit.shipped("cdcgan")
    images = edit.class_transfer(gan, gan.noise(5, torch.Generator().manual_seed(5)))
    return plotting.labelled_rows(list(images), [f"code {i + 1}" for i in range(len(images))],
                               "Same z, other class: the code keeps pose, size and brightness, the label changes",
                               col_titles=list(gan.cfg.image.class_names))


DIRECTION_SHOWN = {"brightness": (4, 2), "width": (3, 6), "pattern": (0, 8)}  # two classes shown per property


def direction_strips(name: str) -> Figure:
    rows, labels = [], []
    x, classes = edit.showcase(10)
    for prop, classes in DIRECTION_SHOWN.items():
        for c in classes:
            if name == "vae":
                rows.append(edit.edit_real(x[c], prop))
            else:
                gan = edit.shipped("cdcgan")
                z = gan.noise(1, torch.Generator().manual_seed(c))
                rows.append(edit.walk("cdcgan", z, edit.direction("cdcgan", prop), edit.STEPS,
                                      torch.tensor([c]))[0])
            labels.append(f"{prop}, {data.spec().class_names[c]}")
    what = "real test products, encoded" if name == "vae" else "generated products"
    return plotting.labelled_rows(rows, labels, f"Latent directions of the {name.upper()} ({what})\nleft to right: "
                               + ", ".join(v[1] for v in edit.PROPERTIES.values()),
                               col_titles=[f"{t:+.1f}" for t in edit.STEPS.tolist()], label_width=1.8)


register_variants(direction_strips, "§2.4 item 2 (个性化)", "05_editing", {
    "vae": ("edit-directions-vae", "Editing real products along latent directions (VAE)",
            "Test products encoded by the VAE, moved along the within-class covariance direction of each property "
            "(steps in within-class standard deviations), decoded."),
    "cdcgan": ("edit-directions-cdcgan", "Latent directions of the conditional GAN",
               "Conditional DCGAN codes (seeds = class) moved along each property's direction, same class label."),
})


@cache.computation("edit-directions", "each latent direction measured on 200 held-out codes per model")
def direction_reports() -> cache.Result:
    """``edit.direction_report`` for every model and property (200 held-out codes; quick mode 50); cached."""
    return {"reports": [edit.direction_report(m, p, n=config.budget(200, 50))
                        for m in edit.DIRECTION_MODELS for p in edit.PROPERTIES]}


@register("edit-direction-profiles", "Do the directions do what their names say?", "§2.4 item 2 (个性化)", "05_editing",
          "Each property measured along each direction, mean over 200 held-out codes (quick 50; seed 1).")
def edit_direction_profiles(reports: list | None = None) -> Figure:
    reports = reports or direction_reports()["reports"]
    return property_profiles(reports, "The measured property along each latent direction (legend: share of "
                                   "codes for which it rises at every step)")


INVENTED_IMAGES = 200  # half-masked test images behind the "invented product" count (quick mode: 64)


@cache.computation("edit-invented", "how often inpainting a missing half changes the product's class (200 images)")
def invented_result() -> cache.Result:
    """Half-masked inpainting of the first ``INVENTED_IMAGES`` test images (quick 64): the share of restorations whose
    class (by the ruler) differs from the original's, per method, and the first eight changed by the VAE; cached."""
    x = edit.test_images(config.budget(INVENTED_IMAGES, 64))
    y, m, outputs = edit.inpainting_outputs(x, "half")
    changed = {method: edit.invented(x, restored) for method, restored in outputs.items()}
    wrong = torch.nonzero(changed["vae_inversion"]).flatten()[:8]
    r = ruler.load()
    restored = outputs["vae_inversion"][wrong]
    return {"n": len(x), "share_changed": {k: float(v.float().mean()) for k, v in changed.items()},
            "changed_vae": int(changed["vae_inversion"].sum()), "original": x[wrong],
            "masked": edit.shown_masked(y[wrong], m[wrong]), "restored": restored,
            "before": r.predict(r.features(x[wrong])), "after": r.predict(r.features(restored))}


@register("edit-inpaint-invented", "Where the prior invents another product", "§2.4 item 2 (修复)", "05_editing",
          "Half-masked test products (first 200; quick 64) whose VAE inpainting the classifier puts in another class "
          "than the original: the first eight.")
def edit_inpaint_invented(result: dict | None = None) -> Figure:
    result = result or invented_result()
    names = data.spec().class_names
    return plotting.labelled_rows(
        [result["original"], result["masked"], result["restored"]], ["original", "masked (grey)", "VAE inpainting"],
        f"The prior fills the hole with a plausible product, not always this one: {len(result['original'])} of "
        f"{result['changed_vae']} changed products\n(of {result['n']}); titles: the classifier's class before → after",
        col_titles=[f"{names[int(a)]}\n→ {names[int(b)]}"
                    for a, b in zip(result["before"], result["after"], strict=True)], label_width=1.6)


@cache.computation("edit-directions-dcgan", "the unconditional DCGAN's latent directions on 200 held-out codes")
def dcgan_direction_reports() -> cache.Result:
    """``edit.direction_report`` of the shipped, unconditional dcgan for every property (200 held-out codes; quick
    50): the comparison that shows why it offers no sliders (notebook 05, §4.3); cached."""
    return {"reports": [edit.direction_report("dcgan", p, n=config.budget(200, 50)) for p in edit.PROPERTIES]}
