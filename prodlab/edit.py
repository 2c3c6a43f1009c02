"""Editing product images with the trained models (article §2.4 "image editing", §3.3 step 4).

The article promises three edits; each is an *inverse problem*: we observe ``y = A(x) + noise`` for an unknown
product ``x`` and a known degradation ``A``, and want ``x`` back.

* Enhancement (增强): denoising (``A`` = identity, Gaussian or salt-and-pepper noise) and super-resolution
  (``A`` = 2 x 2 average pooling, 28 -> 14 pixels).
* Restoration (修复): inpainting (``A`` = keep the visible pixels, a mask hides the rest).
* Personalised edits (个性化编辑): move a product's latent code (interpolation, class transfer, property
  directions) and decode it.

A classical method knows only smoothness (filters, bicubic, diffusion fill). A generative model knows what
products look like: it restricts ``x`` to its decodings ``x = dec(z)``, and *latent optimisation* finds the code
that explains the observation (Bora et al. 2017, "Compressed sensing using generative models")::

    z* = argmin_z  mean over observed pixels of (A(dec(z)) - y)^2  +  prior_weight * ||z||^2 / latent_dim

The second term is ``-log p(z)`` of the N(0, I) prior of both the VAE (§3.2) and the GAN (§3.1), up to scale:
it keeps ``z`` where the decoder was trained, so the answer is a *plausible* product. It can also be a wrong
product that fits the visible pixels: the notebook shows where the prior invents.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from prodlab import checkpoints, config, data, imageio, metrics
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models

# ---------------------------------------------------------------- user images


def product_image(source: str | Path | Image.Image | Tensor) -> Tensor:
    """Any image as a product the models can edit: float 1 x 28 x 28 in [0, 1], product bright on black.

    A tensor (28 x 28, 1 x 28 x 28; uint8 or float in [0, 1]) is taken as a catalogue image. A path or PIL image
    of any size and mode (RGB, RGBA, L, P; light or dark background) goes through ``imageio.to_product_image``:
    grey, Fashion-MNIST polarity, product cropped and centred. A file that is not an image raises
    ``imageio.ImageError`` naming it.
    """
    if isinstance(source, Tensor):
        return metrics.as_images(source.reshape(-1, 28, 28))[0]
    return imageio.to_product_image(source)


# ---------------------------------------------------------------- degradations (the forward operators A)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``y = clamp(x + sigma * eps)``, eps ~ N(0, 1) per pixel: sensor noise of a poor photo."""
    return (x + sigma * torch.randn(x.shape, generator=_generator(seed))).clamp(0.0, 1.0)


def salt_and_pepper(x: Tensor, amount: float, seed: int = 0) -> Tensor:
    """A share ``amount`` of the pixels set to 0 or 1 (half each): dead and hot pixels, dust, scan defects."""
    u = torch.rand(x.shape, generator=_generator(seed))
    y = x.clone()
    y[u < amount / 2] = 0.0
    y[(u >= amount / 2) & (u < amount)] = 1.0
    return y


