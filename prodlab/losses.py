"""The GAN and VAE losses of the article (§2.2, §2.3, §4), written once and used by every notebook.

GAN losses take the discriminator's **logits** ``l`` (``D = sigmoid(l)``), never probabilities: with
``log sigmoid(l) = -softplus(-l)`` and ``log(1 - sigmoid(l)) = -softplus(l)`` they stay finite for any
logit, where ``log(D)`` of a saturated ``D = 0.0`` would be ``-inf``.

Reduction convention of the VAE losses (the "sum vs mean" trap): a per-image loss is a **sum** over pixels
and latent dimensions, and the batch loss is the **mean** of the per-image losses. The per-image helpers
return one value per image by default (``reduction='none'``); :func:`vae_loss` takes the batch mean.
``F.mse_loss`` with its default ``reduction='mean'`` also divides by the 784 pixels, which silently weights
the KL term 784 times more than the likelihood and blurs the reconstructions; these helpers never do that.

Article errors corrected here (see notebook 01):
- §4 calls ``L_G = -1/N sum log D(G(z_i))`` a "Ramp Loss"; it is the *non-saturating* generator loss of
  Goodfellow et al. (2014), §3.
- §2.3/§4 say the KL term compares the encoder with "the true data distribution"; it compares the encoder
  ``q(z|x)`` with the *prior* ``p(z) = N(0, I)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------- GAN losses (§2.2, §3.1.2, §4)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Article §4: ``L_D = -1/N sum_i [log D(x_i) + log(1 - D(G(z_i)))]``.

    Binary cross-entropy with label 1 for real and 0 for fake, each averaged over its own batch and added,
    i.e. ``-V(D, G)`` estimated on a batch (§2.2). Note: BCE on the concatenated batch would be half of it.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Article §4 ``L_G = -1/N sum_i log D(G(z_i))``: the non-saturating loss (Goodfellow et al. 2014, §3).

    Not a "Ramp Loss" as the article calls it. Its gradient w.r.t. the logit is ``D - 1``, close to -1
    exactly when the discriminator rejects the fakes (``D ~ 0``), so G still learns early in training.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return F.softplus(-fake_logits).mean()


def generator_loss_saturating(fake_logits: Tensor) -> Tensor:
    """The minimax generator loss ``1/N sum_i log(1 - D(G(z_i)))`` that G minimises (§2.2, the value function).

    Its gradient w.r.t. the logit is ``-D``: it vanishes when D confidently rejects the fakes.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return -F.softplus(fake_logits).mean()


def discriminator_loss_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss ``E[relu(1 - l_real)] + E[relu(1 + l_fake)]`` (Lim & Ye 2017; not in the article).

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def generator_loss_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss ``-E[l_fake]``, paired with :func:`discriminator_loss_hinge`.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return -fake_logits.mean()


def discriminator_loss_lsgan(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Least-squares discriminator loss ``1/2 E[(s_real - 1)^2] + 1/2 E[s_fake^2]`` (Mao et al. 2017).

    Takes raw scores (no sigmoid): the targets are 1 for real and 0 for fake.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return 0.5 * ((real_scores - 1.0) ** 2).mean() + 0.5 * (fake_scores**2).mean()


def generator_loss_lsgan(fake_scores: Tensor) -> Tensor:
    """Least-squares generator loss ``1/2 E[(s_fake - 1)^2]``, paired with :func:`discriminator_loss_lsgan`.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return 0.5 * ((fake_scores - 1.0) ** 2).mean()


def r1_penalty(discriminator: torch.nn.Module, real: Tensor, gamma: float) -> Tensor:
    """R1 gradient penalty ``gamma/2 E_x[||grad_x l(x)||^2]`` on real images (Mescheder et al. 2018).

    ``l`` is the discriminator's logit. Added to ``L_D`` in step 5 (§3.1.2), it penalises a steep discriminator
    around the data; ``create_graph=True`` keeps the gradient differentiable, so the penalty trains D's weights.

    Chapter 02 (notebooks/02_gan.ipynb).
    """
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).flatten(1).sum(dim=1).mean()


# ---------------------------------------------------------------- VAE losses (§2.3, §3.2.2, §4)


def gaussian_kl(mu: Tensor, logvar: Tensor, reduction: str = "none") -> Tensor:
    """Closed-form ``KL(N(mu, diag exp(logvar)) || N(0, I))`` of the article's VAE loss (§2.3, §4).

    The second argument is the **prior** ``p(z) = N(0, I)``, not "the true data distribution" (article error).
    Per sample: ``1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)``, **summed** over latent dims (last axis).
    ``reduction``: ``'none'`` -> one value per sample, ``'mean'`` -> batch mean, ``'sum'`` -> batch sum.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return _reduce(_kl_terms(mu, logvar).sum(dim=-1), reduction)


