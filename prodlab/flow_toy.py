"""Diffusion theory on chapter 01's ring of Gaussians, where every score is known exactly (chapter 08).

The ring (:func:`prodlab.toy.ring_modes`, ``mode_std``) is a uniform mixture of isotropic Gaussians
``N(mu_k, sd^2 I)``. The forward process ``x_t = a x_0 + s eps`` keeps it a mixture: component ``k`` becomes
``N(a mu_k, (a^2 sd^2 + s^2) I)``. So the noised density ``p_t``, its score, the posterior mean ``E[x_0 | x_t]``, the
class posterior ``p(k | x_t)`` (a mode is a class) and the flow's ideal velocity are in closed form, and notebook 08
checks on them Tweedie's identity and classifier-free guidance as Bayes' rule. A small velocity MLP trained on the
ring in seconds (:func:`train_velocity`) shows a learned field and compares the ODE (Euler) sampler with the
ancestral one (:func:`sampler_rows`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prodlab import config, diffusion, toy


@dataclass(frozen=True)
class Ring:
    """The data: a uniform mixture of ``N(means[k], std^2 I)`` in 2-D (float64, for exact checks)."""

    means: Tensor  # K x 2
    std: float

    @staticmethod
    def of(cfg: toy.ToyGANConfig | None = None) -> Ring:
        """Chapter 01's ring of Gaussians (its ``ToyGANConfig``: 8 modes on a circle)."""
        cfg = cfg or toy.ToyGANConfig()
        return Ring(torch.from_numpy(toy.ring_modes(cfg)), cfg.mode_std)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` points of the data distribution (float32, as a network sees them)."""
        which = torch.randint(len(self.means), (n,), generator=generator)
        return (self.means[which] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()


def component_log_densities(ring: Ring, x: Tensor, t: Tensor, objective: str = "flow") -> Tensor:
    """``log N(x_t; a mu_k, (a^2 sd^2 + s^2) I)`` for every point (rows) and mode (columns): ``log p_t(x | k)``.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    a, s = diffusion.coefficients(t.reshape(-1, 1).double(), objective)
    var = a**2 * ring.std**2 + s**2  # N x 1
    d2 = (x.double()[:, None, :] - a[:, None, :] * ring.means[None]).pow(2).sum(-1)  # N x K
    return -d2 / (2 * var) - torch.log(2 * math.pi * var)


def log_density(ring: Ring, x: Tensor, t: Tensor, objective: str = "flow", label: int | None = None) -> Tensor:
    """``log p_t(x)`` of the noised mixture, or ``log p_t(x | label)`` of one mode. Chapter 08."""
    comp = component_log_densities(ring, x, t, objective)
    if label is not None:
        return comp[:, label]
    return torch.logsumexp(comp, dim=1) - math.log(len(ring.means))


def class_log_posterior(ring: Ring, x: Tensor, t: Tensor, label: int, objective: str = "flow") -> Tensor:
    """``log p(label | x_t)`` by Bayes' rule with equal priors: the ideal noisy classifier. Chapter 08."""
    comp = component_log_densities(ring, x, t, objective)
    return comp[:, label] - torch.logsumexp(comp, dim=1)


def grad_x(fn: Any, x: Tensor) -> Tensor:
    """The gradient of ``fn(x).sum()`` with respect to ``x``: autograd's score of a log density (float64)."""
    x = x.detach().double().requires_grad_(True)
    return torch.autograd.grad(fn(x).sum(), x)[0]


def exact_score(ring: Ring, x: Tensor, t: Tensor, objective: str = "flow", label: int | None = None) -> Tensor:
    """``grad_x log p_t(x)`` (or of ``p_t(x | label)``) by autograd on the exact density. Chapter 08."""
    return grad_x(lambda z: log_density(ring, z, t, objective, label), x)


def posterior_mean(ring: Ring, x: Tensor, t: Tensor, objective: str = "flow", label: Tensor | None = None) -> Tensor:
    """``E[x_0 | x_t]`` by Bayes' rule, without any score: the mixture of each mode's Gaussian posterior mean
    ``mu_k + a sd^2/(a^2 sd^2 + s^2) (x_t - a mu_k)``, weighted by ``p(k | x_t)``; with ``label`` (one per point)
    ``E[x_0 | x_t, k]``, and the label ``K`` (the number of modes) means "no label". Chapter 08."""
    a, s = diffusion.coefficients(t.reshape(-1, 1).double(), objective)
    gain = (a * ring.std**2 / (a**2 * ring.std**2 + s**2))[:, :, None]  # N x 1 x 1
    x = x.double()
    per_mode = ring.means[None] + gain * (x[:, None, :] - a[:, None, :] * ring.means[None])  # N x K x 2
    weights = torch.softmax(component_log_densities(ring, x, t, objective), dim=1)
    if label is not None:
        known = label < len(ring.means)
        weights = torch.where(known[:, None], nn.functional.one_hot(label.clamp(max=len(ring.means) - 1),
                                                                     len(ring.means)).double(), weights)
    return (weights[:, :, None] * per_mode).sum(1)


class ExactVelocity(nn.Module):
    """The flow's ideal velocity ``E[eps - x_0 | x_t] = (x_t - E[x_0 | x_t]) / t``: what a perfect network predicts,
    conditional on a mode when given its label (``K``: no label, as for classifier-free guidance)."""

    def __init__(self, ring: Ring):
        super().__init__()
        self.ring = ring

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return ((x.double() - posterior_mean(self.ring, x, t, label=y)) / t.double()[:, None]).to(x.dtype)


class VelocityMLP(nn.Module):
    """A small MLP ``v(x_t, t)`` for 2-D points; ``t`` enters as sines and cosines. Signature of ``diffusion.Net``."""

    def __init__(self, hidden: int = 128, frequencies: int = 4):
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32))
        self.net = nn.Sequential(nn.Linear(2 + 2 * frequencies, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        angles = t.float()[:, None] * self.freqs
        return self.net(torch.cat([x.float(), angles.sin(), angles.cos()], dim=1))


@dataclass(frozen=True)
class FlowToyConfig:
    hidden: int = 128
    steps: int = field(default_factory=lambda: config.budget(3000, 600))
    batch: int = 512
    lr: float = 2e-3
    seed: int = 0


def train_velocity(ring: Ring, cfg: FlowToyConfig | None = None) -> tuple[VelocityMLP, list[float], float]:
    """Flow matching on the ring with the package's loss (``diffusion.diffusion_loss``, Adam, cosine decay): the
    model, its loss per step and the CPU seconds. Chapter 08 (notebooks/08_diffusion.ipynb)."""
    cfg = cfg or FlowToyConfig()
    config.seed_everything(cfg.seed)
    model, g = VelocityMLP(cfg.hidden), torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    losses, start = [], time.process_time()
    for _ in range(cfg.steps):
        loss = diffusion.diffusion_loss(model, ring.sample(cfg.batch, g), None, "flow", g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return model.eval(), losses, time.process_time() - start


def ring_quality(ring: Ring, points: Tensor) -> dict[str, float]:
    """How ring-like ``points`` are: the share within 5 std of a mode (``near``), the modes that get 2% of the points
    (chapter 01's ``mode_coverage``) and ``spread``, the rms distance to the nearest mode over the data's (1 = right
    width, above 1 = blurred)."""
    cfg = toy.ToyGANConfig()
    _, covered, near = toy.mode_coverage(points.double().numpy(), cfg)
    d2 = (points.double()[:, None, :] - ring.means[None]).pow(2).sum(-1).min(1).values
    return {"near": near, "modes": covered, "spread": float(d2.mean().sqrt() / (math.sqrt(2) * ring.std))}


def sampler_rows(ring: Ring, nets: dict[str, nn.Module], steps: Sequence[int], samplers: Sequence[str],
                 n: int, seed: int = 0) -> list[dict[str, Any]]:
    """For each network, sampler and number of steps: ``n`` samples from the same noise, measured with
    :func:`ring_quality`, and the CPU milliseconds per 1,000 samples. Chapter 08 (notebooks/08_diffusion.ipynb)."""
    rows = []
    for name, net in nets.items():
        for sampler in samplers:
            for k in steps:
                start = time.process_time()
                with torch.no_grad():
                    x = diffusion.sample(net, (n, 2), "flow", sampler, k, generator=torch.Generator().manual_seed(seed))
                ms = 1000 * (time.process_time() - start) * 1000 / n
                rows.append({"net": name, "sampler": sampler, "steps": k, **ring_quality(ring, x),
                             "ms_per_1000": round(ms, 2)})
    return rows


def field_on_grid(net: nn.Module, t: float, lim: float = 3.0, num: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """The velocity ``net`` predicts at time ``t`` on a ``num`` x ``num`` grid over ``[-lim, lim]^2``: points and
    velocities (each ``num^2`` x 2), for a quiver plot."""
    axis = torch.linspace(-lim, lim, num)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        v = net(grid, torch.full((len(grid),), float(t)))
    return grid.numpy(), v.float().numpy()
