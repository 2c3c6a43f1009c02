"""Exercise checkers of chapter 08 (diffusion and flow models, beyond the article): the forward process, one
sampling step, classifier-free guidance and DDPM's image estimate."""

from __future__ import annotations

from collections.abc import Callable

import torch

from prodlab import data, diffusion
from prodlab.exercises.core import call, verdict


def _batch(g: torch.Generator, n: int = 4) -> torch.Tensor:
    """``n`` standard normal images N x C x H x W of Fashion-MNIST's spec (``data.spec()``)."""
    return torch.randn(n, *data.spec().shape, generator=g)


def check_flow_noising(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 1: ``fn(x0, noise, t)`` must return the flow's ``x_t = (1 - t) x0 + t eps`` (t one per image)."""
    g = torch.Generator().manual_seed(1)
    x0, noise, t = _batch(g), _batch(g), torch.rand(4)
    got = call("flow noising", fn, x0.clone(), noise.clone(), t.clone())
    verdict("flow noising", got, diffusion.add_noise(x0, noise, t, "flow"), {},
            "x_t blends the image and the noise; t must broadcast as t[:, None, None, None].", atol=1e-5)


def check_euler_step(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> None:
    """Exercise 2: ``fn(x, v, t, t_next)`` must return the Euler step ``x + (t_next - t) v`` (t_next < t)."""
    g = torch.Generator().manual_seed(2)
    x, v = _batch(g), _batch(g)
    got = call("Euler step", fn, x.clone(), v.clone(), 0.6, 0.4)
    verdict("Euler step", got, diffusion.ddim_step(x, v, 0.6, 0.4, "flow"),
            {"time runs backwards: your step went forwards; it is (t_next - t) times v, with t_next < t.": x + 0.2 * v},
            "time runs backwards (t_next < t): the step is (t_next - t) times the velocity.", atol=1e-5)


def check_guidance(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Exercise 3: ``fn(cond, uncond, w)`` must mix two predictions as classifier-free guidance does,
    ``uncond + w (cond - uncond)`` (Ho & Salimans 2022), so that ``w = 1`` gives ``cond`` and ``w = 0`` ``uncond``."""
    g = torch.Generator().manual_seed(3)
    cond, uncond = _batch(g), _batch(g)
    null = data.spec().n_classes  # the label of "no class": one past the last class

    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # a fake network: cond or uncond
        return torch.where((y == null)[:, None, None, None], uncond.repeat(2, 1, 1, 1), cond.repeat(2, 1, 1, 1))

    want = diffusion.predict(net, torch.zeros_like(cond), 0.5, torch.zeros(4, dtype=torch.long), 2.5, null_label=null)
    got = call("guidance", fn, cond.clone(), uncond.clone(), 2.5)
    verdict("guidance", got, want,
            {"the difference points the wrong way: guidance moves away from the unconditional prediction, "
             "towards the class (cond - uncond).": uncond + 2.5 * (uncond - cond),
             "start from the unconditional prediction, not the conditional one.": cond + 2.5 * (cond - uncond)},
            "w = 1 must give the conditional prediction and w = 0 the unconditional one.", atol=1e-5)


def check_x0_from_eps(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 4: ``fn(x_t, eps_hat, t)`` must return DDPM's image estimate ``(x_t - s(t) eps_hat) / a(t)`` with the
    cosine schedule's ``a = sqrt(abar(t))``, ``s = sqrt(1 - abar(t))`` (without the package's clamp to [-1, 1])."""
    g = torch.Generator().manual_seed(4)
    x_t, eps, t = _batch(g), _batch(g), torch.rand(4) * 0.9
    a, s = (c[:, None, None, None] for c in diffusion.coefficients(t, "eps"))
    got = call("x0 from eps", fn, x_t.clone(), eps.clone(), t.clone())
    verdict("x0 from eps", got, (x_t - s * eps) / a,
            {"a and s are square roots: a = sqrt(abar(t)), s = sqrt(1 - abar(t)).":
                 (x_t - (1 - a**2) * eps) / a**2,
             "subtract the scaled noise, then divide by a (not the other way round).": x_t / a - s * eps},
            "invert x_t = a x0 + s eps for x0, with a and s from diffusion.alpha_bar(t).", atol=1e-4)


def check_window_velocity(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> None:
    """Exercise 5: ``fn(x_k, x_next, t, t_next)`` must return the velocity that carries one Euler step from the
    teacher's state ``x_k`` at time ``t`` to its state ``x_next`` at ``t_next < t``: ``(x_next - x_k) / (t_next - t)``,
    the distilled student's target (``training.distill.window_batch``)."""
    g = torch.Generator().manual_seed(5)
    x, x_next = _batch(g), _batch(g)
    got = call("window velocity", fn, x.clone(), x_next.clone(), 0.75, 0.5)
    verdict("window velocity", got, (x_next - x) / (0.5 - 0.75),
            {"divide by the time step: the velocity is change per unit of time, and a window is 0.25 long.":
                 x_next - x,
             "time runs backwards: t_next - t is negative, so the velocity points from x_next back to x_k.":
                 (x_next - x) / 0.25},
            "one Euler step x_k + (t_next - t) v must land exactly on x_next.", atol=1e-5)
