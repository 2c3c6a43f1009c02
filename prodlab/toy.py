"""The small, seeded experiments of notebook 01 that check the loss derivations numerically (§2.2, §2.3, §4).

Each takes a frozen config, runs in seconds on a CPU and returns plain NumPy results that the plot helpers
draw and the notebook asserts on: generator-loss profiles, the optimal 1-D discriminator, the
``V(D*, G) = 2 JSD - log 4`` identity, a Monte-Carlo KL, reparameterisation vs score-function gradient
variance, a linear-Gaussian ELBO, and a toy 2-D GAN on a ring of Gaussians.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch
from scipy import integrate, stats
from scipy.spatial.distance import jensenshannon
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from prodlab import config, losses

GENERATOR_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {
    "saturating": losses.generator_loss_saturating,
    "non-saturating": losses.generator_loss_nonsaturating,
}


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
        nn.Linear(hidden, n_out),
    )


# ---------------------------------------------------------------- saturating vs non-saturating (§4 L_G)


class LossProfile(NamedTuple):
    d: np.ndarray  # D(G(z)) = sigmoid(logit) on a grid
    loss: dict[str, np.ndarray]  # generator loss of one fake with that D, per loss name
    grad: dict[str, np.ndarray]  # its derivative w.r.t. the discriminator logit (by autograd)


def generator_loss_profiles(logit_min: float = -9.0, logit_max: float = 9.0, num: int = 401) -> LossProfile:
    """Evaluate both generator losses and their autograd gradients for a single fake over a logit grid."""
    logits = torch.linspace(logit_min, logit_max, num, dtype=torch.float64)
    loss, grad = {}, {}
    for name, fn in GENERATOR_LOSSES.items():
        loss[name] = torch.func.vmap(fn)(logits).numpy()
        grad[name] = torch.func.vmap(torch.func.grad(fn))(logits).numpy()
    return LossProfile(torch.sigmoid(logits).numpy(), loss, grad)


# ---------------------------------------------------------------- the optimal discriminator (§2.2)


@dataclass(frozen=True)
class OneDConfig:
    data_mean: float = 0.0
    data_std: float = 1.0
    gen_mean: float = 2.0
    gen_std: float = 0.5
    steps: int = field(default_factory=lambda: config.budget(3000, 800))
    batch: int = 512
    hidden: int = 64
    lr: float = 2e-3
    seed: int = 0
    grid_min: float = -4.0
    grid_max: float = 5.0
    grid_num: int = 901
    bulk_mass: float = 0.98  # the central share of the mixture's mass on which D is compared with D*


class OneDResult(NamedTuple):
    x: np.ndarray
    p_data: np.ndarray
    p_gen: np.ndarray
    d_trained: np.ndarray  # sigmoid of the trained discriminator's logit
    d_star: np.ndarray  # p_data / (p_data + p_gen)
    bulk: np.ndarray  # bool mask: x inside the central ``bulk_mass`` of (p_data + p_gen) / 2
    v_trained: float  # V(D_trained, G) by integration on the grid
    v_star: float  # V(D*, G) by integration on the grid


def _fit_1d_discriminator(cfg: OneDConfig) -> nn.Module:
    gen = config.seed_everything(cfg.seed)
    net = _mlp(1, cfg.hidden, 1)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    for _ in range(cfg.steps):
        real = cfg.data_mean + cfg.data_std * torch.randn(cfg.batch, 1, generator=gen)
        fake = cfg.gen_mean + cfg.gen_std * torch.randn(cfg.batch, 1, generator=gen)
        loss = losses.discriminator_loss(net(real), net(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net


def train_1d_discriminator(cfg: OneDConfig = OneDConfig()) -> OneDResult:
    """Train an MLP discriminator with the article's L_D on N(data) vs N(gen) and compare it with D*."""
    with config.one_thread():
        net = _fit_1d_discriminator(cfg)
    x = np.linspace(cfg.grid_min, cfg.grid_max, cfg.grid_num)
    with torch.no_grad():
        logit = net(torch.from_numpy(x).float()[:, None])[:, 0].double()
    log_p, log_q = stats.norm.logpdf(x, cfg.data_mean, cfg.data_std), stats.norm.logpdf(x, cfg.gen_mean, cfg.gen_std)
    p, q = np.exp(log_p), np.exp(log_q)
    log_d_star, log_1m_d_star = log_p - np.logaddexp(log_p, log_q), log_q - np.logaddexp(log_p, log_q)
    log_d, log_1m_d = -F.softplus(-logit).numpy(), -F.softplus(logit).numpy()
    v_trained = integrate.trapezoid(p * log_d + q * log_1m_d, x)
    v_star = integrate.trapezoid(p * log_d_star + q * log_1m_d_star, x)
    cdf = 0.5 * (stats.norm.cdf(x, cfg.data_mean, cfg.data_std) + stats.norm.cdf(x, cfg.gen_mean, cfg.gen_std))
    tail = (1.0 - cfg.bulk_mass) / 2
    bulk = (cdf >= tail) & (cdf <= 1.0 - tail)
    return OneDResult(x, p, q, torch.sigmoid(logit).numpy(), np.exp(log_d_star), bulk, float(v_trained), float(v_star))


