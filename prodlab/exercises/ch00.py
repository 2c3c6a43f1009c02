"""Exercise checkers of chapter 00 (the products, §3.3 steps 1-2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prodlab import data
from prodlab.exercises.core import call, verdict


def _fake_catalogue(n: int = 200, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` random uint8 "images" N x H x W x C of Fashion-MNIST's spec (``data.spec()``) and balanced, shuffled
    labels 0 .. n_classes - 1: fixed inputs for the data checkers."""
    spec = data.spec()
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, spec.height, spec.width, spec.channels), generator=gen, dtype=torch.uint8)
    labels = (torch.arange(n) % spec.n_classes)[torch.randperm(n, generator=gen)]
    return images, labels


def check_class_means(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Exercise 00.1: ``fn(images uint8 N x H x W x C, labels N)`` -> float n_classes x C x H x W in [0, 1] (for
    Fashion-MNIST 10 x 1 x 28 x 28), like :func:`prodlab.data.class_means`."""
    title = "class means"
    spec = data.spec()
    images, labels = _fake_catalogue()
    want = data.class_means(images, labels, spec.n_classes)
    pixels = data.to_float(images).double()  # N x C x H x W in [0, 1]
    mistakes = {
        "values up to 255: scale the uint8 pixels to [0, 1] (divide by 255) before averaging.": want * 255,
        "every class got the same image: average only the images whose label is that class.":
            pixels.mean(0).expand(spec.n_classes, *spec.shape),
        "too large: that is a sum; divide by the number of images of the class (use .mean).":
            torch.stack([pixels[labels == c].sum(0) for c in range(spec.n_classes)]),
        "channels last (H x W x C, as stored): return C x H x W images, as data.to_float gives them.":
            want.permute(0, 2, 3, 1),
    }
    got = call(title, fn, images.clone(), labels.clone())
    verdict(title, got, want, mistakes, "One image per class, in class order 0, 1, ..., each the pixel-wise mean "
            "of data.to_float(images) of that class.")


def check_mirror_asymmetry(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 00.2: ``fn(means n_classes x C x H x W)`` -> n_classes relative L2 distances between each image and
    its mirror image, like :func:`prodlab.data.mirror_asymmetry`."""
    title = "mirror asymmetry"
    spec = data.spec()
    means = torch.rand(spec.n_classes, *spec.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = data.mirror_asymmetry(means)
    flat = means.flatten(1)
    mistakes = {
        "you flipped top to bottom: a horizontal flip mirrors left and right, the last axis (flip(-1)).":
            (flat - means.flip(-2).flatten(1)).norm(dim=1) / flat.norm(dim=1),
        "not relative: divide each distance by the norm of the class's own image.":
            (flat - means.flip(-1).flatten(1)).norm(dim=1),
        "squared: take the L2 norm (the square root), not the sum of squares.":
            (flat - means.flip(-1).flatten(1)).pow(2).sum(1) / flat.pow(2).sum(1),
    }
    got = call(title, fn, means.clone())
    verdict(title, got, want, mistakes, "||m - flip(m)|| / ||m|| for each class image m.")


