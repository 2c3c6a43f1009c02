"""Chapter 09's exercise checkers: a correct answer and known wrong answers with the word their hint must contain."""

from __future__ import annotations

import torch

from prodlab import exercises
from prodlab.edit import recolour


def channel_stats(images):
    """The notebook's answer: what ``ImageSpec.measure`` computes, before it rounds to 4 decimals."""
    x = images.flatten(0, 2).double() / 255
    return torch.stack([x.mean(0), x.std(0)])


def direction(codes, values, old, new):
    means = recolour.value_means_of(codes, values, int(values.max()) + 1)
    return means[new] - means[old]


CASES = {
    exercises.check_channel_stats: (
        channel_stats,
        [(lambda im: (lambda x: torch.stack([x.mean().expand(3), x.std().expand(3)]))(im.double() / 255),
          "per channel"),
         (lambda im: channel_stats(im) * 255, "255"),
         (lambda im: torch.stack([channel_stats(im)[0], (im.double() / 255).flatten(1, 2).std(1).mean(0)]),
          "all pixels of all images"),
         (lambda im: channel_stats(im)[:, :2], "shape")],
    ),
    exercises.check_value_direction: (
        direction,
        [(lambda c, v, o, n: -direction(c, v, o, n), "wrong way round"),
         (lambda c, v, o, n: c[v == n].mean(0) - c.mean(0), "average of all products"),
         (lambda c, v, o, n: c[v == n].sum(0) - c[v == o].sum(0), "sums"),
         (lambda c, v, o, n: direction(c, v, o, n) + 0.1, "wrong values")],
    ),
}
