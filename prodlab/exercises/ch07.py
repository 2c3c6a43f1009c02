"""Exercise checkers of chapter 07 (the latent explorer, §2.2-§2.3, §2.4 items 2-3): what a slider does to a code,
the interpolation mix, and a new property to make a slider from."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from prodlab import data, edit
from prodlab.exercises.core import ExerciseFailed, call, verdict


def check_moved_code(fn: Callable[[Tensor, Mapping[str, Tensor], Mapping[str, float]], Tensor]) -> None:
    """Exercise 07.1: ``moved_code(z, steps, offsets)`` = ``z + sum_prop offsets[prop] * steps[prop]``, what the
    latent sliders do to the code before it is decoded (as ``prodlab.widgets.moved_code``)."""
    title = "slider move"
    gen = torch.Generator().manual_seed(8)
    z = torch.randn(1, 16, generator=gen, dtype=torch.float64)
    steps = {p: torch.randn(16, generator=gen, dtype=torch.float64) for p in ("brightness", "width", "pattern")}
    offsets = {"brightness": 1.5, "width": -0.5, "pattern": 0.0}
    want = z + sum(t * steps[p] for p, t in offsets.items())
    mistakes = {
        "each direction is added once: scale it by its slider's value (offsets[prop]).": z + sum(steps.values()),
        "only the last slider counts: add every slider's step to the code.": z + offsets["pattern"] * steps["pattern"],
        "wrong sign: a positive slider value moves along +direction.": z - (want - z),
        "the starting code is missing: the move is added to z.": want - z,
    }
    got = call(title, fn, z.clone(), {p: d.clone() for p, d in steps.items()}, dict(offsets))
    verdict(title, got, want, mistakes, "z + offsets['brightness'] * steps['brightness'] + ... for every slider.")


def check_mix_code(fn: Callable[[Tensor, Tensor, float, bool], Tensor]) -> None:
    """Exercise 07.2: ``mix_code(za, zb, mix, spherical)``, the 1 x d code a fraction ``mix`` of the way from ``za``
    to ``zb`` (each 1 x d), along the great circle (``edit.slerp``) or the straight line (``edit.lerp``)."""
    title = "interpolation mix"
    gen = torch.Generator().manual_seed(9)
    za, zb = torch.randn(1, 64, generator=gen), torch.randn(1, 64, generator=gen)
    for spherical in (False, True):
        path = edit.slerp if spherical else edit.lerp
        other = edit.lerp if spherical else edit.slerp
        for mix in (0.0, 0.3, 1.0):
            want = path(za[0], zb[0], torch.tensor([mix]))
            mistakes = {
                "mix runs the wrong way: 0 gives product A, 1 gives product B.": path(za[0], zb[0],
                                                                                      torch.tensor([1 - mix])),
                f"that is the {'straight line' if spherical else 'great circle'}: use "
                f"{'slerp' if spherical else 'lerp'} when spherical is {spherical}.": other(za[0], zb[0],
                                                                                             torch.tensor([mix])),
            }
            got = call(title, fn, za.clone(), zb.clone(), mix, spherical)
            verdict(f"{title} ({'spherical' if spherical else 'linear'}, mix {mix})", got, want, mistakes,
                    "edit.slerp(za[0], zb[0], torch.tensor([mix])) or edit.lerp(...): a 1 x d code.")


def shoes(heights: list[int], level: float = 1.0) -> Tensor:
    """Synthetic side views of a shoe, toe on the left as in Fashion-MNIST, whose back (heel end) is raised ``h``
    pixels above the ground on a heel block: N x C x H x W in [0, ``level``] of Fashion-MNIST's spec
    (``data.spec()``; on 28 x 28: the sole on rows 20-23, the front on columns 2-15, the back on 16-25)."""
    spec = data.spec()
    sole = spec.height // 7  # the sole's thickness (4 rows on 28 x 28)
    ground = spec.height - sole  # the row below the sole
    toe, middle, back = spec.width // 14, spec.width * 4 // 7, spec.width - spec.width // 14
    x = torch.zeros(len(heights), *spec.shape)
    for i, h in enumerate(heights):
        x[i, :, ground - sole : ground, toe:middle] = level  # the front: flat on the ground
        x[i, :, ground - sole - h : ground - h, middle:back] = level  # the back, lifted h rows
        x[i, :, ground - h : ground, back - (sole - 1) : back] = level  # the heel under it
    return x


def check_heel_height(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 07.3: a property function ``heel_height(x)`` (images N x C x H x W -> N values) that grows with
    how high a shoe's heel end stands, does not change when the product is darker, and returns one value per image,
    so that ``edit.property_direction`` can turn it into a slider."""
    title = "heel height"
    heights = [0, 2, 4, 6, 8]
    got = torch.as_tensor(call(title, fn, shoes(heights))).detach().double()
    if got.shape != (len(heights),):
        raise ExerciseFailed(f"{title}: return one value per image (shape ({len(heights)},)), got "
                             f"{tuple(got.shape)}")
    if not torch.isfinite(got).all():
        raise ExerciseFailed(f"{title}: your values have inf or nan: guard divisions (clamp_min(1e-6)).")
    steps = got.diff()
    if (steps < 0).all():
        raise ExerciseFailed(f"{title}: your value falls as the heel rises: rows count downwards (row 0 is the top), "
                             "so a raised part has a smaller row index.")
    if not (steps > 1e-6).all():
        raise ExerciseFailed(f"{title}: values {[round(v, 3) for v in got.tolist()]} for heels of {heights} px "
                             "must grow with every step: compare where the back's mass sits with the front's.")
    darker = torch.as_tensor(call(title, fn, shoes(heights, level=0.6))).detach().double()
    verdict(f"{title} (a darker shoe measures the same)", darker, got, {},
            "weight rows by the share of the product's mass (divide by the sum), not by the raw intensity.",
            rtol=1e-4, atol=1e-4)