# ---------------------------------------------------------------- V(D*, G) = 2 JSD - log 4 (§2.2)


def value_at_optimum(data_mean: float, data_std: float, gen_mean: float, gen_std: float) -> float:
    """``V(D*, G) = E_pdata[log D*] + E_pg[log(1 - D*)]`` for two 1-D Gaussians, by adaptive quadrature."""
    p, q = stats.norm(data_mean, data_std), stats.norm(gen_mean, gen_std)

    def integrand(x: float) -> float:
        lp, lq = p.logpdf(x), q.logpdf(x)
        log_sum = np.logaddexp(lp, lq)
        return math.exp(lp) * (lp - log_sum) + math.exp(lq) * (lq - log_sum)

    lo = min(data_mean - 12 * data_std, gen_mean - 12 * gen_std)
    hi = max(data_mean + 12 * data_std, gen_mean + 12 * gen_std)
    value, _ = integrate.quad(integrand, lo, hi, points=sorted({data_mean, gen_mean}), limit=200)
    return float(value)


def jsd_on_grid(data_mean: float, data_std: float, gen_mean: float, gen_std: float, num: int = 200_001) -> float:
    """Jensen-Shannon divergence (nats) of two 1-D Gaussians: SciPy's ``jensenshannon`` on a fine grid.

    Independent of :func:`value_at_optimum` (a different formula and a different integrator).
    """
    lo = min(data_mean - 12 * data_std, gen_mean - 12 * gen_std)
    hi = max(data_mean + 12 * data_std, gen_mean + 12 * gen_std)
    x = np.linspace(lo, hi, num)
    distance = jensenshannon(stats.norm.pdf(x, data_mean, data_std), stats.norm.pdf(x, gen_mean, gen_std))
    return float(distance**2)


JSD_SHIFTS = tuple(np.round(np.linspace(0.0, 6.0, 13), 2))


class JSDCurve(NamedTuple):
    shifts: np.ndarray  # gen_mean - data_mean
    v_star: np.ndarray
    jsd: np.ndarray


def jsd_identity(shifts: Sequence[float], gen_std: float = 1.0) -> JSDCurve:
    """``V(D*, G)`` and ``JSD(p_data || p_g)`` for ``p_data = N(0, 1)`` and ``p_g = N(shift, gen_std^2)``."""
    v = [value_at_optimum(0.0, 1.0, s, gen_std) for s in shifts]
    j = [jsd_on_grid(0.0, 1.0, s, gen_std) for s in shifts]
    return JSDCurve(np.asarray(shifts, dtype=float), np.asarray(v), np.asarray(j))


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


def gradient_variance(cfg: GradVarConfig = GradVarConfig()) -> GradVariance:
    """Both estimators by autograd on the same draws: pathwise ``d f(mu + sigma eps)/d mu`` and score function
    ``f(z) d log q(z)/d mu`` (REINFORCE, no baseline)."""
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


# ---------------------------------------------------------------- a toy GAN on a ring of 8 Gaussians (§3.1.2)


@dataclass(frozen=True)
class ToyGANConfig:
    modes: int = 8
    radius: float = 2.0
    mode_std: float = 0.05
    noise_dim: int = 2
    hidden: int = 128
    steps: int = field(default_factory=lambda: config.budget(2000, 400))
    batch: int = 256
    lr: float = 1e-3
    seed: int = 0
    n_eval: int = 2000
    near: float = 0.25  # a sample "hits" a mode when within this distance of its centre (5 mode_std)
    min_share: float = 0.02  # a mode is covered when it receives at least this share of the samples


class ToyGANResult(NamedTuple):
    samples: np.ndarray  # n_eval x 2 generated points
    modes: np.ndarray  # modes x 2 centres
    counts: np.ndarray  # samples within ``near`` of each mode
    covered: int  # modes with at least ``min_share`` of the samples
    quality: float  # share of samples within ``near`` of some mode
    seconds: float


