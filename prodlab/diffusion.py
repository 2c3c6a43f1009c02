"""Diffusion and flow matching in a few formulas: the forward process, the objective, the samplers, guidance.

Chapter 08 (notebooks/08_diffusion.ipynb) writes each formula by hand and checks it against these functions. Time
runs from ``t = 0`` (data ``x_0``) to ``t = 1`` (noise ``eps ~ N(0, I)``); both objectives blend the two,
``x_t = a(t) x_0 + s(t) eps``, and differ in the blend and in what the network predicts:

* ``"eps"``, DDPM (Ho et al. 2020) in continuous time with the cosine schedule (Nichol & Dhariwal 2021):
  ``a = sqrt(abar(t))``, ``s = sqrt(1 - abar(t))``; the network predicts the noise ``eps``. Its loss
  ``||eps_hat - eps||^2`` is the ELBO of chapter 03 with the weight of each ``t`` changed (Ho et al. 2020, §3.4;
  Kingma et al. 2021).
* ``"flow"``, flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023): ``a = 1 - t``, ``s = t``, a
  straight line from data to noise; the network predicts its velocity ``v = eps - x_0``, a plain regression.

Sampling integrates from ``t = 1`` to ``t = 0``. DDIM (Song et al. 2021) re-blends the predicted ``x_0`` and
``eps`` at the next time: ``x_t' = a(t') x0_hat + s(t') eps_hat``; for the flow's straight lines that is exactly
an Euler step ``x_t' = x_t + (t' - t) v_hat``. Heun's method (Karras et al. 2022) corrects the Euler step with the
slope at its end point. The ancestral sampler (Ho et al. 2020, Alg. 2) instead draws ``x_t'`` from the forward
process's posterior ``q(x_t' | x_t, x_0 = x0_hat)``, fresh noise at every step. Classifier-free guidance (Ho & Salimans
2022) mixes the conditional and the unconditional prediction: ``u + w (c - u)``.

The prediction is also a score: ``grad log p_t(x_t) = -E[eps | x_t] / s`` and Tweedie's identity
``E[x_0 | x_t] = (x_t + s^2 grad log p_t) / a`` (Efron 2011) is the ``x0_hat`` above. In the log-SNR
``lambda = log a^2/s^2`` every objective is a weighted ELBO (Kingma & Gao 2023); the flow's weight is
``exp(-lambda / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Net = Callable[[Tensor, Tensor, Tensor | None], Tensor]  # f(x_t, t, y) -> prediction, like models.unet.UNet
Null = int | tuple[int, ...]  # the "no label" token: the class count, or one per label column (with attributes)

OBJECTIVES = ("flow", "eps")
SAMPLERS = {"flow": ("ancestral", "euler", "heun"), "eps": ("ancestral", "ddim")}  # last: the default
COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal's cosine schedule
MIN_ALPHA_BAR = 1e-4  # abar(1) of the cosine schedule is 0; kept above it so that x0_hat stays finite


def alpha_bar(t: Tensor) -> Tensor:
    """The cosine schedule ``abar(t) = cos^2(pi/2 (t + s)/(1 + s)) / cos^2(pi/2 s/(1 + s))``, floored.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    def f(u: Tensor) -> Tensor:
        return torch.cos((u + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2

    return (f(t) / f(torch.zeros_like(t))).clamp(MIN_ALPHA_BAR, 1.0)  # the same arithmetic: exactly 1 at t = 0


def coefficients(t: Tensor, objective: str) -> tuple[Tensor, Tensor]:
    """``(a(t), s(t))`` of ``x_t = a x_0 + s eps`` for the objective (see the module docstring).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    if objective == "flow":
        return 1 - t, t
    if objective == "eps":
        ab = alpha_bar(t)
        return ab.sqrt(), (1 - ab).sqrt()
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")


def _col(t: Tensor, like: Tensor) -> Tensor:
    """Per-example times as a column that broadcasts over an image (or latent) batch."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def add_noise(x0: Tensor, noise: Tensor, t: Tensor, objective: str) -> Tensor:
    """The forward process: ``x_t = a(t) x_0 + s(t) eps``, in closed form for any ``t`` (one per example).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    a, s = coefficients(_col(t, x0), objective)
    return a * x0 + s * noise


def target(x0: Tensor, noise: Tensor, objective: str) -> Tensor:
    """What the network learns to predict: the noise (``eps``) or the velocity ``eps - x_0`` (``flow``)."""
    return noise if objective == "eps" else noise - x0


def to_x0_eps(x_t: Tensor, pred: Tensor, t: Tensor, objective: str) -> tuple[Tensor, Tensor]:
    """The network's guess of ``(x_0, eps)`` at ``x_t`` from its prediction, for either objective.

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    if objective == "flow":  # x_t = (1-t) x0 + t eps and v = eps - x0
        tc = _col(t, x_t)
        return x_t - tc * pred, x_t + (1 - tc) * pred
    a, s = coefficients(_col(t, x_t), objective)
    return ((x_t - s * pred) / a).clamp(-1, 1), pred


def score(x_t: Tensor, pred: Tensor, t: Tensor, objective: str) -> Tensor:
    """The score ``grad log p_t(x_t) = -eps_hat / s(t)`` that a prediction implies (Tweedie: ``eps_hat`` estimates
    ``E[eps | x_t]``). Chapter 08 (notebooks/08_diffusion.ipynb)."""
    _, s = coefficients(_col(t, x_t), objective)
    return -to_x0_eps(x_t, pred, t, objective)[1] / s


def tweedie_x0(x_t: Tensor, grad_log_p: Tensor, t: Tensor, objective: str) -> Tensor:
    """Tweedie's identity ``E[x_0 | x_t] = (x_t + s^2 grad log p_t(x_t)) / a`` (Efron 2011; x_t = a x_0 + s eps).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    a, s = coefficients(_col(t, x_t), objective)
    return (x_t + s**2 * grad_log_p) / a


def log_snr(t: Tensor, objective: str) -> Tensor:
    """``lambda(t) = log(a^2 / s^2)``, the log signal-to-noise ratio: it falls from +inf (data) to -inf (noise)."""
    a, s = coefficients(t, objective)
    return 2 * (a.log() - s.log())


def flow_elbo_weight(lam: Tensor) -> Tensor:
    """Kingma & Gao (2023)'s weight ``w(lambda) = exp(-lambda / 2)`` that makes flow matching's velocity loss with
    ``t ~ U(0, 1)`` the weighted ELBO ``1/2 E_t[w(lambda) (-dlambda/dt) ||eps_hat - eps||^2]`` (the ELBO: ``w = 1``).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    return torch.exp(-lam / 2)


def diffusion_loss(net: Net, x0: Tensor, y: Tensor | None, objective: str, generator: torch.Generator,
                   label_dropout: float = 0.0, null_label: Null | None = None) -> Tensor:
    """The training objective on one batch: draw ``t ~ U(0, 1)`` and ``eps``, build ``x_t``, regress the target.

    With ``label_dropout > 0`` a share of the labels is replaced by ``null_label``, so the same network also
    learns the unconditional prediction that classifier-free guidance needs. Deterministic given ``generator``,
    a CPU generator: every device gets the same draws. Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    n, device = len(x0), x0.device
    t = torch.rand(n, generator=generator).to(device)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    if y is not None and label_dropout > 0:
        drop = (torch.rand(n, generator=generator) < label_dropout).to(device)
        y = torch.where(drop.view(n, *(1,) * (y.ndim - 1)), null_like(y, null_label), y)  # whole rows
    pred = net(add_noise(x0, noise, t, objective), t, y)
    return F.mse_loss(pred, target(x0, noise, objective))


def null_like(labels: Tensor, null_label: Null | None) -> Tensor:
    """The "no label" token in the shape of ``labels``: ``null_label`` (the class count) for N class labels, one
    token per column (a tuple) for N x (1 + K) labels with attributes."""
    if null_label is None:
        raise ValueError("dropping labels or guidance needs the model's 'no label' token: pass null_label "
                         "(the number of classes)")
    return torch.tensor(null_label, dtype=labels.dtype, device=labels.device).expand_as(labels)


def predict(net: Net, x: Tensor, t: float, labels: Tensor | None, guidance: float,
            null_label: Null | None) -> Tensor:
    """The network's prediction at time ``t``, with classifier-free guidance ``u + w (c - u)`` when ``w != 1``.

    Conditional and unconditional halves run as one batch of 2N. Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    tt = torch.full((len(x),), float(t), device=x.device)
    if labels is None or guidance == 1.0:
        return net(x, tt, labels)
    null = null_like(labels, null_label)
    cond, uncond = net(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, null])).chunk(2)
    return uncond + guidance * (cond - uncond)


