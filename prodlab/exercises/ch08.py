"""Exercise checkers of chapter 08 (diffusion and flow models, beyond the article): the forward process and one
sampling step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from prodlab import diffusion
from prodlab.exercises.core import call, verdict


def check_flow_noising(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 1: ``fn(x0, noise, t)`` must return the flow's ``x_t = (1 - t) x0 + t eps`` (t one per image)."""
    g = torch.Generator().manual_seed(1)
    x0, noise, t = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g), torch.rand(4)
    got = call("flow noising", fn, x0.clone(), noise.clone(), t.clone())
    verdict("flow noising", got, diffusion.add_noise(x0, noise, t, "flow"), {},
            "x_t blends the image and the noise; t must broadcast as t[:, None, None, None].", atol=1e-5)


def check_euler_step(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> None:
    """Exercise 2: ``fn(x, v, t, t_next)`` must return the Euler step ``x + (t_next - t) v`` (t_next < t)."""
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(4, 1, 28, 28, generator=g), torch.randn(4, 1, 28, 28, generator=g)
    got = call("Euler step", fn, x.clone(), v.clone(), 0.6, 0.4)
    verdict("Euler step", got, diffusion.ddim_step(x, v, 0.6, 0.4, "flow"),
            {"time runs backwards: your step went forwards; it is (t_next - t) times v, with t_next < t.": x + 0.2 * v},
            "time runs backwards (t_next < t): the step is (t_next - t) times the velocity.", atol=1e-5)