def downsample(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling ``factor`` x ``factor``: what a low-resolution thumbnail (14 x 14) records of a product."""
    return F.avg_pool2d(x, factor)


MASKS = ("center", "blocks", "half")


def missing_mask(kind: str, n: int, seed: int = 0) -> Tensor:
    """Bool N x 1 x 28 x 28, True where a pixel is missing (to be restored).

    ``center``: the central 12 x 12 box (a sticker or watermark over the product); ``blocks``: four random
    7 x 7 blocks (torn or scratched areas); ``half``: the left half for even images, the right half for odd ones
    (a cropped photo).
    """
    m = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    if kind == "center":
        m[..., 8:20, 8:20] = True
    elif kind == "blocks":
        corners = torch.randint(0, 22, (n, 4, 2), generator=_generator(seed))
        for i in range(n):
            for top, left in corners[i].tolist():
                m[i, :, top : top + 7, left : left + 7] = True
    elif kind == "half":
        m[0::2, ..., :14] = True
        m[1::2, ..., 14:] = True
    else:
        raise ValueError(f"unknown mask {kind!r}; known: {', '.join(MASKS)}")
    return m


def box_mask(top: int, bottom: int, left: int, right: int, n: int = 1) -> Tensor:
    """A rectangle of missing pixels, rows ``top:bottom`` and columns ``left:right`` (the widget's range sliders)."""
    m = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    m[..., max(top, 0) : min(bottom, 28), max(left, 0) : min(right, 28)] = True
    return m


# ---------------------------------------------------------------- classical baselines


def gaussian_filter(y: Tensor, sigma: float = 1.0) -> Tensor:
    """Gaussian smoothing (kernel 2*ceil(2 sigma)+1): averages noise away, and edges with it."""
    size = 2 * math.ceil(2 * sigma) + 1
    return TF.gaussian_blur(y, kernel_size=[size, size], sigma=[sigma, sigma])


def median_filter(y: Tensor, size: int = 3) -> Tensor:
    """Median of each ``size`` x ``size`` neighbourhood (reflect padding): the classical cure for salt and pepper."""
    pad = size // 2
    patches = F.unfold(F.pad(y, (pad, pad, pad, pad), mode="reflect"), size)  # N x size^2 x 784
    return patches.median(dim=1).values.reshape(y.shape)


def bicubic(y: Tensor, size: int = 28) -> Tensor:
    """Bicubic upsampling to ``size`` x ``size``, clamped to [0, 1]."""
    return F.interpolate(y, size=(size, size), mode="bicubic", align_corners=False).clamp(0.0, 1.0)


@functools.cache
def mean_image() -> Tensor:
    """The average training product, 1 x 1 x 28 x 28: the best fill that ignores the visible pixels."""
    return data.to_float(data.load("train")[0]).mean(0, keepdim=True)


def mean_fill(y: Tensor, missing: Tensor) -> Tensor:
    """Fill missing pixels with the average training product at those pixels."""
    return torch.where(missing, mean_image().expand_as(y), y)


def diffusion_fill(y: Tensor, missing: Tensor, iterations: int = 400) -> Tensor:
    """Harmonic inpainting: missing pixels relax to the average of their four neighbours (Laplace's equation with
    the visible pixels as boundary values) by Jacobi iteration; the classical "diffuse the border inwards" fill."""
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).reshape(1, 1, 3, 3)
    x = mean_fill(y, missing)
    for _ in range(iterations):
        x = torch.where(missing, F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel), y)
    return x


# ---------------------------------------------------------------- learned priors and latent optimisation


@dataclass(frozen=True)
class InversionConfig:
    """Latent optimisation settings (Adam on ``z``)."""

    steps: int = 60
    lr: float = 0.1
    prior_weight: float = 0.002  # weight of ||z||^2 / latent_dim against the mean squared error over observed pixels
    restarts: int = 1  # random codes tried per image, the best fit starting the optimisation (GAN: no encoder)


# Measured on 200 test images (centre inpainting, sigma-0.3 denoising): the VAE converges in 60 steps; the GAN
# needs about 100 steps and a good random start (100 steps and 8 restarts lose 0.1 dB to 150 and 16, and take
# two thirds of the time).
INVERSION = {"vae": InversionConfig(), "dcgan": InversionConfig(steps=100, restarts=8)}
QUICK_INVERSION = {"vae": InversionConfig(steps=20), "dcgan": InversionConfig(steps=30, restarts=4)}


@dataclass(frozen=True)
class Prior:
    """A decoder ``z -> image in [0, 1]``, how to pick a starting code for an observation, and the settings."""

    name: str
    decode: Callable[[Tensor], Tensor]
    start: Callable[[Tensor, Callable[[Tensor], Tensor], Tensor], Tensor]  # (classical guess, A, y) -> z0
    cfg: InversionConfig


