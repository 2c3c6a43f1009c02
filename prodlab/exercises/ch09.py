"""Chapter 09's exercise checkers (notebooks/09_catalogue.ipynb): per-channel statistics, a latent direction."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prodlab.datasets.spec import ImageSpec
from prodlab.edit import recolour
from prodlab.exercises.core import call, verdict


def check_channel_stats(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 09.1: ``fn(images uint8 N x H x W x C)`` -> 2 x C: the mean and the standard deviation of each
    channel over every pixel of every image, in [0, 1] units, as ``ImageSpec.measure`` records them."""
    title = "statistics per channel"
    gen = torch.Generator().manual_seed(9)
    images = torch.randint(0, 256, (40, 6, 5, 3), generator=gen, dtype=torch.uint8)
    images[..., 0] //= 4  # channels of different brightness and spread, so that mixing them shows
    images[..., 2] = images[..., 2] // 2 + 128
    x = images.flatten(0, 2).double() / 255
    spec = ImageSpec.measure(images, ("a",))
    want = torch.stack([x.mean(0), x.std(0)])
    assert torch.allclose(want, torch.tensor([spec.mean, spec.std], dtype=torch.float64), atol=1e-4)
    per_image = images.double().div(255).flatten(1, 2)  # N x (H W) x C
    mistakes = {
        "one number for all channels: a colour image has a mean and a spread per channel (average over N, H and W "
        "only, keep C).": torch.stack([x.mean().expand(3), x.std().expand(3)]),
        "in 0..255: scale the pixels to [0, 1] first (divide by 255), as the models see them.":
            torch.stack([x.mean(0), x.std(0)]) * 255,
        "the spread within each image, averaged: the standard deviation is over all pixels of all images at once "
        "(how far a pixel strays from the catalogue's mean).": torch.stack([x.mean(0), per_image.std(1).mean(0)]),
    }
    got = call(title, fn, images.clone())
    verdict(title, got, want, mistakes, "stack [mean per channel, std per channel] of images / 255 over N, H, W.",
            rtol=1e-4, atol=1e-5)


def check_value_direction(fn: Callable[[Tensor, Tensor, int, int], Tensor]) -> None:
    """Exercise 09.2: ``fn(codes N x d, values int64 N, old, new)`` -> d: the latent direction from value ``old`` to
    value ``new``, the mean code of the products with ``new`` minus that of those with ``old``
    (``recolour.value_means_of``)."""
    title = "a latent direction"
    gen = torch.Generator().manual_seed(10)
    values = torch.randint(0, 4, (300,), generator=gen)
    codes = torch.randn(300, 6, generator=gen, dtype=torch.float64) + values[:, None].double()
    means = recolour.value_means_of(codes, values, 4)
    old, new = 1, 3
    want = means[new] - means[old]
    mistakes = {
        "the wrong way round: the direction goes from the old value to the new one (new minus old).": -want,
        "measured from the average of all products: subtract the mean code of the old value's products, so that "
        "what the products share cancels.": means[new] - codes.mean(0),
        "sums, not means: divide by how many products have each value (the groups differ in size).":
            codes[values == new].sum(0) - codes[values == old].sum(0),
    }
    got = call(title, fn, codes.clone(), values.clone(), old, new)
    verdict(title, got, want, mistakes, "mean of codes[values == new] minus mean of codes[values == old].")
