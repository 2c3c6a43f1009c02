"""The small, seeded GAN experiments of notebook 01 that check the loss derivations numerically (§2.2, §3.1.2, §4).

Each takes a frozen config (built at call time, so ``PRODLAB_QUICK`` set after import counts), runs in seconds on a
CPU and returns plain NumPy results that the plot helpers draw and the notebook asserts on: generator-loss profiles,
the optimal 1-D discriminator, the ``V(D*, G) = 2 JSD - log 4`` identity, the generator's gradient while D learns,
and toy 2-D GANs on a ring of Gaussians. The VAE-side experiments (ELBO, KL, gradient variance) are in
:mod:`prodlab.toy_vae`; the names the figure catalogue uses are re-exported below.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from prodlab import config, losses
from prodlab.toy_vae import KL_SIZES, gradient_variance, kl_example, kl_monte_carlo  # noqa: F401 (re-exported)

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


def train_1d_discriminator(cfg: OneDConfig | None = None) -> OneDResult:
    """Train an MLP discriminator with the article's L_D on N(data) vs N(gen) and compare it with D*."""
    from scipy import integrate, stats  # SciPy takes seconds to import: only where used

    cfg = cfg or OneDConfig()
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
    from scipy import integrate, stats  # SciPy takes seconds to import: only where used

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
    from scipy import stats  # SciPy takes seconds to import: only where used
    from scipy.spatial.distance import jensenshannon

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


# ---------------------------------------------------------------- a toy GAN on a ring of 8 Gaussians (§3.1.2)


@dataclass(frozen=True)
class ToyGANConfig:
    modes: int = 8
    radius: float = 2.0
    mode_std: float = 0.05
    noise_dim: int = 2
    hidden: int = 64  # 128 trained as well but took 45 s for the six runs of notebook 01; cells stay under 30 s
    steps: int = field(default_factory=lambda: config.budget(2000, 800))
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


TOY_SEEDS = (0, 1, 2)


class _Population(nn.Module):
    """``members`` independent MLPs like :func:`_mlp` (Linear, LeakyReLU 0.2, Linear, LeakyReLU 0.2, Linear), run at
    once with batched matrix products: input and output are members x batch x features.

    Member ``m`` is initialised from its own generator as ``nn.Linear`` would be (uniform, bound 1/sqrt(fan_in)), so
    a member's numbers do not depend on the others; Adam is elementwise, so one Adam over the stacked weights is
    one independent Adam per member. Training six toy GANs this way costs about one run's Python overhead.
    """

    def __init__(self, gens: Sequence[torch.Generator], sizes: Sequence[int]):
        super().__init__()
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1 / math.sqrt(n_in)
            draws = [(torch.rand(n_in, n_out, generator=g), torch.rand(1, n_out, generator=g)) for g in gens]
            self.weights.append(nn.Parameter(torch.stack([w for w, _ in draws]) * 2 * bound - bound))
            self.biases.append(nn.Parameter(torch.stack([b for _, b in draws]) * 2 * bound - bound))

    def forward(self, x: Tensor) -> Tensor:
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            x = F.leaky_relu(x, 0.2) if i < len(self.weights) - 1 else x
        return x


def _train_population(loss_names: Sequence[str], seeds: Sequence[int], cfg: ToyGANConfig) -> np.ndarray:
    """Train one toy GAN per (generator loss, seed) pair with the article's L_D, all at once; samples M x n x 2."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    g_net = _Population(gens, (cfg.noise_dim, cfg.hidden, cfg.hidden, 2))
    d_net = _Population(gens, (2, cfg.hidden, cfg.hidden, 1))
    g_opt = torch.optim.Adam(g_net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    groups = {name: [i for i, n in enumerate(loss_names) if n == name] for name in dict.fromkeys(loss_names)}
    noise = lambda n: torch.stack([torch.randn(n, cfg.noise_dim, generator=g) for g in gens])  # noqa: E731
    for _ in range(cfg.steps):
        real = torch.stack([sample_ring(cfg, cfg.batch, g) for g in gens])
        fake = g_net(noise(cfg.batch))
        # every member has the same batch size, so M * (mean over members) is the sum of the members' L_D
        d_loss = len(gens) * losses.discriminator_loss(d_net(real), d_net(fake.detach()))
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        fake_logits = d_net(fake)
        g_loss = sum(len(idx) * GENERATOR_LOSSES[name](fake_logits[idx]) for name, idx in groups.items())
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
    with torch.no_grad():
        return g_net(noise(cfg.n_eval)).numpy()


def toy_gan_runs(seeds: Sequence[int] = TOY_SEEDS, cfg: ToyGANConfig | None = None,
                 loss_names: Sequence[str] = tuple(GENERATOR_LOSSES)) -> dict[str, list[ToyGANResult]]:
    """Each generator loss, one run per seed, trained together: mode coverage varies from run to run, so show
    several. A run's ``seconds`` is its share of the joint training time."""
    cfg = cfg or ToyGANConfig()
    unknown = sorted(set(loss_names) - set(GENERATOR_LOSSES))
    if unknown:
        raise KeyError(f"unknown generator loss {unknown}; known: {sorted(GENERATOR_LOSSES)}")
    pairs = [(name, s) for name in loss_names for s in seeds]
    start = time.perf_counter()
    with config.one_thread():
        samples = _train_population([n for n, _ in pairs], [s for _, s in pairs], cfg)
    seconds = (time.perf_counter() - start) / len(pairs)
    runs: dict[str, list[ToyGANResult]] = {name: [] for name in loss_names}
    for (name, _), points in zip(pairs, samples, strict=True):
        runs[name].append(ToyGANResult(points, ring_modes(cfg), *mode_coverage(points, cfg), seconds))
    return runs


def train_toy_gan(generator_loss: str, cfg: ToyGANConfig | None = None) -> ToyGANResult:
    """Train an MLP GAN with the article's L_D and the named generator loss (``GENERATOR_LOSSES``), seed
    ``cfg.seed``; the same numbers as that run inside :func:`toy_gan_runs`."""
    cfg = cfg or ToyGANConfig()
    return toy_gan_runs((cfg.seed,), cfg, (generator_loss,))[generator_loss][0]


class GeneratorGradients(NamedTuple):
    d_steps: np.ndarray  # discriminator-only training steps so far
    d_fake: np.ndarray  # mean D(G(z)) over the probe batch
    grad_norm: dict[str, np.ndarray]  # norm of the generator's weight gradient, per generator loss


def generator_gradient_norms(cfg: ToyGANConfig | None = None, d_steps: int = 600,
                             every: int = 50) -> GeneratorGradients:
    """Train only D on the ring against a frozen, untrained G; every ``every`` steps measure how large a
    gradient each generator loss sends to G's weights (same probe batch for both). Shows saturation (§4)."""
    cfg = cfg or ToyGANConfig()
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
