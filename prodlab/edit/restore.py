"""Enhancement and restoration (chapter 05, article §2.4 item 2, §3.3 step 4): classical baselines, and latent
optimisation under a VAE or GAN prior.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from prodlab import checkpoints, config, data, imageio
from prodlab.datasets.spec import ImageSpec
from prodlab.degrade import blur, downsample, rng
from prodlab.models import gan as gan_models
from prodlab.models import vae as vae_models

# ---------------------------------------------------------------- user images


def product_image(source: str | Path | Image.Image | Tensor, image: ImageSpec | None = None) -> Tensor:
    """Any image as a product the models of ``image`` (default: the default data set's, ``data.spec()``) can edit:
    float C x H x W in [0, 1].

    A tensor is taken as a catalogue image of that spec: one image (uint8 H x W x C as stored, uint8 or float
    C x H x W, H x W for one channel) or a batch of one; another shape raises ``ValueError`` naming it. A path or
    PIL image of any size and mode (RGB, RGBA, L, P; light or dark background) goes through ``imageio.user_image``:
    for one channel Fashion-MNIST's conversion (``imageio.to_product_image`` framed to the spec's side: grey, its
    polarity, product cropped and centred), for three the colour conversion of ``data import``. A file that is not
    an image raises ``imageio.ImageError`` naming it.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    image = image or data.spec()
    if not isinstance(source, Tensor):
        return imageio.user_image(source, image)
    x = source[None] if source.ndim == 2 or (source.dtype == torch.uint8 and source.ndim == 3) else source
    if x.dtype == torch.uint8 and tuple(x.shape[1:]) == image.shape:  # uint8 channels first, not as stored
        x = x.float() / 255.0
    return data.as_batch(x, image)[0]


# ---------------------------------------------------------------- classical baselines


def gaussian_filter(y: Tensor, sigma: float = 1.0) -> Tensor:
    """Gaussian smoothing (kernel 2*ceil(2 sigma)+1): averages noise away, and edges with it.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return blur(y, sigma, truncate=2.0)


def median_filter(y: Tensor, size: int = 3) -> Tensor:
    """Median of each ``size`` x ``size`` neighbourhood (reflect padding): the classical cure for salt and pepper.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    pad = size // 2
    n, c = y.shape[:2]
    patches = F.unfold(F.pad(y, (pad, pad, pad, pad), mode="reflect"), size)  # N x C size^2 x H W
    return patches.reshape(n, c, size * size, -1).median(dim=2).values.reshape(y.shape)  # each channel on its own


def bicubic(y: Tensor, factor: int = 2) -> Tensor:
    """Bicubic upsampling by ``factor`` (the inverse of ``degrade.downsample``'s size), clamped to [0, 1].

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


@functools.cache
def mean_image(dataset: str = data.DEFAULT) -> Tensor:
    """The average training product, 1 x C x H x W: the best fill that ignores the visible pixels.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return data.to_float(data.load("train", dataset=dataset)[0]).mean(0, keepdim=True)


def mean_fill(y: Tensor, missing: Tensor, dataset: str = data.DEFAULT) -> Tensor:
    """Fill missing pixels with the average training product of ``dataset`` at those pixels.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return torch.where(missing, mean_image(dataset).expand_as(y), y)


def diffusion_fill(y: Tensor, missing: Tensor, iterations: int = 400, dataset: str = data.DEFAULT) -> Tensor:
    """Harmonic inpainting: missing pixels relax to the average of their four neighbours (Laplace's equation with
    the visible pixels as boundary values) by Jacobi iteration; the classical "diffuse the border inwards" fill.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    channels = y.shape[1]
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).expand(channels, 1, 3, 3)
    x = mean_fill(y, missing, dataset)
    for _ in range(iterations):
        x = torch.where(missing, F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels), y)
    return x


# ---------------------------------------------------------------- learned priors and latent optimisation


@dataclass(frozen=True)
class InversionConfig:
    """Latent optimisation settings (Adam on ``z``).

    Chapter 05 (notebooks/05_editing.ipynb).
    """

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
    """A decoder ``z -> image in [0, 1]``, how to pick a starting code for an observation, and the settings.

    Chapter 05 (notebooks/05_editing.ipynb).
    """

    name: str
    decode: Callable[[Tensor], Tensor]
    start: Callable[[Tensor, Callable[[Tensor], Tensor], Tensor], Tensor]  # (classical guess, A, y) -> z0
    cfg: InversionConfig


