"""Exercise checkers of chapter 00 (the products, §3.3 steps 1-2, and the colour catalogue made from them)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from prodlab import data
from prodlab.datasets import colour
from prodlab.exercises.core import ExerciseFailed, call, verdict


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




def check_name_colours(fn: Callable[[Tensor], Tensor]) -> None:
    """Exercise 00.3: ``fn(images uint8 N x H x W x 3)`` -> int64 N, the index in ``colour.COLOURS`` of each colour
    catalogue product's colour, read from its pixels. Passes at 95 % accuracy on 400 fixed products of every pattern
    (the package's rule, :func:`prodlab.datasets.colour.name_colours`, reads all 10,000 test products right); the
    hint names the confusion that costs most."""
    title = "name the colour"
    names = [name for name, _ in colour.COLOURS]
    grey = data.load("test")[0][:400]
    images, attributes = colour.build_split(grey, seed=3)
    got = call(title, fn, images.clone())
    try:
        got = torch.as_tensor(got).long().flatten()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseFailed(f"{title}: expected a tensor of colour indices, got {type(got).__name__} "
                             f"({err})") from None
    if got.shape != (len(images),):
        raise ExerciseFailed(f"{title}: {tuple(got.shape)} values for {len(images)} images: return one index each")
    truth = attributes[:, 0]
    accuracy = (got == truth).float().mean().item()
    if accuracy >= 0.95:
        print(f"{title} ({accuracy:.1%} of 400 products right): correct")
        return
    pairs = torch.bincount(truth * len(names) + got.clamp(0, len(names) - 1), minlength=len(names) ** 2)
    pairs = pairs.view(len(names), len(names)).fill_diagonal_(0)
    true_k, got_k = divmod(int(pairs.argmax()), len(names))
    hints = {
        frozenset({"black", "white"}): "black and white point the same way in RGB (grey); tell them apart by "
                                       "brightness.",
    }
    hint = hints.get(frozenset({names[true_k], names[got_k]}),
                     "use only the product's pixels: the light background and the white or grey pattern are not "
                     "the product's colour, and a pixel's saturation (max - min) / max says which pixels are coloured.")
    raise ExerciseFailed(f"{title}: {accuracy:.1%} right; most often {names[true_k]} was called {names[got_k]}: {hint}")
