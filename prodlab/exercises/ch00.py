"""Exercise checkers of chapter 00 (the products, §3.3 steps 1-2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prodlab import data
from prodlab.exercises.core import call, verdict


def _fake_catalogue(n: int = 200, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` random uint8 28x28 "images" and balanced, shuffled labels 0-9: fixed inputs for the data checkers."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
    labels = (torch.arange(n) % len(data.CLASS_NAMES))[torch.randperm(n, generator=gen)]
    return images, labels


def check_class_means(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 00.1: ``fn(images uint8 N x 28 x 28, labels N)`` -> float 10 x 28 x 28 in [0, 1], like
    :func:`prodlab.data.class_means`."""
    title = "class means"
    images, labels = _fake_catalogue()
    want = data.class_means(images, labels)
    pixels = images.double()
    mistakes = {
        "values up to 255: scale the uint8 pixels to [0, 1] (divide by 255) before averaging.": want * 255,
        "every class got the same image: average only the images whose label is that class.":
            (pixels / 255).mean(0).expand(10, 28, 28),
        "too large: that is a sum; divide by the number of images of the class (use .mean).":
            torch.stack([(pixels[labels == c] / 255).sum(0) for c in range(10)]),
    }
    got = call(title, fn, images.clone(), labels.clone())
    verdict(title, got, want, mistakes, "One image per class, in class order 0-9, each the pixel-wise mean.")


def check_mirror_asymmetry(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 00.2: ``fn(means 10 x 28 x 28)`` -> 10 relative L2 distances between each image and its mirror
    image, like :func:`prodlab.data.mirror_asymmetry`."""
    title = "mirror asymmetry"
    means = torch.rand(10, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = data.mirror_asymmetry(means)
    flat = means.flatten(1)
    mistakes = {
        "you flipped top to bottom: a horizontal flip mirrors left and right, the last axis (flip(-1)).":
            data.mirror_asymmetry(means.transpose(-1, -2)),
        "not relative: divide each distance by the norm of the class's own image.":
            (flat - means.flip(-1).flatten(1)).norm(dim=1),
        "squared: take the L2 norm (the square root), not the sum of squares.":
            (flat - means.flip(-1).flatten(1)).pow(2).sum(1) / flat.pow(2).sum(1),
    }
    got = call(title, fn, means.clone())
    verdict(title, got, want, mistakes, "||m - flip(m)|| / ||m|| for each class image m.")