def vae_prior(model: vae_models.VAE, cfg: InversionConfig = InversionConfig()) -> Prior:
    """The VAE as a prior: start from the encoder's mean of a classical first guess (amortised inversion, §3.2).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    model.eval().requires_grad_(False)

    def start(guess: Tensor, forward: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
        return model.embed(guess)

    return Prior("VAE", model.decode, start, cfg)


def gan_prior(model: gan_models.GAN, cfg: InversionConfig = InversionConfig(), seed: int = 0,
              labels: Tensor | None = None) -> Prior:
    """The GAN generator as a prior (GAN inversion): it has no encoder, so the optimisation starts from the best of
    ``cfg.restarts`` random codes, judged by how well their images fit the observation. A conditional GAN draws
    each image under its own ``labels`` (one per observed image, as ``GAN.sample`` takes them).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    model.eval().requires_grad_(False)
    g = model.generator

    def decode(z: Tensor) -> Tensor:
        return data.denormalize(g(z, labels))

    @torch.no_grad()
    def start(guess: Tensor, forward: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
        gen = rng(seed)
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
    """A shipped checkpoint (``"vae"``, ``"dcgan"``, ``"cdcgan"``), loaded once per process, eval mode.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return checkpoints.load(name)


def inversion(kind: str) -> InversionConfig:
    """The measured inversion settings of a ``"vae"`` or ``"dcgan"`` prior, for this mode (quick mode: fewer steps).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return (QUICK_INVERSION if config.quick() else INVERSION)[kind]


def prior(name: str) -> Prior:
    """The shipped ``"vae"`` or ``"dcgan"`` as a prior, with its measured inversion settings (:func:`inversion`).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    model, cfg = shipped(name), inversion(name)
    return vae_prior(model, cfg) if isinstance(model, vae_models.VAE) else gan_prior(model, cfg)


def invert(p: Prior, y: Tensor, forward: Callable[[Tensor], Tensor], guess: Tensor,
           observed: Tensor | None = None) -> Tensor:
    """The code ``z*`` whose decoding explains ``y = forward(x)`` (the objective in the module docstring).

    ``guess``: a classical estimate of ``x`` (N x C x H x W) the VAE encodes to start from; ``observed``: a
    bool mask of the pixels of ``y`` that count (N x C x H x W, or N x 1 x H x W for all channels; None: all).
    Deterministic for a given prior and input.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    weight = torch.ones_like(y) if observed is None else observed.to(y.dtype).expand_as(y)
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
    """Decoded images in [0, 1], N x C x H x W.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return p.decode(z).clamp(0.0, 1.0)


def _batched(fn: Callable[..., Tensor], *tensors: Tensor, batch_size: int = 500) -> Tensor:
    n = len(tensors[0])
    return torch.cat([fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)])


def denoise(p: Prior, y: Tensor, median_first: bool = False) -> Tensor:
    """Denoise by projecting onto the model's products: ``dec(z*)`` with ``A`` = identity.

    ``median_first``: start from (and fit) the median-filtered image, for impulse noise whose 0/1 outliers would
    otherwise pull the squared error.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    target = median_filter(y) if median_first else y
    return _batched(lambda t: decode(p, invert(p, t, _identity, t)), target)


def _identity(x: Tensor) -> Tensor:
    return x


def superresolve(p: Prior, y_small: Tensor) -> Tensor:
    """Twice the side (Fashion-MNIST: 28 x 28 from 14 x 14): the product whose 2 x 2 averages match ``y_small``
    (start: bicubic upsampling).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return _batched(lambda t: decode(p, invert(p, t, downsample, bicubic(t))), y_small)


def inpaint(p: Prior, y: Tensor, missing: Tensor, dataset: str = data.DEFAULT) -> Tensor:
    """Fill the missing pixels with those of ``dec(z*)``, ``z*`` fitted to the visible pixels only; the visible
    pixels are kept as observed (start: the diffusion fill, from the mean product of ``dataset``, the prior's).

    Chapter 05 (notebooks/05_editing.ipynb).
    """

    def one(t: Tensor, m: Tensor) -> Tensor:
        z = invert(p, t, _identity, diffusion_fill(t, m, dataset=dataset), observed=~m)
        return torch.where(m, decode(p, z), t)

    return _batched(one, y, missing)


# ---------------------------------------------------------------- the models of a catalogue


def trained(name: str, dataset: str = data.DEFAULT) -> tuple[str, Path]:
    """``(checkpoint, folder)`` of model ``name`` (``"vae"``, ``"dcgan"``, ``"diffusion"``) trained on ``dataset``:
    the shipped checkpoint for the default data set (a missing one raises ``CheckpointError`` with the command that
    re-creates it); for another data set its shipped ``DATASET-NAME``, else the newest
    ``python -m prodlab train NAME --data DATASET`` run (``runs/DATASET/``), else ``CheckpointError`` naming that
    command. The priors' counterpart of ``ruler.find``.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    if dataset == data.DEFAULT:
        checkpoints.read_meta(name)  # missing or damaged: says so, with the command that re-creates it
        return name, config.CHECKPOINT_DIR
    if checkpoints.exists(f"{dataset}-{name}"):
        return f"{dataset}-{name}", config.CHECKPOINT_DIR
    if checkpoints.exists(name) and checkpoints.read_meta(name).get("dataset") == dataset:  # text-diffusion: colour's
        return name, config.CHECKPOINT_DIR
    runs_of = [p for p in (config.RUNS_DIR / dataset).glob(f"{name}*/{name}.json")
               if p.with_suffix(".safetensors").is_file()]
    if not runs_of:
        raise checkpoints.CheckpointError(
            f"no {name} model has been trained on data set {dataset!r} (the shipped {name} is "
            f"{data.DEFAULT}'s), so it cannot edit its images; train it with: "
            f"python -m prodlab train {name} --data {dataset}")
    return name, max(runs_of, key=lambda p: p.stat().st_mtime).parent


def load_trained(name: str, dataset: str = data.DEFAULT, kind: str | None = None) -> torch.nn.Module:
    """Model ``name`` trained on ``dataset`` (:func:`trained`), of family ``kind`` when given, checked to read that
    data set's images; eval mode, no gradients.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    checkpoint, folder = trained(name, dataset)
    model = checkpoints.load(checkpoint, folder, kind=kind)
    data.check_fits(model.cfg.image, dataset)
    return model.eval().requires_grad_(False)
