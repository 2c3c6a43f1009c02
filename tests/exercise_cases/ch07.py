"""Chapter 07's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch

from prodlab import edit, exercises


def slider_values(z, target, steps):  # the normal equations, not the package's lstsq
    d = torch.stack(list(steps.values()), dim=1)
    return torch.linalg.solve(d.T @ d, d.T @ (target - z)[0])


def mix_code(za, zb, mix, spherical):
    return (edit.slerp if spherical else edit.lerp)(za[0], zb[0], torch.tensor([mix]))


def row_centre(part):
    """The mass-weighted mean row of each image (N x C x H x W')."""
    mass = part.sum(dim=(1, 3))
    return (mass * torch.arange(part.shape[-2], dtype=part.dtype)).sum(1) / mass.sum(1).clamp_min(1e-6)


def heel_height(x):
    half = x.shape[-1] // 2
    return row_centre(x[..., :half]) - row_centre(x[..., half:])


def upper_half_share(x):  # the share of the product's mass in the frame's upper half
    return x[..., : x.shape[-2] // 2, :].sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))


CASES = {
    exercises.check_slider_values: (
        slider_values,
        [(lambda z, t, steps: torch.stack(list(steps.values()), 1).T @ (t - z)[0], "squared length"),
         (lambda z, t, steps: torch.stack([d @ (t - z)[0] / (d @ d) for d in steps.values()]), "orthogonal"),
         (lambda z, t, steps: slider_values(z, t, steps) * -1, "sign"),
         (lambda z, t, steps: slider_values(z, t, steps)[:2], "shape")],
    ),
    exercises.check_mix_code: (
        mix_code,
        [(lambda za, zb, mix, spherical: mix_code(za, zb, 1 - mix, spherical), "wrong way"),
         (lambda za, zb, mix, spherical: mix_code(za, zb, mix, False), "straight line")],
    ),
    exercises.check_heel_height: (
        heel_height,
        [(lambda x: -heel_height(x), "rows count downwards"),
         (lambda x: heel_height(x)[:2], "one value per image"),
         (lambda x: heel_height(x) * x.amax(dim=(1, 2, 3)), "darker"),
         (lambda x: x.sum(dim=(1, 2, 3)) * 0, "must grow"),
         (lambda x: -row_centre(x), "how high the product sits"),  # the product's height in the frame
         (lambda x: -row_centre(x[..., x.shape[-1] // 2 :]), "how high the product sits"),  # the back's height only
         (lambda x: -(x[..., x.shape[-1] // 2 :].sum(dim=(1, 3)) > 0).float().argmax(1).float(),  # the back's top row
          "how high the product sits"),
         (upper_half_share, "must grow")],
    ),
}
