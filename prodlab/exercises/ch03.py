"""Exercise checkers of chapter 03 (the VAE on product images, §2.3, §3.2.2, §4).

Chapter 01's checkers test the KL and the reparameterisation on small random inputs; these test the VAE itself:
the shipped ``vae`` checkpoint encoding real test images (``prodlab.checkpoints.load``, which records its SHA-256
for the notebook's provenance line).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from prodlab import checkpoints, data, losses
from prodlab.exercises.core import ExerciseFailed, call, verdict
from prodlab.models import vae as vae_models


def _vae_and_images(n: int) -> tuple[vae_models.VAE, Tensor]:
    """The shipped 16-d ``vae`` (eval mode) and the first ``n`` test images as floats N x C x H x W."""
    model = checkpoints.load("vae").eval()
    return model, data.to_float(data.load("test")[0][:n])


def _encoder_grad_norm(model: vae_models.VAE, x: Tensor, sample: Callable[..., Tensor]) -> float:
    """Norm of the reconstruction term's gradient at the encoder's first layer, with ``z = sample(mu, logvar, g)``."""
    model.zero_grad(set_to_none=True)
    mu, logvar = model.encode(x)
    z = sample(mu, logvar, torch.Generator().manual_seed(0))
    losses.reconstruction_bce(model.decode_logits(z), x, reduction="mean").backward()
    grad = model.encoder[0].weight.grad
    norm = 0.0 if grad is None else float(grad.norm())
    model.zero_grad(set_to_none=True)
    return norm


def check_broken_sample(fn: Callable[[Tensor, Tensor, torch.Generator], Tensor]) -> None:
    """Exercise 03.1: ``fn(mu, logvar, generator)`` draws ``z ~ N(mu, sigma^2)`` **without** the reparameterisation
    trick (``torch.normal``). The checker tests the distribution of ``z`` on the shipped vae's codes of 64 test
    images, then measures the reconstruction gradient at the encoder with the trick and with ``fn``: it must be 0."""
    title = "sampling without the trick"
    model, x = _vae_and_images(64)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    z = call(title, fn, mu.clone(), logvar.clone(), torch.Generator().manual_seed(0))
    if not isinstance(z, Tensor) or z.shape != mu.shape:
        raise ExerciseFailed(f"{title}: return a tensor of shape {tuple(mu.shape)}, one z per image and dimension")
    residual = ((z.detach() - mu) / (0.5 * logvar).exp()).flatten()
    if abs(float(residual.mean())) > 0.15 or not 0.85 < float(residual.std()) < 1.15:
        hint = "sigma = exp(logvar / 2), not exp(logvar)" if (z.detach() - mu).abs().max() > 0 else \
            "z must be random around mu"
        raise ExerciseFailed(f"{title}: (z - mu) / sigma has mean {float(residual.mean()):.2f} and standard "
                             f"deviation {float(residual.std()):.2f}, not 0 and 1: {hint}.")
    with_trick = _encoder_grad_norm(model, x, vae_models.VAE.reparameterize)
    without = _encoder_grad_norm(model, x, lambda m, lv, g: call(title, fn, m, lv, g))
    print(f"reconstruction gradient at the encoder's first layer: {with_trick:.4g} with the trick, "
          f"{without:.4g} without it")
    if without > 0:
        raise ExerciseFailed(f"{title}: the gradient still reaches the encoder ({without:.3g}): that is the trick "
                             "itself (mu + sigma * eps). Draw z with torch.normal(mu, sigma, generator=generator).")
    print(f"{title}: correct")


def check_free_bits(fn: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Exercise 03.2: ``fn(mu, logvar, free_bits)`` (N x d encoder outputs) -> the KL term with free bits,
    ``sum_j max(lambda, mean_i KL_ij)``, as :func:`prodlab.losses.free_bits_kl`; on the shipped vae's codes of 1,000
    test images, with ``lambda`` = 0.5 nats, where some dimensions lie below it and some above."""
    title = "free bits"
    model, x = _vae_and_images(1000)
    with torch.no_grad():
        mu, logvar = model.encode(x)
    lam = 0.5
    want = losses.free_bits_kl(mu, logvar, lam)
    per_image_dim = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    per_dim = per_image_dim.mean(0)
    mistakes = {
        "clamped per image: free bits clamp each dimension's KL after averaging it over the batch.":
            per_image_dim.clamp(min=lam).sum(1).mean(),
        "no free bits: that is the plain KL term; each dimension counts at least lambda nats.": per_dim.sum(),
        "min instead of max: a dimension's KL counts at least lambda, so max(lambda, KL_j).":
            per_dim.clamp(max=lam).sum(),
        "a mean over the dimensions: the KL of the vector is the sum over its dimensions.":
            per_dim.clamp(min=lam).mean(),
    }
    got = call(title, fn, mu.clone(), logvar.clone(), lam)
    verdict(title, got, want, mistakes, "KL of every image and dimension, mean over the images (axis 0), "
            "clamp(min=lambda), sum over the dimensions.", rtol=1e-4, atol=1e-4)


