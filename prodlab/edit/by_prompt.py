"""Editing a real product by words (issue 26, notebook 10): the text-to-product model as an editor.

* :func:`sdedit`: recolour or re-pattern a photo by a new prompt (Meng et al. 2022, as chapter 05 does with the
  class-conditional flow): the photo's latent goes part of the way to noise, to ``start``, and the sampler brings it
  back guided by the new prompt. A late start keeps the shape and changes little; an early one follows the prompt and
  forgets the product.
* :func:`inpaint`: fill a masked region from a prompt (RePaint, Lugmayr et al. 2022, without resampling, in the
  latent grid): from pure noise, after every step the latent positions whose pixels are all visible are replaced by
  the photo's own latent noised to that time, so the drawing must agree with what is kept; the visible pixels are
  pasted back at the end.

Chapter 10 (notebooks/10_text_to_product.ipynb).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from prodlab import diffusion
from prodlab.edit.diffusion_prior import known_at
from prodlab.models.text_diffusion import TextDiffusion

SDEDIT_START = 0.7  # how far towards noise the photo's latent goes before the new prompt brings it back
SDEDIT_STEPS = 6
INPAINT_STEPS = 10
SEED = 5


@torch.no_grad()
def sdedit(model: TextDiffusion, x: Tensor, prompts: list[str], start: float = SDEDIT_START,
           steps: int = SDEDIT_STEPS, seed: int = SEED) -> Tensor:
    """Photos ``x`` (float N x C x H x W in [0, 1]) redrawn by ``prompts`` (one each) from time ``start`` of the
    flow's path: ``z_start = (1 - start) z_0 + start eps``, then the model's sampler with guidance. Chapter 10."""
    if len(prompts) != len(x):
        raise ValueError(f"one prompt per photo: {len(x)} photos, {len(prompts)} prompts")
    generator = torch.Generator().manual_seed(seed)
    z0 = model.to_latents(x)
    z_start = diffusion.add_noise(z0, torch.randn(z0.shape, generator=generator), torch.full((len(x),), start),
                                  model.cfg.objective)
    return model.draw(prompts, generator, steps=steps, noise=z_start, start=start)


def latent_known(model: TextDiffusion, missing: Tensor) -> Tensor:
    """float N x 1 x h x w: 1 where a latent position's pixels are all visible (``missing``: bool N x H x W or
    N x 1 x H x W, True = to fill), 0 where any is missing. Chapter 10."""
    m = missing.reshape(len(missing), 1, *missing.shape[-2:]).float()
    return 1 - F.max_pool2d(m, model.cfg.first_stage.factor)


@torch.no_grad()
def inpaint(model: TextDiffusion, x: Tensor, missing: Tensor, prompts: list[str], steps: int = INPAINT_STEPS,
            seed: int = SEED) -> Tensor:
    """Photos ``x`` with their ``missing`` pixels (bool, True = fill) drawn from ``prompts``: guided Euler steps in
    the latent grid, the visible latent positions pasted after each (:func:`latent_known`), the visible pixels
    pasted at the end. Chapter 10."""
    if len(prompts) != len(x):
        raise ValueError(f"one prompt per photo: {len(x)} photos, {len(prompts)} prompts")
    generator = torch.Generator().manual_seed(seed)
    tokens = model.cfg.tokenizer.encode(prompts)
    null = tuple(model.null_tokens(1)[0].tolist())
    z0, known = model.to_latents(x), latent_known(model, missing)
    z = torch.randn(z0.shape, generator=generator)
    times = diffusion.time_grid(steps)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        pred = diffusion.predict(model.eval(), z, t, tokens, model.cfg.guidance, null)
        z = diffusion.ddim_step(z, pred, t, t_next, model.cfg.objective)
        z = known * known_at(z0, t_next, generator) + (1 - known) * z
    keep = (~missing.reshape(len(x), 1, *x.shape[-2:])).float()
    return keep * x + (1 - keep) * model.to_images(z)
