"""Measuring enhancement and restoration (chapter 05): PSNR and SSIM of every method at every noise level and mask,
the tuned classical filters, and ``python -m prodlab evaluate edit``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from prodlab import config, data, ruler
from prodlab.degrade import MASKS, downsample, gaussian_noise, missing_mask, salt_and_pepper
from prodlab.edit import diffusion_prior, rank
from prodlab.edit.restore import (
    INVERSION,
    QUICK_INVERSION,
    bicubic,
    denoise,
    diffusion_fill,
    gaussian_filter,
    inpaint,
    mean_fill,
    median_filter,
    prior,
    shipped,
    superresolve,
)


def psnr(x: Tensor, target: Tensor, region: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio per image in dB (peak 1): ``10 log10(1 / MSE)``, the MSE over ``region`` (a
    bool mask, e.g. the missing pixels: N x C x H x W, or N x 1 x H x W for all channels) or the whole image. Per
    image, then averaged by the caller.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    w = torch.ones_like(target) if region is None else region.to(target.dtype).expand_as(target)
    mse = ((x - target).pow(2) * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(x: Tensor, target: Tensor) -> Tensor:
    """Structural similarity per image (Wang et al. 2004; Gaussian window 11, sigma 1.5, data range 1).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure  # seconds to import: on first use

    return structural_similarity_index_measure(x, target, data_range=1.0, reduction="none")


def test_images(n: int) -> Tensor:
    """The first ``n`` test images as floats N x C x H x W (the evaluation set of the tables).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return data.to_float(data.load("test")[0][:n])


def showcase(n: int = 8) -> tuple[Tensor, Tensor]:
    """Test images to look at: the first test image of each class (classes 0, 1, ... up to ``n``), with labels.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    images, labels = data.showcase()
    return data.to_float(images[:n]), labels[:n]


def shown_masked(y: Tensor, missing: Tensor, level: float = 0.5) -> Tensor:
    """A masked input for display: the missing pixels grey (as stored they are black, like the background).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return y.masked_fill(missing, level)


NOISE_LEVELS: dict[str, tuple[float, ...]] = {"gaussian": (0.1, 0.2, 0.3), "saltpepper": (0.05, 0.1, 0.2)}
NOISES = {"gaussian": gaussian_noise, "saltpepper": salt_and_pepper}
TASKS = ("denoise_gaussian", "denoise_saltpepper", "superres", "inpaint_center", "inpaint_blocks", "inpaint_half")


FILTER_GRID = {"gaussian": (0.5, 0.7, 1.0, 1.5), "median": (3, 5)}  # sigma in pixels; window size
VALIDATION_IMAGES = 200  # the last test images: where the filters are tuned, never in the tables (the first ones)


@functools.cache
def tuned_filter(kind: str, noise: str, level: float, seed: int = 0) -> float:
    """The classical filter's setting (Gaussian sigma or median window) with the best mean PSNR on the last
    ``VALIDATION_IMAGES`` test images under this noise: a baseline tuned as carefully as the priors' settings.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    x = data.to_float(data.load("test")[0][-VALIDATION_IMAGES:])
    y = NOISES[noise](x, level, seed + 1)
    apply = gaussian_filter if kind == "gaussian" else (lambda t, v: median_filter(t, int(v)))
    return max(FILTER_GRID[kind], key=lambda v: float(psnr(apply(y, v), x).mean()))


