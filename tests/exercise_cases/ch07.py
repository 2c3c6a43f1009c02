"""Chapter 07's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch

from prodlab import edit, exercises


def moved_code(z, steps, offsets):
    return z + sum(t * steps[prop] for prop, t in offsets.items())


def mix_code(za, zb, mix, spherical):
    return (edit.slerp if spherical else edit.lerp)(za[0], zb[0], torch.tensor([mix]))


def heel_height(x):
    rows = torch.arange(x.shape[-2], dtype=x.dtype)
    half = x.shape[-1] // 2

    def row_centre(part):
        mass = part.sum(dim=(1, 3))
        return (mass * rows).sum(1) / mass.sum(1).clamp_min(1e-6)

    return row_centre(x[..., :half]) - row_centre(x[..., half:])


CASES = {
    exercises.check_moved_code: (
        moved_code,
        [(lambda z, steps, offsets: z + sum(steps.values()), "offsets[prop]"),
         (lambda z, steps, offsets: z - (moved_code(z, steps, offsets) - z), "sign"),
         (lambda z, steps, offsets: moved_code(z, steps, offsets) - z, "starting code")],
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
         (lambda x: x.sum(dim=(1, 2, 3)) * 0, "must grow")],
    ),
}
