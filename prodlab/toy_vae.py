"""The small, seeded VAE-side experiments of notebook 01 (§2.3, §3.2.2, §4), split from :mod:`prodlab.toy`.

An ELBO check in a linear-Gaussian model whose posterior is known, a Monte-Carlo check of the closed-form Gaussian
KL, and the variance of the reparameterisation gradient against the score-function (REINFORCE) one. Each runs in
seconds on a CPU and returns plain NumPy or float results that notebook 01 prints, plots and asserts on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from prodlab import config, losses

# ---------------------------------------------------------------- ELBO in a model with a known posterior (§2.3)


class ELBOCheck(NamedTuple):
    log_px: float  # exact log-evidence
    elbo: float  # E_q[log p(x|z)] - KL(q || p(z))
    kl_posterior: float  # KL(q(z|x) || p(z|x)), the gap


def linear_gaussian_elbo(x: float, q_mean: float, q_std: float, w: float = 1.5, b: float = 0.5,
                         noise_std: float = 0.8) -> ELBOCheck:
    """Model ``z ~ N(0, 1)``, ``x | z ~ N(w z + b, noise_std^2)``; encoder ``q(z|x) = N(q_mean, q_std^2)``.

    Everything is closed form: ``p(x) = N(b, w^2 + s^2)`` and the posterior is Gaussian, so
    ``log p(x) = ELBO + KL(q || p(z|x))`` can be checked to machine precision. The ELBO's KL term uses
    :func:`prodlab.losses.gaussian_kl` against the **prior** N(0, 1).
    """
    s2 = noise_std**2
    as64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    log_px = Normal(as64(b), as64(math.sqrt(w**2 + s2))).log_prob(as64(x)).item()
    expected_loglik = -0.5 * math.log(2 * math.pi * s2) - ((x - w * q_mean - b) ** 2 + w**2 * q_std**2) / (2 * s2)
    kl_prior = losses.gaussian_kl(torch.tensor([[q_mean]], dtype=torch.float64),
                                  torch.tensor([[2 * math.log(q_std)]], dtype=torch.float64)).item()
    post_mean, post_std = linear_gaussian_posterior(x, w, b, noise_std)
    gap = kl_divergence(Normal(as64(q_mean), as64(q_std)), Normal(as64(post_mean), as64(post_std))).item()
    return ELBOCheck(log_px, expected_loglik - kl_prior, gap)


def linear_gaussian_posterior(x: float, w: float = 1.5, b: float = 0.5, noise_std: float = 0.8) -> tuple[float, float]:
    """Mean and standard deviation of the exact posterior ``p(z|x)`` of :func:`linear_gaussian_elbo`'s model."""
    s2 = noise_std**2
    post_var = 1.0 / (1.0 + w**2 / s2)
    return post_var * w * (x - b) / s2, math.sqrt(post_var)


# ---------------------------------------------------------------- Monte-Carlo KL (§2.3, §4)


KL_EXAMPLE_MU = (0.5, -1.0, 0.2, 1.5, 0.0, 0.3, -0.7, 0.1)  # one encoder output q(z|x), 8 latent dims
KL_EXAMPLE_LOGVAR = (-1.0, 0.5, 0.0, -2.0, 0.3, -0.5, 1.0, 0.0)
KL_SIZES = (10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000)


def kl_example() -> tuple[Tensor, Tensor]:
    """``(mu, logvar)`` of the encoder output used in notebook 01 and its figures, in float64."""
    return torch.tensor(KL_EXAMPLE_MU, dtype=torch.float64), torch.tensor(KL_EXAMPLE_LOGVAR, dtype=torch.float64)


class KLConvergence(NamedTuple):
    sizes: np.ndarray
    estimate: np.ndarray  # mean of log q(z) - log p(z), z ~ q
    stderr: np.ndarray  # its standard error: sample std / sqrt(n)
    exact: float  # closed form, prodlab.losses.gaussian_kl


def kl_monte_carlo(mu: Tensor, logvar: Tensor, sizes: Sequence[int], seed: int = 0) -> KLConvergence:
    """Estimate ``KL(q || N(0, I))`` for one diagonal Gaussian ``q`` with fresh samples for each size.

    The log-densities come from ``torch.distributions.Normal``, not from the closed form being checked.
    """
    gen = config.seed_everything(seed)
    q, prior = Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    estimates, errors = [], []
    for n in sizes:
        z = mu + (0.5 * logvar).exp() * torch.randn(n, mu.numel(), generator=gen, dtype=mu.dtype)
        log_ratio = (q.log_prob(z) - prior.log_prob(z)).sum(dim=1)
        estimates.append(log_ratio.mean().item())
        errors.append(log_ratio.std().item() / math.sqrt(n))
    exact = losses.gaussian_kl(mu[None], logvar[None]).item()
    return KLConvergence(np.asarray(sizes), np.asarray(estimates), np.asarray(errors), exact)


# ---------------------------------------------------------------- reparameterisation vs REINFORCE (§3.2.2)


@dataclass(frozen=True)
class GradVarConfig:
    """Estimate ``d/dmu E_{z ~ N(mu, sigma^2)}[z^2] = 2 mu`` with ``n`` samples, ``repeats`` times per ``n``."""

    mu: float = 2.0
    sigma: float = 1.0
    sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    repeats: int = 4000  # cheap (vectorised), so quick mode keeps it: the variance checks need it
    seed: int = 0


class GradVariance(NamedTuple):
    sizes: np.ndarray
    mean: dict[str, np.ndarray]  # average estimate per n ("reparameterisation", "REINFORCE")
    var: dict[str, np.ndarray]  # empirical variance of the estimate per n
    var_theory: dict[str, np.ndarray]  # closed-form variance per n
    true_grad: float


def gradient_variance(cfg: GradVarConfig | None = None) -> GradVariance:
    """Both estimators by autograd on the same draws: pathwise ``d f(mu + sigma eps)/d mu`` and score function
    ``f(z) d log q(z)/d mu`` (REINFORCE, no baseline)."""
    cfg = cfg or GradVarConfig()
    gen = config.seed_everything(cfg.seed)
    mean: dict[str, list[float]] = {"reparameterisation": [], "REINFORCE": []}
    var: dict[str, list[float]] = {"reparameterisation": [], "REINFORCE": []}
    for n in cfg.sizes:
        eps = torch.randn(cfg.repeats, n, generator=gen, dtype=torch.float64)
        for name in mean:
            mu = torch.full((cfg.repeats, 1), cfg.mu, dtype=torch.float64, requires_grad=True)
            z = mu + cfg.sigma * eps
            if name == "reparameterisation":
                surrogate = z.pow(2).mean(dim=1).sum()
            else:
                z = z.detach()
                surrogate = (z.pow(2) * Normal(mu, cfg.sigma).log_prob(z)).mean(dim=1).sum()
            (grad,) = torch.autograd.grad(surrogate, mu)
            mean[name].append(grad.mean().item())
            var[name].append(grad.var().item())
    sizes = np.asarray(cfg.sizes, dtype=float)
    m, s2 = cfg.mu, cfg.sigma**2
    theory = {
        "reparameterisation": 4 * s2 / sizes,
        "REINFORCE": ((m**4 + 18 * m**2 * s2 + 15 * s2**2) / s2 - 4 * m**2) / sizes,
    }
    return GradVariance(sizes, {k: np.asarray(v) for k, v in mean.items()},
                        {k: np.asarray(v) for k, v in var.items()}, theory, 2 * cfg.mu)