def crossover(levels: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float | None:
    """The first level at which method ``a`` stops beating method ``b``: where ``a - b`` (e.g. PSNR of the median
    filter minus PSNR of the VAE, one value per noise level) changes sign from > 0 to <= 0, linearly interpolated
    between the two levels around it; ``None`` if ``a`` beats ``b`` nowhere or everywhere on the grid.

    Chapter 05 (notebooks/05_editing.ipynb), exercise 05.2.
    """
    gap = [float(u) - float(v) for u, v in zip(a, b, strict=True)]
    for i in range(1, len(gap)):
        if gap[i - 1] > 0 >= gap[i]:
            return float(levels[i - 1] + (levels[i] - levels[i - 1]) * gap[i - 1] / (gap[i - 1] - gap[i]))
    return None


def enhancement_outputs(x: Tensor, task: str, level: float, seed: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """The degraded input and every method's output for one enhancement task at one strength.

    ``task``: ``"gaussian"`` or ``"saltpepper"`` (denoising, ``level`` = sigma or share of pixels) or ``"superres"``
    (``level`` ignored). Methods: classical baselines, the shipped VAE / DCGAN as priors, and for Gaussian noise
    SDEdit with the shipped flow model (``diffusion_prior.sdedit``).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    vae, gan = prior("vae"), prior("dcgan")
    if task == "superres":
        y = downsample(x)
        return y, {"bicubic": bicubic(y), "vae_inversion": superresolve(vae, y), "gan_inversion": superresolve(gan, y)}
    y = NOISES[task](x, level, seed)
    impulse = task == "saltpepper"
    outputs = {
        "noisy_input": y, "gaussian_filter": gaussian_filter(y, tuned_filter("gaussian", task, level, seed)),
        "median_filter": median_filter(y, int(tuned_filter("median", task, level, seed))),
        "vae_encode_decode": shipped("vae").reconstruct(y),
        "vae_inversion": denoise(vae, y, median_first=impulse), "gan_inversion": denoise(gan, y, median_first=impulse),
    }
    if task == "gaussian":  # SDEdit assumes Gaussian noise; salt and pepper is not on the flow's path
        outputs["flow_sdedit"] = diffusion_prior.sdedit(y, level)
    return y, outputs


def inpainting_outputs(x: Tensor, kind: str, seed: int = 0) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The masked input (missing pixels shown black), the mask and every method's restoration: mean and diffusion
    fill, VAE and DCGAN inversion, RePaint with the shipped flow model (``diffusion_prior.repaint``).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    m = missing_mask(kind, len(x), seed, image=shipped("vae").cfg.image)  # the images the priors restore
    y = x.masked_fill(m, 0.0)
    return y, m, {"mean_fill": mean_fill(y, m), "diffusion_fill": diffusion_fill(y, m),
                  "vae_inversion": inpaint(prior("vae"), y, m), "gan_inversion": inpaint(prior("dcgan"), y, m),
                  "flow_repaint": diffusion_prior.repaint(y, m)}


@torch.no_grad()
def invented(x: Tensor, restored: Tensor) -> Tensor:
    """Where a restoration changed the product: the ruler's class of the restored image differs from its class of
    the original (bool per image). The learned prior fills a hole with *a* plausible product, not necessarily this
    one.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    r = ruler.load()
    return r.predict(r.features(restored)) != r.predict(r.features(x))


def _scores(outputs: dict[str, Tensor], x: Tensor, psnrs: dict[str, Tensor],
            with_ssim: bool = True) -> dict[str, dict[str, float]]:
    """Each method's mean PSNR (from its per-image ``psnrs``) and, ``with_ssim``, mean SSIM against ``x``."""
    out = {}
    for method, xhat in outputs.items():
        row = {"psnr": round(float(psnrs[method].mean()), 3)}
        if with_ssim:
            row["ssim"] = round(float(ssim(xhat, x).mean()), 4)
        out[method] = row
    return out


def evaluate_editing(n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The enhancement and restoration tables on the first ``n`` test images (``python -m prodlab evaluate edit``).

    Returns ``{task: {method: {"psnr", "ssim"}}}`` for ``denoise_gaussian``, ``denoise_saltpepper``
    (means over the strengths in ``NOISE_LEVELS``, with ``by_level`` per strength), ``superres`` and
    ``inpaint_center|blocks|half`` (PSNR over the missing pixels only; SSIM does not apply to a region), and
    ``rankings``: every setting (each strength apart) ranked by PSNR and in both rulers' feature spaces, with
    paired bootstrap intervals (``edit.rank``).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    config.seed_everything(seed)
    x = test_images(n)
    settings = QUICK_INVERSION if config.quick() else INVERSION
    result: dict[str, Any] = {"n": n, "seed": seed, "inversion": {k: asdict(v) for k, v in settings.items()},
                              "flow": diffusion_prior.settings()}
    spaces, rankings = rank.rulers(), {}

    def scored(setting: str, outputs: dict[str, Tensor], with_ssim: bool = True,
               region: Tensor | None = None) -> dict[str, dict[str, float]]:
        per_image = {m: psnr(out, x, region) for m, out in outputs.items()}
        rankings[setting] = rank.rank_setting(outputs, per_image, x, spaces, seed)
        return _scores(outputs, x, per_image, with_ssim)

    for noise, levels in NOISE_LEVELS.items():
        per_level = {lv: scored(f"{noise} {lv:g}", enhancement_outputs(x, noise, lv, seed)[1]) for lv in levels}
        methods = next(iter(per_level.values()))
        result[f"denoise_{noise}"] = {
            m: {k: round(sum(per_level[lv][m][k] for lv in levels) / len(levels), 4) for k in ("psnr", "ssim")}
            | {"by_level": {str(lv): per_level[lv][m] for lv in levels}} for m in methods}
    result["superres"] = scored("superres", enhancement_outputs(x, "superres", 0.0, seed)[1])
    for kind in MASKS:
        _, m, outputs = inpainting_outputs(x, kind, seed)
        result[f"inpaint_{kind}"] = scored(f"inpaint {kind}", outputs, with_ssim=False, region=m)
    return {**result, "rankings": rankings}


def format_table(result: dict[str, Any]) -> str:
    """The tables of :func:`evaluate_editing` as Markdown: one row per method, PSNR (SSIM) per task; the best
    method of each task in bold.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    methods = list(dict.fromkeys(m for t in TASKS for m in result[t]))
    lines = [f"Editing on the first {result['n']:,} test images: mean PSNR in dB (SSIM); inpainting: PSNR of the "
             "missing pixels. Denoising: mean over the strengths " + ", ".join(
                 f"{k} {list(v)}" for k, v in NOISE_LEVELS.items()) + ".", "",
             "| method | " + " | ".join(t.replace("_", " ") for t in TASKS) + " |",
             "|---|" + "---:|" * len(TASKS)]
    best = {t: max(result[t].values(), key=lambda v: v["psnr"])["psnr"] for t in TASKS}
    for m in methods:
        cells = []
        for t in TASKS:
            v = result[t].get(m)
            if v is None:
                cells.append("–")
                continue
            text = f"{v['psnr']:.2f}" + (f" ({v['ssim']:.3f})" if "ssim" in v else "")
            cells.append(f"**{text}**" if v["psnr"] == best[t] else text)
        lines.append(f"| {m.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
