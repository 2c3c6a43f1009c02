"""Degradations of product images: the forward operators ``A`` of chapter 05's inverse problems (noise, missing
pixels, low resolution) and the blur and noise that chapter 04 uses to check the ruler. One definition each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


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
    """Average pooling ``factor`` x ``factor``: what a low-resolution thumbnail (14 x 14) records of a product.

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    return F.avg_pool2d(x, factor)


MASKS = ("center", "blocks", "half")


def missing_mask(kind: str, n: int, seed: int = 0) -> Tensor:
    """Bool N x 1 x 28 x 28, True where a pixel is missing (to be restored).

    ``center``: the central 12 x 12 box (a sticker or watermark over the product); ``blocks``: four random
    7 x 7 blocks (torn or scratched areas); ``half``: the left half for even images, the right half for odd ones
    (a cropped photo).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    m = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    if kind == "center":
        m[..., 8:20, 8:20] = True
    elif kind == "blocks":
        corners = torch.randint(0, 22, (n, 4, 2), generator=rng(seed))
        for i in range(n):
            for top, left in corners[i].tolist():
                m[i, :, top : top + 7, left : left + 7] = True
    elif kind == "half":
        m[0::2, ..., :14] = True
        m[1::2, ..., 14:] = True
    else:
        raise ValueError(f"unknown mask {kind!r}; known: {', '.join(MASKS)}")
    return m


def box_mask(top: int, bottom: int, left: int, right: int, n: int = 1) -> Tensor:
    """A rectangle of missing pixels, rows ``top:bottom`` and columns ``left:right`` (the widget's range sliders).

    Chapter 05 (notebooks/05_editing.ipynb).
    """
    m = torch.zeros(n, 1, 28, 28, dtype=torch.bool)
    m[..., max(top, 0) : min(bottom, 28), max(left, 0) : min(right, 28)] = True
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