def ring_modes(cfg: ToyGANConfig) -> np.ndarray:
    """The centres of the ``cfg.modes`` Gaussians, evenly spaced on a circle of ``cfg.radius``."""
    angle = 2 * np.pi * np.arange(cfg.modes) / cfg.modes
    return cfg.radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def sample_ring(cfg: ToyGANConfig, n: int, gen: torch.Generator) -> Tensor:
    """``n`` points of the real distribution: a uniform mixture of the ring's Gaussians."""
    centres = torch.from_numpy(ring_modes(cfg)).float()
    which = torch.randint(cfg.modes, (n,), generator=gen)
    return centres[which] + cfg.mode_std * torch.randn(n, 2, generator=gen)


def mode_coverage(points: np.ndarray, cfg: ToyGANConfig) -> tuple[np.ndarray, int, float]:
    """Hits per mode, number of covered modes and share of points near any mode (see ``ToyGANConfig``)."""
    dist = np.linalg.norm(points[:, None, :] - ring_modes(cfg)[None], axis=2)
    nearest, hit = dist.argmin(axis=1), dist.min(axis=1) <= cfg.near
    counts = np.bincount(nearest[hit], minlength=cfg.modes)
    return counts, int((counts >= cfg.min_share * len(points)).sum()), float(hit.mean())


def train_toy_gan(generator_loss: str, cfg: ToyGANConfig = ToyGANConfig()) -> ToyGANResult:
    """Train an MLP GAN with the article's L_D and the named generator loss (``GENERATOR_LOSSES``)."""
    start = time.perf_counter()
    with config.one_thread():
        samples = _train_toy_gan(GENERATOR_LOSSES[generator_loss], cfg)
    counts, covered, quality = mode_coverage(samples, cfg)
    return ToyGANResult(samples, ring_modes(cfg), counts, covered, quality, time.perf_counter() - start)


TOY_SEEDS = (0, 1, 2)


def toy_gan_runs(seeds: Sequence[int] = TOY_SEEDS, cfg: ToyGANConfig = ToyGANConfig()) -> dict[str, list[ToyGANResult]]:
    """Both generator losses, one run per seed: mode coverage varies from run to run, so show several."""
    return {name: [train_toy_gan(name, replace(cfg, seed=s)) for s in seeds] for name in GENERATOR_LOSSES}


def _train_toy_gan(g_loss_fn: Callable[[Tensor], Tensor], cfg: ToyGANConfig) -> np.ndarray:
    gen = config.seed_everything(cfg.seed)
    g_net, d_net = _mlp(cfg.noise_dim, cfg.hidden, 2), _mlp(2, cfg.hidden, 1)
    g_opt = torch.optim.Adam(g_net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    for _ in range(cfg.steps):
        real = sample_ring(cfg, cfg.batch, gen)
        fake = g_net(torch.randn(cfg.batch, cfg.noise_dim, generator=gen))
        d_loss = losses.discriminator_loss(d_net(real), d_net(fake.detach()))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        g_loss = g_loss_fn(d_net(fake))
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
    with torch.no_grad():
        return g_net(torch.randn(cfg.n_eval, cfg.noise_dim, generator=gen)).numpy()


class GeneratorGradients(NamedTuple):
    d_steps: np.ndarray  # discriminator-only training steps so far
    d_fake: np.ndarray  # mean D(G(z)) over the probe batch
    grad_norm: dict[str, np.ndarray]  # norm of the generator's weight gradient, per generator loss


def generator_gradient_norms(cfg: ToyGANConfig = ToyGANConfig(), d_steps: int = 300,
                             every: int = 25) -> GeneratorGradients:
    """Train only D on the ring against a frozen, untrained G; every ``every`` steps measure how large a
    gradient each generator loss sends to G's weights (same probe batch for both). Shows saturation (§4)."""
    with config.one_thread():
        gen = config.seed_everything(cfg.seed)
        g_net, d_net = _mlp(cfg.noise_dim, cfg.hidden, 2), _mlp(2, cfg.hidden, 1)
        d_opt = torch.optim.Adam(d_net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        probe = torch.randn(cfg.batch, cfg.noise_dim, generator=gen)
        steps, d_fake, norms = [], [], {name: [] for name in GENERATOR_LOSSES}
        for step in range(d_steps + 1):
            if step % every == 0:
                steps.append(step)
                for name, fn in GENERATOR_LOSSES.items():
                    grads = torch.autograd.grad(fn(d_net(g_net(probe))), list(g_net.parameters()))
                    norms[name].append(torch.cat([g.flatten() for g in grads]).norm().item())
                with torch.no_grad():
                    d_fake.append(torch.sigmoid(d_net(g_net(probe))).mean().item())
            with torch.no_grad():
                fake = g_net(torch.randn(cfg.batch, cfg.noise_dim, generator=gen))
            d_loss = losses.discriminator_loss(d_net(sample_ring(cfg, cfg.batch, gen)), d_net(fake))
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
    return GeneratorGradients(np.asarray(steps), np.asarray(d_fake), {k: np.asarray(v) for k, v in norms.items()})
