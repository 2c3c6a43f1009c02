"""Exercise checkers of chapter 01 (the losses, §2.2, §2.3, §3.2.2, §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prodlab import losses
from prodlab.exercises.core import ExerciseFailed, call, close, verdict
from prodlab.models.vae import VAE


def _logits() -> Tensor:
    """Fake logits from a confident reject (-200) to a confident accept (+30), in float32 as a network gives them."""
    spread = 3 * torch.randn(32, 1, generator=torch.Generator().manual_seed(2))
    return torch.cat([torch.tensor([[-200.0], [-30.0], [0.0], [30.0]]), spread])


def check_nonsaturating_loss(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 01.1: the non-saturating generator loss ``-1/N sum log D(G(z))`` from the logits, as
    :func:`prodlab.losses.generator_loss_nonsaturating`; must stay finite for a logit of -200."""
    title = "non-saturating generator loss"
    logits = _logits()
    want = losses.generator_loss_nonsaturating(logits)
    mistakes = {
        "that is the saturating loss log(1 - D): the non-saturating one is -log D.":
            losses.generator_loss_saturating(logits),
        "wrong sign: the loss is -log D, which is positive and large when D rejects the fakes.": -want,
        "that is a sum over the batch: the article's L_G averages (1/N).": want * len(logits),
    }
    got = call(title, fn, logits.clone())
    verdict(title, got, want, mistakes, "Write -log(sigmoid(l)) as softplus(-l) so a logit of -200 stays finite.")


def check_gaussian_kl(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 01.3: closed-form ``KL(N(mu, diag exp(logvar)) || N(0, I))`` per sample, summed over latent dims,
    as :func:`prodlab.losses.gaussian_kl`."""
    title = "Gaussian KL"
    gen = torch.Generator().manual_seed(3)
    mu, logvar = torch.randn(5, 8, generator=gen, dtype=torch.float64), torch.randn(5, 8, generator=gen,
                                                                                    dtype=torch.float64)
    want = losses.gaussian_kl(mu, logvar)
    mistakes = {
        "averaged over latent dimensions: the dimensions are independent, so their KLs add up (sum).": want / 8,
        "twice too large: the closed form has a factor 1/2.": 2 * want,
        "one number for the batch: return one KL per sample (sum over the last axis only).": want.mean(),
        "logvar is log sigma^2, so sigma^2 = exp(logvar), not exp(2 logvar).":
            losses.gaussian_kl(mu, 2 * logvar),
    }
    got = call(title, fn, mu.clone(), logvar.clone())
    verdict(title, got, want, mistakes, "Per sample: 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).")


def check_reparameterise(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Exercise 01.4: ``z = mu + sigma * eps`` from ``(mu, logvar, eps)``, equal to the package's
    :meth:`prodlab.models.vae.VAE.reparameterize` with the same noise, **and** differentiable in ``mu`` and
    ``logvar`` (§3.2.2 step 3)."""
    title = "reparameterisation"
    gen_mu = torch.Generator().manual_seed(4)
    mu = torch.randn(6, 4, generator=gen_mu, dtype=torch.float64).requires_grad_(True)
    logvar = torch.randn(6, 4, generator=gen_mu, dtype=torch.float64).requires_grad_(True)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5), dtype=mu.dtype)
    want = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(5))
    mistakes = {"logvar is log sigma^2: sigma = exp(logvar / 2), not exp(logvar).": mu + logvar.exp() * eps,
                "sigma * eps is missing: z must be random around mu.": mu}
    got = call(title, fn, mu, logvar, eps.clone())
    if not isinstance(got, Tensor) or got.grad_fn is None:
        raise ExerciseFailed(f"{title}: no gradient reaches mu and logvar. Compute z with torch operations on mu "
                             "and logvar themselves (no .detach(), .item(), NumPy or torch.no_grad()).")
    if close(got.detach().double(), want.detach().double(), 1e-5, 1e-6):  # right values: check the gradient too
        grad_mu, grad_logvar = torch.autograd.grad(got.sum(), (mu, logvar), allow_unused=True)
        exact = 0.5 * (0.5 * logvar).exp() * eps
        if grad_mu is None or grad_logvar is None or not torch.allclose(grad_logvar, exact):
            raise ExerciseFailed(f"{title}: the values are right but the gradient is not: is part of z detached?")
    verdict(title, got, want, mistakes, "z = mu + exp(logvar / 2) * eps.")


def check_gradient_ratio(fn: Callable[[float], float]) -> None:
    """Exercise 01.2 (predict, then measure): the ratio |dL_NS/dl| / |dL_S/dl| of the two generator losses at a
    logit ``l``, compared with autograd on :mod:`prodlab.losses` at several logits."""
    title = "gradient ratio"
    grid = torch.tensor([-8.0, -3.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    ratios = []
    for logit in grid:
        ell = logit.clone().requires_grad_(True)
        (g_ns,) = torch.autograd.grad(losses.generator_loss_nonsaturating(ell), ell)
        (g_s,) = torch.autograd.grad(losses.generator_loss_saturating(ell), ell)
        ratios.append((g_ns.abs() / g_s.abs()).item())
    want = torch.tensor(ratios, dtype=torch.float64)
    got = torch.tensor([float(call(title, fn, float(logit))) for logit in grid], dtype=torch.float64)
    mistakes = {"upside down: that is |dL_S/dl| / |dL_NS/dl|.": 1 / want}
    verdict(title, got, want, mistakes, "The derivatives w.r.t. the logit are sigma(l) - 1 and -sigma(l).")
