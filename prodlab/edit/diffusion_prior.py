"""Editing with the diffusion prior: the shipped flow-matching model ``diffusion`` as a denoiser (SDEdit) and as an
inpainter (RePaint), beside the classical fills and the VAE and GAN inversions of ``prodlab.edit.restore``.

Article §2.4 item 2, §3.3 step 4; chapter 05 (notebooks/05_editing.ipynb). The model (chapter 08,
``prodlab.diffusion``) is a flow ``x_t = (1 - t) x_0 + t eps`` on images in [-1, 1]; its network predicts the
velocity ``v = eps - x_0``, and sampling integrates ``dx/dt = v`` from ``t = 1`` (noise) down to ``t = 0`` (data).
No code is optimised, as in latent optimisation: the prior acts through the sampler.

* **SDEdit** (Meng et al. 2022, "SDEdit: guided image synthesis and editing with stochastic differential
  equations"): a noisy image is an image part of the way along the path to noise, so denoising is sampling from
  there. For the flow the match is exact: ``y = x_0 + s n`` (``s`` in the model's scale, twice the pixel-scale
  sigma) multiplied by ``1 - t*`` with ``t* = s / (1 + s)`` *is* ``x_t* = (1 - t*) x_0 + t* n``. No noise is added;
  the ODE is integrated from ``t*`` to 0.
* **RePaint** (Lugmayr et al. 2022, "RePaint: inpainting using denoising diffusion probabilistic models"): sample
  from pure noise, and after every step from ``t`` to ``t'`` overwrite the visible pixels with the original noised
  to ``t'``, ``(1 - t') x_0 + t' eps``; the network makes the hole agree with them. *Resampling* repeats a step
  after re-noising its result from ``t'`` back to ``t``, so the hole gets several chances to fit the border.

Both use the **unconditional** prediction (the null label, guidance 1): the VAE and the unconditional DCGAN that
the other editing rows invert are not told the product's class either. Both are deterministic given a seed (their
own ``torch.Generator``; the global random state is untouched), batched, and run on one CPU thread
(``config.one_thread``). Inputs and outputs follow ``prodlab.edit.restore``: float N x C x H x W in [0, 1] (a
uint8 tensor is scaled by 1/255), bool masks True where a pixel is missing.
"""

from __future__ import annotations

import functools
import math
import time

import torch
from torch import Tensor

from prodlab import checkpoints, config, data, diffusion
from prodlab.datasets.spec import ImageSpec
from prodlab.models.unet import DiffusionModel

# Step counts. The flow's rows of the edit-scores table cost images x network calls per image (`settings`; 3 noise
# levels x 2 for SDEdit, 3 masks x 19 for RePaint) x the CPU time of one call for one image (`cpu_ms_per_call`:
# 1.3 to 1.7 ms for the width-16 model, so 16 to 24 CPU-s for 200 images). A model k times slower per call costs k
# times as much; for k = 3 set REPAINT_RESAMPLE = 4 (13 calls) to stay under a minute. SDEdit's calls hardly count.
SDEDIT_SAMPLER = "euler"  # Heun bought nothing measurable here at the same number of calls
SDEDIT_STEPS = 2  # steps from t* down to 0 (one step returns the network's x0 guess: the blurriest, top PSNR)
REPAINT_STEPS = 4  # Euler steps from t = 1 down to 0 (4 x 6, 5 x 5 and 8 x 4 scored alike on 64 images)
REPAINT_RESAMPLE = 6  # each step done this many times (RePaint's r; 1: no resampling)
SEED = 5  # the methods' own random stream: never a degradation's seed (0 in the tables), which would hand
# them the very noise they are to remove


@functools.cache
def flow_model() -> DiffusionModel:
    """The shipped ``diffusion`` checkpoint, loaded once per process, eval mode, no gradients.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return checkpoints.load("diffusion").eval().requires_grad_(False)


def settings() -> dict[str, int | str]:
    """The step counts and the network calls per image they cost (what the edit-scores result records).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return {"sdedit_sampler": SDEDIT_SAMPLER, "sdedit_steps": SDEDIT_STEPS,
            "sdedit_calls": diffusion.network_calls(SDEDIT_SAMPLER, SDEDIT_STEPS, guided=False),
            "repaint_steps": REPAINT_STEPS, "repaint_resample": REPAINT_RESAMPLE,
            "repaint_calls": repaint_calls(REPAINT_STEPS, REPAINT_RESAMPLE)}


