"""How a network's resolution ladder follows the image spec: the number of stride-2 halvings and the feature-map
sizes they leave, so the same model code serves 28, 32 and 64 pixel images (or any side divisible by 4)."""

from __future__ import annotations

from prodlab.datasets.spec import ImageSpec

SMALLEST = 8  # the coarsest feature map of a generator or discriminator has at most this many pixels a side


def halvings(image: ImageSpec, smallest: int = SMALLEST) -> int:
    """The number ``k >= 2`` of stride-2 halvings that takes the image down to at most ``smallest`` pixels a side
    (28 -> 7 and 32 -> 8: two; 64 -> 8: three). ``ValueError`` if the sides are not divisible by ``2 ** k``."""
    side, k = min(image.height, image.width), 2
    while side % 2 ** (k + 1) == 0 and side // 2**k > smallest:
        k += 1
    if image.height % 2**k or image.width % 2**k:
        raise ValueError(f"image sides {image.height} x {image.width} must be divisible by {2**k} "
                         f"({k} halvings); import the images at a size divisible by 8, e.g. 32 or 64")
    return k


def bottom(image: ImageSpec, k: int) -> tuple[int, int]:
    """The feature-map size ``(height, width)`` after ``k`` halvings (floor division, as pooling does)."""
    return image.height // 2**k, image.width // 2**k
