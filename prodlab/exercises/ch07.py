"""Exercise checkers of chapter 07 (the latent explorer, §2.2-§2.3, §2.4 items 2-3): the slider values that reach a
code, the interpolation mix, and a new property to make a slider from."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from prodlab import data, edit
from prodlab.exercises.core import ExerciseFailed, call, verdict


def check_slider_values(fn: Callable[[Tensor, Tensor, Mapping[str, Tensor]], Tensor]) -> None:
    """Exercise 07.1: ``slider_values(z, target, steps)``, the slider settings that move code ``z`` as close as the
    sliders can to ``target``: the least-squares solution over the (correlated) directions ``steps``."""
    title = "slider values"
    gen = torch.Generator().manual_seed(8)
    z, target = torch.randn(1, 16, generator=gen, dtype=torch.float64), torch.randn(1, 16, generator=gen,
                                                                                       dtype=torch.float64)
    shared = torch.randn(16, generator=gen, dtype=torch.float64)  # the directions share a part: not orthogonal
    steps = {p: shared + torch.randn(16, generator=gen, dtype=torch.float64) * 0.8
             for p in ("brightness", "width", "pattern")}
    want = edit.slider_values(z, target, steps)
    d = torch.stack(list(steps.values()), dim=1)
    delta = (target - z)[0]
    mistakes = {
        "that is each direction's dot product with the move: divide by the direction's squared length, and more.":
            d.T @ delta,
        "those are separate projections, right only for orthogonal directions: these share a part, so solve "
        "(D^T D) t = D^T (target - z) (torch.linalg.lstsq(D, target - z)).": d.T @ delta / (d * d).sum(0),
        "wrong sign: solve for the move from z to the target, target - z.": -want,
    }
    got = call(title, fn, z.clone(), target.clone(), {p: v.clone() for p, v in steps.items()})
    if torch.is_tensor(got) and got.numel() == len(steps):  # a P x 1 or 1 x P answer is the same settings
        got = got.reshape(-1)
    verdict(title, got, want, mistakes, "D = torch.stack(list(steps.values()), 1) (d x P); least squares "
            "D t ≈ target[0] - z[0].")


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


def shoes(heights: list[int], level: float = 1.0, lift: int = 0) -> Tensor:
    """Synthetic side views of a shoe, toe on the left as in Fashion-MNIST, whose back (heel end) is raised ``h``
    pixels above the ground on a heel block: N x C x H x W in [0, ``level``] of Fashion-MNIST's spec
    (``data.spec()``; on 28 x 28: the sole on rows 20-23, the front on columns 2-15, the back on 16-25). ``lift``
    draws the whole shoe that many rows higher in the frame, its heel unchanged."""
    spec = data.spec()
    sole = spec.height // 7  # the sole's thickness (4 rows on 28 x 28)
    ground = spec.height - sole - lift  # the row below the sole
    toe, middle, back = spec.width // 14, spec.width * 4 // 7, spec.width - spec.width // 14
    x = torch.zeros(len(heights), *spec.shape)
    for i, h in enumerate(heights):
        x[i, :, ground - sole : ground, toe:middle] = level  # the front: flat on the ground
        x[i, :, ground - sole - h : ground - h, middle:back] = level  # the back, lifted h rows
        x[i, :, ground - h : ground, back - (sole - 1) : back] = level  # the heel under it
    return x


def check_heel_height(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 07.3: a property function ``heel_height(x)`` (images N x C x H x W -> N values) that grows with
    how high a shoe's heel end stands above its front, does not change when the whole shoe is drawn higher in the
    frame or darker, and returns one value per image, so that ``edit.property_direction`` can turn it into a
    slider. Counterexample the lifted shoes reject: ``-row_centre(x)``, how high the whole product sits."""
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
    lifted = torch.as_tensor(call(title, fn, shoes(heights, lift=6))).detach().double()
    verdict(f"{title} (a shoe lifted whole, same heel, measures the same)", lifted, got, {},
            "the same shoes drawn 6 rows higher in the frame changed your value: you measure how high the product "
            "sits, not its heel; compare the back's height with the front's.", rtol=1e-4, atol=1e-4)
    darker = torch.as_tensor(call(title, fn, shoes(heights, level=0.6))).detach().double()
    verdict(f"{title} (a darker shoe measures the same)", darker, got, {},
            "weight rows by the share of the product's mass (divide by the sum), not by the raw intensity.",
            rtol=1e-4, atol=1e-4)