def repaint_calls(steps: int, resample: int) -> int:
    """Network calls per image of :func:`repaint`: ``resample`` per step, but one for the first (from pure noise).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return 1 + (steps - 1) * resample


def _as_float(y: Tensor, image: ImageSpec | None = None) -> Tensor:
    """Images as float N x C x H x W (uint8 N x H x W x C through ``data.as_batch``; one float image C x H x W gets
    a batch axis); floats are not clamped, so an unclamped noisy image keeps its exact noise. With ``image`` (the
    model's spec) another shape raises ``ValueError`` naming it."""
    if y.dtype == torch.uint8:
        return data.as_batch(y, image)
    x = y.float()[None] if y.ndim == 3 else y.float()
    if image is not None and (x.ndim != 4 or tuple(x.shape[1:]) != image.shape):
        raise ValueError(f"expected images N x {' x '.join(map(str, image.shape))} (the model's spec), "
                         f"got {tuple(y.shape)}")
    return x


def _null_labels(model: DiffusionModel, n: int) -> Tensor | None:
    """The "no label" token for ``n`` images (None for an unconditional model)."""
    return torch.full((n,), model.cfg.n_classes, dtype=torch.long) if model.cfg.n_classes else None


def step(model: DiffusionModel, x: Tensor, t: float, t_next: float, sampler: str = "euler") -> Tensor:
    """One unconditional step of the flow ODE from ``t`` to ``t_next``: Euler (``diffusion.ddim_step``), or Heun
    (the slopes at both ends averaged; Euler when ``t_next`` is 0, as ``diffusion.sample_trajectory`` does).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    labels, null = _null_labels(model, len(x)), model.cfg.n_classes
    v = diffusion.predict(model, x, t, labels, 1.0, null)
    x_next = diffusion.ddim_step(x, v, t, t_next, "flow")
    if sampler == "heun" and t_next > 0:
        v_next = diffusion.predict(model, x_next, t_next, labels, 1.0, null)
        x_next = x + (t_next - t) * (v + v_next) / 2
    return x_next


# ---------------------------------------------------------------- SDEdit: denoising


def sdedit_time(sigma: float) -> float:
    """``t* = s / (1 + s)`` with ``s = 2 sigma``: where noise of pixel-scale sigma puts an image on the flow's path.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    s = 2.0 * sigma  # [0, 1] -> [-1, 1] doubles the noise
    return s / (1.0 + s)


def sdedit_start(y: Tensor, sigma: float) -> tuple[Tensor, float]:
    """``((1 - t*) y, t*)`` in the model's scale: the noisy image rescaled onto the path ``x_t*``, and ``t*``.

    Exact for ``y = x_0 + s n`` in [-1, 1]: ``(1 - t*)(x_0 + s n) = (1 - t*) x_0 + t* n``, since ``(1 - t*) s = t*``.
    Chapter 05 (notebooks/05_editing.ipynb).
    """
    t_star = sdedit_time(sigma)
    return (1.0 - t_star) * data.normalize(_as_float(y)), t_star


def unclamp(y: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Undo the clamp of ``degrade.gaussian_noise``: a pixel clamped to 0 had ``x + sigma n <= 0``; taking ``x = 0``
    there (the black background), its noise is redrawn from the negative half-normal; likewise at 1.

    Clamped noise is not Gaussian: on the background it averages ``sigma / sqrt(2 pi)``, which SDEdit would take
    for grey fabric. Chapter 05 (notebooks/05_editing.ipynb).
    """
    half = sigma * torch.randn(y.shape, generator=generator).abs()
    return torch.where(y <= 0, -half, torch.where(y >= 1, 1 + half, y))


@torch.no_grad()
def sdedit(y: Tensor, sigma: float, steps: int = SDEDIT_STEPS, sampler: str = SDEDIT_SAMPLER,
           clamped: bool = True, seed: int = SEED, model: DiffusionModel | None = None) -> Tensor:
    """Denoise images with Gaussian noise of (pixel-scale) standard deviation ``sigma`` by SDEdit: rescale onto
    the flow's path at ``t*`` (:func:`sdedit_start`) and integrate the ODE to ``t = 0`` in ``steps`` steps.

    ``clamped``: ``y`` was clamped to [0, 1] after the noise (as in the tables); :func:`unclamp` first, the only
    random part (seeded by ``seed``). Told ``sigma``, as the tuned filters are. ``y``: N x C x H x W, float in
    [0, 1] or uint8; returns float in [0, 1]. Meng et al. 2022; article §2.4 item 2, §3.3 step 4; chapter 05
    (notebooks/05_editing.ipynb).
    """
    model = model or flow_model()
    y = _as_float(y, model.cfg.image)
    if clamped:
        y = unclamp(y, sigma, torch.Generator().manual_seed(seed))
    x, t_star = sdedit_start(y, sigma)
    times = [t_star * t for t in diffusion.time_grid(steps)]  # t* -> 0 in equal steps
    with config.one_thread():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            x = step(model, x, t, t_next, sampler)
    return data.denormalize(x)


# ---------------------------------------------------------------- RePaint: inpainting


def renoise(x: Tensor, t_from: float, t_to: float, generator: torch.Generator) -> Tensor:
    """Move ``x`` at time ``t_from`` forward to the later ``t_to`` along the flow's forward process: scale the data
    part by ``(1 - t_to) / (1 - t_from)`` and add fresh noise up to the level ``t_to`` (RePaint's jump back).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    scale = (1.0 - t_to) / (1.0 - t_from)
    extra = math.sqrt(max(t_to ** 2 - (scale * t_from) ** 2, 0.0))
    return scale * x + extra * torch.randn(x.shape, generator=generator)


def known_at(x0: Tensor, t: float, generator: torch.Generator) -> Tensor:
    """The original at time ``t``: ``diffusion.add_noise(x0, eps, t)`` with fresh ``eps`` (what RePaint pastes).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return diffusion.add_noise(x0, torch.randn(x0.shape, generator=generator), torch.tensor([t]), "flow")


@torch.no_grad()
def repaint(y: Tensor, missing: Tensor, steps: int = REPAINT_STEPS, resample: int = REPAINT_RESAMPLE,
            seed: int = SEED, model: DiffusionModel | None = None) -> Tensor:
    """Fill the ``missing`` pixels (bool, True = missing) of ``y`` by RePaint with the flow model.

    From pure noise at ``t = 1``, each Euler step to ``t'`` is followed by pasting the visible pixels of the
    original at ``t'`` (:func:`known_at`). Each step is done ``resample`` times, its result re-noised back to ``t``
    in between (:func:`renoise`), except the first: re-noised to ``t = 1``, nothing of it would be left. The
    visible pixels of the result are those of ``y``, exactly. Deterministic given ``seed``. ``y``: N x C x H x W
    float in [0, 1] or uint8; returns float in [0, 1]. Lugmayr et al. 2022; article §2.4 item 2, §3.3 step 4;
    chapter 05 (notebooks/05_editing.ipynb).
    """
    model = model or flow_model()
    y = _as_float(y, model.cfg.image)
    x0, gen = data.normalize(y), torch.Generator().manual_seed(seed)
    x = torch.randn(x0.shape, generator=gen)
    times = diffusion.time_grid(steps)
    with config.one_thread():
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            repeats = resample if t < 1 else 1  # back at t = 1 nothing is left of x_t': pure noise, a wasted call
            for r in range(repeats):
                x_next = torch.where(missing, step(model, x, t, t_next), known_at(x0, t_next, gen))
                if r < repeats - 1:
                    x = renoise(x_next, t_next, t, gen)
            x = x_next
    return torch.where(missing, data.denormalize(x), y)


def cpu_ms_per_call(n: int = 200, model: DiffusionModel | None = None) -> float:
    """CPU milliseconds of one network call for one image, on one thread, in batches of ``n`` (the unit of the
    cost of both methods). Chapter 05 (notebooks/05_editing.ipynb).
    """
    model = model or flow_model()
    x = torch.zeros(n, *model.cfg.image.shape)
    with config.one_thread(), torch.no_grad():
        step(model, x, 0.5, 0.4)  # warm-up
        start = time.process_time()
        for _ in range(3):
            step(model, x, 0.5, 0.4)
        return 1000 * (time.process_time() - start) / (3 * n)
