"""Exercise checkers of chapter 05 (editing: interpolation, enhancement, latent directions, §2.4 item 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from prodlab import data, edit
from prodlab.exercises.core import ExerciseFailed, call, verdict


def check_slerp(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Exercise 05.1: ``fn(z0, z1, t)`` -> T x d codes along the great circle from ``z0`` to ``z1``, the norm
    interpolated linearly, as :func:`prodlab.edit.slerp`; two codes of equal norm keep it all the way.

    The convention asked for: the unit vectors along the great circle, scaled by ``(1 - t)|z0| + t|z1|``. The other
    convention, the slerp of the raw vectors (White 2016), agrees with it for codes of equal norm; the checker's codes
    differ in norm, so it names that convention instead of passing it."""
    title = "slerp"
    gen = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(16, generator=gen, dtype=torch.float64), 1.5 * torch.randn(16, generator=gen,
                                                                                   dtype=torch.float64)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    want = edit.slerp(z0, z1, t)
    omega = torch.arccos(torch.dot(z0 / z0.norm(), z1 / z1.norm()))
    raw = (torch.sin((1 - t[:, None]) * omega) * z0 + torch.sin(t[:, None] * omega) * z1) / torch.sin(omega)
    mistakes = {
        "that is the straight line (lerp): its middle falls inside the shell where the codes live.":
            edit.lerp(z0, z1, t),
        "every code has norm 1: after the great circle on the unit vectors, scale by (1 - t)|z0| + t|z1|.":
            want / ((1 - t[:, None]) * z0.norm() + t[:, None] * z1.norm()),
        "that is the slerp of the raw vectors (White 2016), another convention, not a mistake; this exercise asks "
        "for the norm-interpolating one: normalise z0 and z1 first, then scale by (1 - t)|z0| + t|z1|.": raw,
    }
    got = call(title, fn, z0.clone(), z1.clone(), t.clone())
    verdict(title, got, want, mistakes, "the convention asked for: omega = arccos(u0 . u1) of the unit vectors; "
            "(sin((1-t) omega) u0 + sin(t omega) u1) / sin(omega), times (1 - t)|z0| + t|z1|.")


def check_crossover(fn: Callable[[Sequence[float], Sequence[float], Sequence[float]], float | None]) -> None:
    """Exercise 05.2: ``fn(levels, a, b)`` -> the noise level where method ``a`` stops beating method ``b``
    (linear interpolation between the grid levels around the sign change of ``a - b``), as
    :func:`prodlab.edit.crossover`; ``None`` when there is no such change."""
    title = "crossover"
    cases = [((0.1, 0.2, 0.3), (22.0, 18.0, 15.0), (20.0, 19.5, 18.5)),
             ((0.05, 0.1, 0.2, 0.4), (30.0, 27.0, 22.0, 16.0), (24.0, 23.5, 22.5, 20.0)),
             ((0.1, 0.2), (25.0, 24.0), (20.0, 19.0))]
    got, want, grid_after, grid_before = [], [], [], []
    for levels, a, b in cases:
        expected, answer = edit.crossover(levels, a, b), call(title, fn, list(levels), list(a), list(b))
        if expected is None and answer is not None:
            raise ExerciseFailed(f"{title}: a beats b at every level of {levels}, so there is no crossover: "
                                 f"return None (got {answer}).")
        if expected is None:
            continue
        if answer is None:
            raise ExerciseFailed(f"{title}: returned None, but a - b changes sign on {levels}.")
        gap = [u - v for u, v in zip(a, b, strict=True)]
        after = next(i for i in range(1, len(gap)) if gap[i - 1] > 0 >= gap[i])
        got.append(float(answer))
        want.append(expected)
        grid_after.append(levels[after])
        grid_before.append(levels[after - 1])
    mistakes = {"that is a grid level: interpolate linearly between the two levels around the sign change.":
                torch.tensor(grid_after),
                "that is the level before the change: interpolate towards the next one.": torch.tensor(grid_before)}
    verdict(title, torch.tensor(got), torch.tensor(want), mistakes,
            "Find the first i with gap[i-1] > 0 >= gap[i]; the zero of the line through the two points.")


def check_height(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 05.3: ``fn(images N x C x H x W)`` -> the vertical extent of each product, ``sqrt(12)`` x the
    standard deviation of its row mass, as :func:`prodlab.edit.height`; on random images of Fashion-MNIST's spec."""
    title = "height"
    spec = data.spec()
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(6, *spec.shape, generator=gen, dtype=torch.float64)
    x[:, :, : spec.height // 5] = 0  # products with a black margin, as in the catalogue
    x[:3, :, :, spec.width * 5 // 7 :] = 0
    want = edit.height(x)
    mistakes = {
        "that is the width: sum over the rows to get the mass of each *row* (dimension -1), not each column.":
            edit.width(x),
        "that is the standard deviation: multiply by sqrt(12), the factor that turns it into the width of a box.":
            want / 12 ** 0.5,
        "that is the variance: take the square root (standard deviation) before the factor sqrt(12).":
            (want / 12 ** 0.5) ** 2 * 12 ** 0.5,
    }
    got = call(title, fn, x.clone())
    verdict(title, got, want, mistakes, "p = row mass / total mass; mean row m = sum p r; height = sqrt(12) * "
            "sqrt(sum p (r - m)^2).")
