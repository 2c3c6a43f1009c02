"""Chapter 05's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import math

import torch

from prodlab import edit, exercises


def slerp(z0, z1, t):
    t = t.reshape(-1, 1)
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos(torch.dot(u0, u1))
    on_circle = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return on_circle * ((1 - t) * z0.norm() + t * z1.norm())


def raw_slerp(z0, z1, t):
    """White's (2016) convention: the great-circle formula applied to the raw vectors."""
    t = t.reshape(-1, 1)
    omega = torch.arccos(torch.dot(z0 / z0.norm(), z1 / z1.norm()))
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def crossover(levels, a, b):
    gap = [u - v for u, v in zip(a, b, strict=True)]
    for i in range(1, len(gap)):
        if gap[i - 1] > 0 >= gap[i]:
            return levels[i - 1] + (levels[i] - levels[i - 1]) * gap[i - 1] / (gap[i - 1] - gap[i])
    return None


def height(x):
    mass = x.sum(dim=(1, 3))  # N x H rows
    p = mass / mass.sum(1, keepdim=True)
    rows = torch.arange(x.shape[-2], dtype=x.dtype)
    mean = (p * rows).sum(1)
    return math.sqrt(12) * (p * (rows - mean[:, None]) ** 2).sum(1).sqrt()


def first_level_after(levels, a, b):
    gap = [u - v for u, v in zip(a, b, strict=True)]
    return next((levels[i] for i in range(1, len(gap)) if gap[i - 1] > 0 >= gap[i]), None)


CASES = {
    exercises.check_slerp: (
        slerp,
        [(edit.lerp, "straight line"),
         (lambda z0, z1, t: slerp(z0 / z0.norm(), z1 / z1.norm(), t), "norm 1"),
         (lambda z0, z1, t: slerp(z0, z1, t) * 1.01, "wrong values"),
         (raw_slerp, "convention")],
    ),
    exercises.check_crossover: (
        crossover,
        [(first_level_after, "grid level"), (lambda levels, a, b: 0.15, "None")],
    ),
    exercises.check_height: (
        height,
        [(edit.width, "width"), (lambda x: height(x) / math.sqrt(12), "sqrt(12)")],
    ),
}