def ddim_step(x: Tensor, pred: Tensor, t: float, t_next: float, objective: str) -> Tensor:
    """One deterministic DDIM step from ``t`` to ``t_next``: ``a(t') x0_hat + s(t') eps_hat`` (Euler for flow).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    tt = torch.full((len(x),), float(t), device=x.device)
    x0, eps = to_x0_eps(x, pred, tt, objective)
    a, s = coefficients(torch.tensor(float(t_next)), objective)
    return a * x0 + s * eps


def ancestral_step(x: Tensor, pred: Tensor, t: float, t_next: float, objective: str,
                   generator: torch.Generator | None = None) -> Tensor:
    """One stochastic (ancestral, DDPM) step: a draw from ``q(x_t' | x_t, x_0 = x0_hat)``, the Gaussian posterior of
    the forward process (Ho et al. 2020, eq. 6-7, for any ``a``, ``s``: Kingma et al. 2021, App. A). With
    ``r = a(t)/a(t')`` and ``v = s(t)^2 - r^2 s(t')^2`` (the variance of ``x_t`` given ``x_t'``), its mean is
    ``r s(t')^2/s(t)^2 x_t + a(t') v/s(t)^2 x0_hat`` and its variance ``v s(t')^2/s(t)^2``; at ``t' = 0`` it is
    ``x0_hat``. Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    x0 = to_x0_eps(x, pred, torch.full((len(x),), float(t), device=x.device), objective)[0]
    a, s = coefficients(torch.tensor(float(t)), objective)
    a_next, s_next = coefficients(torch.tensor(float(t_next)), objective)
    r = a / a_next
    var = s**2 - r**2 * s_next**2
    mean = r * s_next**2 / s**2 * x + a_next * var / s**2 * x0
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    return mean + (var * s_next**2 / s**2).clamp_min(0).sqrt() * noise


def time_grid(steps: int, start: float = 1.0) -> list[float]:
    """``steps + 1`` evenly spaced times from ``start`` (1: noise) down to 0 (data)."""
    return torch.linspace(start, 0.0, steps + 1).tolist()


def sample_trajectory(net: Net, shape: tuple[int, ...], objective: str, sampler: str, steps: int,
                      labels: Tensor | None = None, guidance: float = 1.0, generator: torch.Generator | None = None,
                      null_label: Null | None = None, noise: Tensor | None = None,
                      device: torch.device | None = None, start: float = 1.0) -> list[Tensor]:
    """Integrate from pure noise ``x_1`` to ``x_0``; return ``[x_1, ..., x_0]`` (``steps + 1`` tensors).

    ``sampler``: ``"ddim"`` / ``"euler"`` (one network call per step), ``"heun"`` (two, one on the last step) or
    ``"ancestral"`` (one, and fresh noise from ``generator``). The noise is drawn on the CPU (the same on every
    device) and moved to ``device`` (default: the CPU). With ``start < 1`` and ``noise`` a point ``x_start`` on the
    path (an image partly noised), it integrates from there: SDEdit (chapter 05, notebook 09).
    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    if sampler not in SAMPLERS.get(objective, ()):
        raise ValueError(f"sampler {sampler!r} does not fit objective {objective!r}; choose from {SAMPLERS}")
    x = (torch.randn(shape, generator=generator) if noise is None else noise).to(device or "cpu")
    labels = None if labels is None else labels.to(x.device)
    out = [x]
    times = time_grid(steps, start)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        pred = predict(net, x, t, labels, guidance, null_label)
        if sampler == "ancestral":
            x_next = ancestral_step(x, pred, t, t_next, objective, generator)
        else:
            x_next = ddim_step(x, pred, t, t_next, objective)
        if sampler == "heun" and t_next > 0:  # average the slopes at both ends (Karras et al. 2022, Alg. 1)
            pred_next = predict(net, x_next, t_next, labels, guidance, null_label)
            x_next = x + (t_next - t) * (pred + pred_next) / 2
        x = x_next
        out.append(x)
    return out


@torch.no_grad()
def sample(net: Net, shape: tuple[int, ...], objective: str, sampler: str, steps: int,
           labels: Tensor | None = None, guidance: float = 1.0, generator: torch.Generator | None = None,
           null_label: Null | None = None, device: torch.device | None = None) -> Tensor:
    """The end ``x_0`` of :func:`sample_trajectory` (in the data's scale, [-1, 1] for images).

    Chapter 08 (notebooks/08_diffusion.ipynb).
    """
    return sample_trajectory(net, shape, objective, sampler, steps, labels, guidance, generator, null_label,
                             device=device)[-1]


def network_calls(sampler: str, steps: int, guided: bool) -> int:
    """Network evaluations per sample: the cost that the sampler-steps curve of chapter 08 plots against."""
    calls = 2 * steps - 1 if sampler == "heun" else steps
    return calls * (2 if guided else 1)