def free_bits_kl(mu: Tensor, logvar: Tensor, free_bits: float) -> Tensor:
    """The KL term with free bits (Kingma et al. 2016, the IAF paper): ``sum_j max(lambda, mean_i KL_ij)``.

    Each latent dimension's KL, averaged over the batch, counts at least ``free_bits`` nats: below that the
    encoder pays nothing and gets no gradient pulling the dimension onto the prior, a remedy against posterior
    collapse. ``free_bits = 0`` gives the batch mean of :func:`gaussian_kl`.

    Chapter 03 (notebooks/03_vae.ipynb).
    """
    return _kl_terms(mu, logvar).mean(dim=0).clamp(min=free_bits).sum()


def _kl_terms(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu_j, sigma_j^2) || N(0, 1))`` of every latent dimension, elementwise."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def reconstruction_mse(x_hat: Tensor, x: Tensor, reduction: str = "none") -> Tensor:
    """Squared error **summed** over the pixels of each image (§4 "MSE reconstruction"); see the module note.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return _reduce((x_hat - x).pow(2).flatten(1).sum(dim=1), reduction)


def reconstruction_bce(x_out: Tensor, x: Tensor, from_logits: bool = True, reduction: str = "none") -> Tensor:
    """Bernoulli negative log-likelihood ``-sum_p [x log p + (1 - x) log(1 - p)]`` **summed** over pixels.

    ``x_out`` are decoder logits (``from_logits=True``, stable) or probabilities; ``x`` lies in [0, 1].
    For grey pixels it is minimised at ``p = x`` but not zero there (its minimum is the pixels' entropy).

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    if from_logits:
        per_pixel = F.binary_cross_entropy_with_logits(x_out, x, reduction="none")
    else:
        per_pixel = F.binary_cross_entropy(x_out, x, reduction="none")
    return _reduce(per_pixel.flatten(1).sum(dim=1), reduction)


class VAELoss(NamedTuple):
    """The VAE loss of §4 and its two terms, each a batch mean in nats. Chapter 01 (notebooks/01_losses.ipynb)."""

    total: Tensor  # recon + beta * kl
    recon: Tensor  # batch mean of the per-image sum over pixels
    kl: Tensor  # batch mean of the per-image sum over latent dims


def vae_loss(
    x_out: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, beta: float = 1.0, likelihood: str = "mse"
) -> VAELoss:
    """Article §4 VAE loss ``recon + beta * KL`` (negative ELBO for ``beta = 1`` and the matching likelihood).

    Reduction: sum over pixels and latent dims, mean over the batch. ``likelihood='mse'`` takes the decoder
    image, ``'bce'`` its logits. With MSE, ``beta`` plays the role of ``2 sigma^2`` of a Gaussian decoder
    (see :func:`gaussian_nll`).

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    if likelihood == "mse":
        recon = reconstruction_mse(x_out, x, reduction="mean")
    elif likelihood == "bce":
        recon = reconstruction_bce(x_out, x, from_logits=True, reduction="mean")
    else:
        raise ValueError(f"likelihood must be 'mse' or 'bce', not {likelihood!r}")
    kl = gaussian_kl(mu, logvar, reduction="mean")
    return VAELoss(recon + beta * kl, recon, kl)


def gaussian_nll_constant(num_pixels: int, sigma2: float) -> float:
    """The constant ``P/2 log(2 pi sigma^2)`` of a Gaussian decoder with fixed variance over ``P`` pixels.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return 0.5 * num_pixels * math.log(2.0 * math.pi * sigma2)


def gaussian_nll(x_hat: Tensor, x: Tensor, sigma2: float) -> Tensor:
    """Per-image ``-log N(x; x_hat, sigma^2 I) = SSE / (2 sigma^2) + P/2 log(2 pi sigma^2)`` over ``P`` pixels.

    So the article's MSE is a Gaussian likelihood with fixed variance up to a scale and a constant; multiplying
    the negative ELBO by ``2 sigma^2`` gives ``SSE + 2 sigma^2 KL``: the decoder variance acts as ``beta``.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    num_pixels = x[0].numel()
    return reconstruction_mse(x_hat, x) / (2.0 * sigma2) + gaussian_nll_constant(num_pixels, sigma2)


def beta_from_sigma2(sigma2: float) -> float:
    """The ``beta`` of ``SSE + beta * KL`` equivalent to a Gaussian decoder of variance ``sigma2``: ``2 sigma^2``.

    Chapter 01 (notebooks/01_losses.ipynb).
    """
    return 2.0 * sigma2


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', not {reduction!r}")
