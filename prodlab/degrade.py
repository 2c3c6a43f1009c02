"""Degradations of product images: the forward operators ``A`` of chapter 05's inverse problems (noise, missing
pixels, low resolution) and the blur and noise that chapter 04 uses to check the ruler. One definition each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prodlab import data
from prodlab.datasets.spec import ImageSpec


def rng(seed: int) -> torch.Generator:
    """A fresh random generator seeded with ``seed``: every degradation is reproducible from its seed.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return torch.Generator().manual_seed(seed)


def gaussian_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """``y = clamp(x + sigma * eps)``, eps ~ N(0, 1) per pixel: sensor noise of a poor photo.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return (x + sigma * torch.randn(x.shape, generator=rng(seed))).clamp(0.0, 1.0)


def salt_and_pepper(x: Tensor, amount: float, seed: int = 0) -> Tensor:
    """A share ``amount`` of the pixels set to 0 or 1 (half each): dead and hot pixels, dust, scan defects.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    u = torch.rand(x.shape, generator=rng(seed))
    y = x.clone()
    y[u < amount / 2] = 0.0
    y[(u >= amount / 2) & (u < amount)] = 1.0
    return y


def downsample(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling ``factor`` x ``factor``: what a low-resolution thumbnail (half the side) records of a product.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return F.avg_pool2d(x, factor)


MASKS = ("center", "blocks", "half")


def _empty_mask(n: int, image: ImageSpec | None) -> Tensor:
    """No pixel missing: bool N x C x H x W, the shape of a batch of ``image`` (default: the default data set's,
    Fashion-MNIST)."""
    return torch.zeros(n, *(image or data.spec()).shape, dtype=torch.bool)


def missing_mask(kind: str, n: int, seed: int = 0, image: ImageSpec | None = None) -> Tensor:
    """Bool N x C x H x W, True where a pixel is missing (to be restored), for images of ``image`` (default: the
    default data set's, ``data.spec()``); a missing pixel is missing in every channel.

    ``center``: the central box from 2/7 to 5/7 of each side (12 x 12 of 28 x 28: a sticker or watermark over the
    product); ``blocks``: four random blocks a quarter of the side wide (7 x 7 of 28: torn or scratched areas);
    ``half``: the left half for even images, the right half for odd ones (a cropped photo).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    m = _empty_mask(n, image)
    h, w = m.shape[-2:]
    if kind == "center":
        m[..., round(2 * h / 7) : round(5 * h / 7), round(2 * w / 7) : round(5 * w / 7)] = True
    elif kind == "blocks":
        bh, bw = h // 4, w // 4
        span = torch.tensor([h - bh + 1, w - bw + 1])  # top-left corners that keep a block inside the image
        corners = torch.randint(0, int(span.max()), (n, 4, 2), generator=rng(seed)) * span // span.max()
        for i in range(n):
            for top, left in corners[i].tolist():
                m[i, :, top : top + bh, left : left + bw] = True
    elif kind == "half":
        m[0::2, ..., : w // 2] = True
        m[1::2, ..., w // 2 :] = True
    else:
        raise ValueError(f"unknown mask {kind!r}; known: {', '.join(MASKS)}")
    return m


def box_mask(top: int, bottom: int, left: int, right: int, n: int = 1, image: ImageSpec | None = None) -> Tensor:
    """A rectangle of missing pixels, rows ``top:bottom`` and columns ``left:right`` (the widget's range sliders),
    clipped to the image of ``image`` (default: the default data set's); bool N x C x H x W.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    m = _empty_mask(n, image)
    h, w = m.shape[-2:]
    m[..., max(top, 0) : min(bottom, h), max(left, 0) : min(right, w)] = True
    return m


def blur(x: Tensor, sigma: float, truncate: float = 3.0) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels, kernel ``2 * ceil(truncate * sigma) + 1`` wide;
    ``sigma <= 0`` leaves the images unchanged. Chapter 04 blurs real images to check the ruler (truncate 3);
    chapter 05's Gaussian filter is the same blur with a narrower kernel (truncate 2)."""
    if sigma <= 0:
        return x
    import torchvision.transforms.functional as TF  # torchvision takes seconds to import; only the blur needs it

    size = 2 * math.ceil(truncate * sigma) + 1
    return TF.gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])