def check_implied_beta(fn: Callable[[tuple[int, int, int]], float]) -> None:
    """Exercise 03.3: ``fn((C, H, W))`` -> the beta that averaging the reconstruction over the pixels implies,
    relative to the summed loss. Checked on three image shapes, then on real images: ``beta * (mean-reduced loss)``
    must equal ``recon_sum + beta * KL`` for the shipped vae on 32 test images."""
    title = "implied beta"
    shapes = [data.spec().shape, (3, 32, 32), (1, 64, 64)]  # Fashion-MNIST's first: the shipped vae's beta
    want = torch.tensor([float(math.prod(s)) for s in shapes], dtype=torch.float64)
    got = torch.tensor([float(call(title, fn, s)) for s in shapes], dtype=torch.float64)
    mistakes = {
        "upside down: averaging divides the reconstruction by P, which is the summed loss with beta = P, divided "
        "by P.": 1 / want,
        "the channels count too: the average runs over every value of the image, C x H x W.":
            torch.tensor([float(h * w) for _, h, w in shapes], dtype=torch.float64),
    }
    model, x = _vae_and_images(32)
    beta = float(got[0])
    with torch.no_grad():
        logits, mu, logvar = model(x, torch.Generator().manual_seed(0))
    recon_sum, kl = losses.reconstruction_bce(logits, x, reduction="mean"), losses.gaussian_kl(mu, logvar, "mean")
    trap = recon_sum / x[0].numel() + kl  # F.binary_cross_entropy's default (mean over pixels) + KL summed over dims
    print(f"shipped vae, 32 test images, your beta = {beta:g}: beta x (trap loss) = {beta * float(trap):.3f}, "
          f"recon_sum + beta x KL = {float(recon_sum + beta * kl):.3f} nats")
    verdict(title, got, want, mistakes, "Count the values the default reduction averages over in one image.")


def check_iwae(fn: Callable[[vae_models.VAE, Tensor, int, torch.Generator], Tensor]) -> None:
    """Exercise 03.4: ``fn(model, x, k, generator)`` -> per-image IWAE estimate of ``-log p(x)`` with ``k``
    importance samples, the noise drawn as ``torch.randn((len(x), k, d), generator=generator)``, as
    :func:`prodlab.models.vae.iwae_nll`; on the shipped vae and 20 test images, ``k = 10``."""
    title = "IWAE estimate"
    model, x = _vae_and_images(20)
    k = 10
    want = vae_models.iwae_nll(model, x, k=k, seed=0)
    log_w = vae_models.log_importance_weights(model, x, k, torch.Generator().manual_seed(0))
    mistakes = {
        "that is the ELBO averaged over the K samples (mean of log w): the IWAE bound is the log of the mean "
        "weight, -log (1/K) sum_k w_k.": -log_w.mean(1),
        "the 1/K inside the log is missing: subtract log K from the logsumexp (add it to the bound).":
            -log_w.logsumexp(1),
        "log K has the wrong sign: -log((1/K) sum w) = log K - logsumexp(log w).": -log_w.logsumexp(1) - math.log(k),
    }
    with torch.no_grad():
        got = call(title, fn, model, x, k, torch.Generator().manual_seed(0))
    verdict(title, got, want, mistakes, "log w = log p(x|z) + log p(z) - log q(z|x) per sample (Bernoulli "
            "p(x|z): minus the BCE summed over pixels); then log K - logsumexp over the K samples.",
            rtol=1e-4, atol=1e-3)