def vae_prior(model: vae_models.VAE, cfg: InversionConfig = InversionConfig()) -> Prior:
    """The VAE as a prior: start from the encoder's mean of a classical first guess (amortised inversion, §3.2)."""
    model.eval().requires_grad_(False)

    def start(guess: Tensor, forward: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
        return model.embed(guess)

    return Prior("VAE", model.decode, start, cfg)


def gan_prior(model: gan_models.GAN, cfg: InversionConfig = InversionConfig(), seed: int = 0) -> Prior:
    """The GAN generator as a prior (GAN inversion): it has no encoder, so the optimisation starts from the best of
    ``cfg.restarts`` random codes, judged by how well their images fit the observation."""
    model.eval().requires_grad_(False)
    g = model.generator

    def decode(z: Tensor) -> Tensor:
        return data.denormalize(g(z, None))

    @torch.no_grad()
    def start(guess: Tensor, forward: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
        gen = _generator(seed)
        best_z = torch.randn(len(y), model.cfg.latent_dim, generator=gen)
        best_err = (forward(decode(best_z)) - y).pow(2).flatten(1).mean(1)
        for _ in range(cfg.restarts - 1):
            z = torch.randn(len(y), model.cfg.latent_dim, generator=gen)
            err = (forward(decode(z)) - y).pow(2).flatten(1).mean(1)
            better = err < best_err
            best_z[better], best_err[better] = z[better], err[better]
        return best_z

    return Prior("GAN", decode, start, cfg)


@functools.cache
def shipped(name: str) -> torch.nn.Module:
    """A shipped checkpoint (``"vae"``, ``"dcgan"``, ``"cdcgan"``), loaded once per process, eval mode."""
    return checkpoints.load(name)


def prior(name: str) -> Prior:
    """The shipped ``"vae"`` or ``"dcgan"`` as a prior, with its measured inversion settings (quick mode: fewer)."""
    cfg = (QUICK_INVERSION if config.quick() else INVERSION)[name]
    model = shipped(name)
    return vae_prior(model, cfg) if isinstance(model, vae_models.VAE) else gan_prior(model, cfg)


def invert(p: Prior, y: Tensor, forward: Callable[[Tensor], Tensor], guess: Tensor,
           observed: Tensor | None = None) -> Tensor:
    """The code ``z*`` whose decoding explains ``y = forward(x)`` (the objective in the module docstring).

    ``guess``: a classical estimate of ``x`` (N x 1 x 28 x 28) the VAE encodes to start from; ``observed``: a
    mask of the pixels of ``y`` that count (None: all). Deterministic for a given prior and input.
    """
    weight = torch.ones_like(y) if observed is None else observed.to(y.dtype)
    count = weight.flatten(1).sum(1).clamp_min(1.0)
    with torch.no_grad():
        z = p.start(guess, forward, y).clone()
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=p.cfg.lr)
    for _ in range(p.cfg.steps):
        fit = ((forward(p.decode(z)) - y).pow(2) * weight).flatten(1).sum(1) / count
        loss = (fit + p.cfg.prior_weight * z.pow(2).mean(1)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return z.detach()


@torch.no_grad()
def decode(p: Prior, z: Tensor) -> Tensor:
    """Decoded images in [0, 1], N x 1 x 28 x 28."""
    return p.decode(z).clamp(0.0, 1.0)


def _batched(fn: Callable[..., Tensor], *tensors: Tensor, batch_size: int = 500) -> Tensor:
    n = len(tensors[0])
    return torch.cat([fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)])


def denoise(p: Prior, y: Tensor, median_first: bool = False) -> Tensor:
    """Denoise by projecting onto the model's products: ``dec(z*)`` with ``A`` = identity.

    ``median_first``: start from (and fit) the median-filtered image, for impulse noise whose 0/1 outliers would
    otherwise pull the squared error.
    """
    target = median_filter(y) if median_first else y
    return _batched(lambda t: decode(p, invert(p, t, _identity, t)), target)


def _identity(x: Tensor) -> Tensor:
    return x


def superresolve(p: Prior, y_small: Tensor) -> Tensor:
    """28 x 28 from 14 x 14: the product whose 2 x 2 averages match ``y_small`` (start: bicubic upsampling)."""
    return _batched(lambda t: decode(p, invert(p, t, downsample, bicubic(t))), y_small)


def inpaint(p: Prior, y: Tensor, missing: Tensor) -> Tensor:
    """Fill the missing pixels with those of ``dec(z*)``, ``z*`` fitted to the visible pixels only; the visible
    pixels are kept as observed (start: the diffusion fill)."""

    def one(t: Tensor, m: Tensor) -> Tensor:
        z = invert(p, t, _identity, diffusion_fill(t, m), observed=~m)
        return torch.where(m, decode(p, z), t)

    return _batched(one, y, missing)


# ---------------------------------------------------------------- measuring


def psnr(x: Tensor, target: Tensor, region: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio per image in dB (peak 1): ``10 log10(1 / MSE)``, the MSE over ``region`` (a
    bool mask, e.g. the missing pixels) or the whole image. Per image, then averaged by the caller."""
    w = torch.ones_like(target) if region is None else region.to(target.dtype)
    mse = ((x - target).pow(2) * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(x: Tensor, target: Tensor) -> Tensor:
    """Structural similarity per image (Wang et al. 2004; Gaussian window 11, sigma 1.5, data range 1)."""
    return structural_similarity_index_measure(x, target, data_range=1.0, reduction="none")


def test_images(n: int) -> Tensor:
    """The first ``n`` test images as floats N x 1 x 28 x 28 (the evaluation set of the tables)."""
    return data.to_float(data.load("test")[0][:n])


def showcase(n: int = 8) -> tuple[Tensor, Tensor]:
    """Test images to look at: the first test image of each class (classes 0, 1, ... up to ``n``), with labels."""
    images, labels = data.load("test")
    ids = torch.stack([torch.nonzero(labels == c)[0, 0] for c in range(min(n, len(data.CLASS_NAMES)))])
    return data.to_float(images[ids]), labels[ids]


def shown_masked(y: Tensor, missing: Tensor, level: float = 0.5) -> Tensor:
    """A masked input for display: the missing pixels grey (as stored they are black, like the background)."""
    return y.masked_fill(missing, level)


NOISE_LEVELS: dict[str, tuple[float, ...]] = {"gaussian": (0.1, 0.2, 0.3), "saltpepper": (0.05, 0.1, 0.2)}
NOISES = {"gaussian": gaussian_noise, "saltpepper": salt_and_pepper}
TASKS = ("denoise_gaussian", "denoise_saltpepper", "superres", "inpaint_center", "inpaint_blocks", "inpaint_half")


FILTER_GRID = {"gaussian": (0.5, 0.7, 1.0, 1.5), "median": (3, 5)}  # sigma in pixels; window size
VALIDATION_IMAGES = 200  # the last test images: where the filters are tuned, never in the tables (the first ones)


@functools.cache
def tuned_filter(kind: str, noise: str, level: float, seed: int = 0) -> float:
    """The classical filter's setting (Gaussian sigma or median window) with the best mean PSNR on the last
    ``VALIDATION_IMAGES`` test images under this noise: a baseline tuned as carefully as the priors' settings."""
    x = data.to_float(data.load("test")[0][-VALIDATION_IMAGES:])
    y = NOISES[noise](x, level, seed + 1)
    apply = gaussian_filter if kind == "gaussian" else (lambda t, v: median_filter(t, int(v)))
    return max(FILTER_GRID[kind], key=lambda v: float(psnr(apply(y, v), x).mean()))


def enhancement_outputs(x: Tensor, task: str, level: float, seed: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """The degraded input and every method's output for one enhancement task at one strength.

    ``task``: ``"gaussian"`` or ``"saltpepper"`` (denoising, ``level`` = sigma or share of pixels) or ``"superres"``
    (``level`` ignored). Methods: classical baselines and the shipped VAE / DCGAN as priors.
    """
    vae, gan = prior("vae"), prior("dcgan")
    if task == "superres":
        y = downsample(x)
        return y, {"bicubic": bicubic(y), "vae_inversion": superresolve(vae, y), "gan_inversion": superresolve(gan, y)}
    y = NOISES[task](x, level, seed)
    impulse = task == "saltpepper"
    return y, {
        "noisy_input": y, "gaussian_filter": gaussian_filter(y, tuned_filter("gaussian", task, level, seed)),
        "median_filter": median_filter(y, int(tuned_filter("median", task, level, seed))),
        "vae_encode_decode": shipped("vae").reconstruct(y),
        "vae_inversion": denoise(vae, y, median_first=impulse), "gan_inversion": denoise(gan, y, median_first=impulse),
    }


def inpainting_outputs(x: Tensor, kind: str, seed: int = 0) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The masked input (missing pixels shown black), the mask and every method's restoration."""
    m = missing_mask(kind, len(x), seed)
    y = x.masked_fill(m, 0.0)
    return y, m, {"mean_fill": mean_fill(y, m), "diffusion_fill": diffusion_fill(y, m),
                  "vae_inversion": inpaint(prior("vae"), y, m), "gan_inversion": inpaint(prior("dcgan"), y, m)}


@torch.no_grad()
def invented(x: Tensor, restored: Tensor) -> Tensor:
    """Where a restoration changed the product: the ruler's class of the restored image differs from its class of
    the original (bool per image). The learned prior fills a hole with *a* plausible product, not necessarily this
    one."""
    r = metrics.ruler()
    return r.predict(r.features(restored)) != r.predict(r.features(x))


def _scores(outputs: dict[str, Tensor], x: Tensor, with_ssim: bool = True,
            region: Tensor | None = None) -> dict[str, dict[str, float]]:
    out = {}
    for method, xhat in outputs.items():
        row = {"psnr": round(float(psnr(xhat, x, region).mean()), 3)}
        if with_ssim:
            row["ssim"] = round(float(ssim(xhat, x).mean()), 4)
        out[method] = row
    return out


def evaluate_editing(n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The enhancement and restoration tables on the first ``n`` test images (``python -m prodlab evaluate edit``).

    Returns ``{task: {method: {"psnr", "ssim"}}}`` for ``denoise_gaussian``, ``denoise_saltpepper``
    (means over the strengths in ``NOISE_LEVELS``, with ``by_level`` per strength), ``superres`` and
    ``inpaint_center|blocks|half`` (PSNR over the missing pixels only; SSIM does not apply to a region).
    """
    config.seed_everything(seed)
    x = test_images(n)
    settings = QUICK_INVERSION if config.quick() else INVERSION
    result: dict[str, Any] = {"n": n, "seed": seed, "inversion": {k: asdict(v) for k, v in settings.items()}}
    for noise, levels in NOISE_LEVELS.items():
        per_level = {lv: _scores(enhancement_outputs(x, noise, lv, seed)[1], x) for lv in levels}
        methods = next(iter(per_level.values()))
        result[f"denoise_{noise}"] = {
            m: {k: round(sum(per_level[lv][m][k] for lv in levels) / len(levels), 4) for k in ("psnr", "ssim")}
            | {"by_level": {str(lv): per_level[lv][m] for lv in levels}} for m in methods}
    result["superres"] = _scores(enhancement_outputs(x, "superres", 0.0, seed)[1], x)
    for kind in MASKS:
        _, m, outputs = inpainting_outputs(x, kind, seed)
        result[f"inpaint_{kind}"] = _scores(outputs, x, with_ssim=False, region=m)
    return result


# ---------------------------------------------------------------- personalised edits (个性化编辑)


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Straight line ``(1 - t) z0 + t z1`` for each ``t`` (T) between codes ``z0``, ``z1`` (d): T x d."""
    t = t.reshape(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models): along the great circle, the norm
    interpolated between ``|z0|`` and ``|z1|``. Why: in d dimensions a N(0, I) code has norm about sqrt(d), but the
    straight line's midpoint has norm about sqrt(d / 2) (two independent codes are nearly orthogonal), a region the
    decoder almost never saw in training; slerp stays on the shell where the codes live. T x d."""
    t = t.reshape(-1, 1)
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0, z1 / n1
    omega = torch.arccos((u0 * u1).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(z0: Tensor, z1: Tensor, steps: int = 9, spherical: bool = True) -> Tensor:
    """``steps`` codes from ``z0`` to ``z1`` (both ends included), spherical or linear: steps x d."""
    t = torch.linspace(0.0, 1.0, steps)
    return slerp(z0, z1, t) if spherical else lerp(z0, z1, t)


@torch.no_grad()
def class_transfer(model: gan_models.GAN, z: Tensor, classes: Tensor | None = None) -> Tensor:
    """The same code ``z`` (N x d) drawn as every class of the conditional GAN: N x C x 1 x 28 x 28.

    ``z`` carries what the classes share (pose, size, brightness), the label carries the category: "this product,
    but as a sneaker". ``classes``: the labels to draw (default all).
    """
    if not model.conditional:
        raise ValueError("class transfer needs the class-conditional GAN (cdcgan)")
    classes = torch.arange(model.cfg.n_classes) if classes is None else classes
    rows = [model.render(z, torch.full((len(z),), int(c))) for c in classes]
    return torch.stack(rows, dim=1)


def brightness(x: Tensor) -> Tensor:
    """Intensity-weighted mean intensity ``sum x^2 / sum x``: how light the product's own pixels are (the black
    background does not count, so a small light product is as bright as a large one). Per image, in [0, 1]."""
    flat = x.flatten(1)
    return flat.pow(2).sum(1) / flat.sum(1).clamp_min(1e-6)


def width(x: Tensor) -> Tensor:
    """Horizontal extent in pixels: ``sqrt(12)`` x the standard deviation of the column mass (exactly the width of a
    uniform box). Per image."""
    mass = x.sum(dim=(1, 2)).clamp_min(0)  # N x 28 (columns)
    p = mass / mass.sum(1, keepdim=True).clamp_min(1e-6)
    cols = torch.arange(28, dtype=x.dtype)
    mean = (p * cols).sum(1)
    return math.sqrt(12.0) * ((p * (cols - mean[:, None]).pow(2)).sum(1)).sqrt()


def pattern(x: Tensor) -> Tensor:
    """Texture: mean absolute difference between neighbouring pixels inside the product, relative to its mean
    intensity (stripes, prints and knit score high, plain fabric low). Per image."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1)
    return (dx + dy) / x.flatten(1).sum(1).clamp_min(1e-6)


PROPERTIES: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "brightness": (brightness, "darker → lighter"),
    "width": (width, "narrower → wider"),
    "pattern": (pattern, "plain → patterned"),
}
# The shipped directions (measured: monotone, class kept). The dcgan has directions too, but without a label its
# codes mix class and style: its directions change the class for about half of the products (notebook 05, §4.3).
DIRECTION_MODELS = ("vae", "cdcgan")


@functools.cache
@torch.no_grad()
def _codes_and_images(name: str, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Codes, their decoded images and the class of each: encoded training products (VAE), prior samples of
    balanced classes (cdcgan) or prior samples with the class the ruler sees in them (dcgan)."""
    if name == "vae":
        model = shipped("vae")
        images, labels = data.load("train")
        pick = torch.randperm(len(images), generator=_generator(seed))[:n]
        z = model.embed(data.to_float(images[pick]))
        return z, model.reconstruct(data.to_float(images[pick])), labels[pick]
    if name in ("dcgan", "cdcgan"):
        model = shipped(name)
        z = model.noise(n, _generator(seed))
        if model.conditional:
            labels = checkpoints.balanced_labels(n)
            return z, model.render(z, labels), labels
        images = model.render(z)
        r = metrics.ruler()
        return z, images, r.predict(r.features(images))  # unconditional: the class the ruler sees
    raise ValueError(f"latent directions exist for {', '.join(DIRECTION_MODELS)}, not {name!r}")


def _demean(v: Tensor, labels: Tensor) -> Tensor:
    out = v.clone()
    for c in labels.unique():
        out[labels == c] -= v[labels == c].mean(0)
    return out


@functools.cache
def direction(name: str, prop: str, n: int = 10_000, seed: int = 0) -> Tensor:
    """The latent direction of model ``name`` along which ``prop`` grows, *within* a class.

    The covariance of the codes with the property, both centred per class: a smooth version of "mean code of the
    products with much of the property minus mean code of those with little". Centring per class makes the
    direction change the property and not the category (class means differ in every property: without it "wider"
    would mostly mean "turn the trousers into a coat"). Not the least-squares regression: that divides by each
    dimension's variance and so points into the VAE's inactive dimensions (codes all near 0), which the decoder
    ignores. Its length is one within-class standard deviation of the codes along it, so a step of ``t`` moves a
    product as far as products of its class typically differ (the unit of ``STEPS``). Deterministic for ``n``,
    ``seed``.
    """
    z, images, labels = _codes_and_images(name, n, seed)
    y = PROPERTIES[prop][0](images)
    zc = _demean(z, labels)
    cov = zc.T @ _demean(y[:, None], labels)[:, 0]
    unit = cov / cov.norm()
    return unit * (zc @ unit).std()


STEPS = torch.linspace(-2.0, 2.0, 9)  # positions along a direction, in within-class standard deviations
SMALL_STEP = 0.5  # "small": within this many standard deviations the edit must keep the class


@torch.no_grad()
def render(name: str, z: Tensor, labels: Tensor | None = None) -> Tensor:
    """Codes decoded by shipped model ``name``: N x 1 x 28 x 28 in [0, 1] (``labels``: the cdcgan's classes; the
    unconditional models ignore them)."""
    model = shipped(name)
    if name == "vae":
        return model.decode(z)
    return model.render(z, labels if model.conditional else None)


@torch.no_grad()
def walk(name: str, z: Tensor, d: Tensor, steps: Tensor = STEPS, labels: Tensor | None = None) -> Tensor:
    """Decode ``z + t d`` for every ``t`` in ``steps``: N x T x 1 x 28 x 28 (``labels``: the cdcgan's classes)."""
    return torch.stack([render(name, z + t * d, labels) for t in steps], dim=1)


def direction_report(name: str, prop: str, n: int = 200, seed: int = 1) -> dict[str, Any]:
    """How a direction behaves on ``n`` held-out codes: the property's mean at each step, the share of codes whose
    property is monotone along the strip, and the share whose class (the ruler's classifier) is unchanged within
    ``SMALL_STEP`` of the start (and, for comparison, along a random direction as long: how fragile the class
    is anyway)."""
    z, _, labels = _codes_and_images(name, n, seed)
    strips = walk(name, z, direction(name, prop), STEPS, labels)
    fn = PROPERTIES[prop][0]
    values = torch.stack([fn(strips[:, i]) for i in range(len(STEPS))], dim=1)  # N x T
    monotone = (values.diff(dim=1) > 0).all(dim=1).float().mean()
    r = metrics.ruler()
    small = [i for i, t in enumerate(STEPS.tolist()) if abs(t) <= SMALL_STEP]
    centre = int(torch.argmin(STEPS.abs()))
    d = direction(name, prop)
    random_d = torch.randn(d.shape, generator=_generator(seed)) * d.norm() / math.sqrt(len(d))
    kept = {}
    for key, strip in (("direction", strips), ("random", walk(name, z, random_d, STEPS, labels))):
        base = r.predict(r.features(strip[:, centre]))
        pred = torch.stack([r.predict(r.features(strip[:, i])) for i in small], dim=1)
        kept[key] = float((pred == base[:, None]).all(dim=1).float().mean())
    return {"model": name, "property": prop, "label": PROPERTIES[prop][1], "steps": STEPS.tolist(),
            "mean": values.mean(0).tolist(), "share_monotone": float(monotone),
            "class_kept_small_steps": kept["direction"], "class_kept_random_direction": kept["random"]}


@torch.no_grad()
def edit_real(image: Tensor, prop: str, steps: Tensor = STEPS) -> Tensor:
    """Edit a real product: encode it with the VAE, move along ``prop``'s direction, decode. T x 1 x 28 x 28."""
    x = product_image(image)[None]
    return walk("vae", shipped("vae").embed(x), direction("vae", prop), steps)[0]


def format_table(result: dict[str, Any]) -> str:
    """The tables of :func:`evaluate_editing` as Markdown: one row per method, PSNR (SSIM) per task; the best
    method of each task in bold."""
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
