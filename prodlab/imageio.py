"""Any user photo -> a Fashion-MNIST product image, so it can be searched (§2.4 item 3) or edited (notebook 05).

A shopper's photo is not a catalogue thumbnail: any size, colour or grey, often dark product on a light
background, sometimes with a transparent one. :func:`to_product_image` repeats the steps Zalando used to make
Fashion-MNIST from its product photos (the dataset's README, "Get the data"): trim the edges that have the colour of
the background, resize the **longest edge to 28 pixels** keeping the aspect ratio, extend the short edge to 28 with
the product centred, and negate, so that the product is bright on black.

Correction of a common belief: a Fashion-MNIST product is not a 20 x 20 box centred in 28 x 28 (that is MNIST's
digits). Measured on the 60,000 training images, the longest side of the product spans 27 or 28 pixels in 99.97 %
of them, so :class:`Framing` defaults to ``fit = 28``; notebook 06 measures what a 20-pixel framing costs search.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

WHITE = (255, 255, 255, 255)


class ImageError(ValueError):
    """A file that is not a readable image, or an image with no product in it; the message names the file."""


@dataclass(frozen=True)
class Framing:
    """How a product is framed in its thumbnail (defaults: Fashion-MNIST's own conventions, measured)."""

    size: int = 28  # side of the square thumbnail
    fit: int = 28  # longest side of the product after resizing (Fashion-MNIST: 28; MNIST digits: 20)
    border: float = 0.02  # fraction of each side read to estimate the background level
    tolerance: float = 24.0  # grey levels: a pixel this close to the background is background (JPEG noise)


def open_image(source: str | Path | Image.Image) -> Image.Image:
    """Read ``source`` fully with PIL (any format it knows); ``ImageError`` naming the file otherwise."""
    if isinstance(source, Image.Image):
        return source
    path = Path(source)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{path}: not an image PIL can read ({err})") from err


def _name(source: str | Path | Image.Image) -> str:
    return str(source) if not isinstance(source, Image.Image) else f"<PIL image {source.mode} {source.size}>"


def grey_on_white(img: Image.Image) -> np.ndarray:
    """Grey levels (float H x W in 0..255) with any transparency composited onto white.

    A product cut out on a transparent background (RGBA, LA, or a palette image with a transparent colour)
    is shown by every shop on white, so that is the background it gets here.
    """
    if img.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:  # 16-bit or float grey: rescale to 0..255
        arr = np.asarray(img, dtype=np.float32)
        span = float(arr.max() - arr.min())
        return (arr - arr.min()) * (255.0 / span) if span > 0 else np.zeros_like(arr)
    if img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba)
    return np.asarray(img.convert("L"), dtype=np.float32)


def border_level(grey: np.ndarray, fraction: float) -> float:
    """Median grey level of the outer ``fraction`` of rows and columns: the background (products sit inside)."""
    h, w = grey.shape
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    ring = np.concatenate([grey[:bh].ravel(), grey[-bh:].ravel(), grey[:, :bw].ravel(), grey[:, -bw:].ravel()])
    return float(np.median(ring))


def bright_on_black(grey: np.ndarray, framing: Framing) -> np.ndarray:
    """Fashion-MNIST polarity: invert a light background, subtract the background level, stretch to 0..255."""
    background = border_level(grey, framing.border)
    if background > 127.5:  # light background: dark product on white, as shops photograph it
        grey, background = 255.0 - grey, 255.0 - background
    product = np.clip(grey - background, 0.0, None)
    return product * (255.0 / product.max()) if product.max() > 0 else product


def product_box(product: np.ndarray, tolerance: float) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (exclusive ends) of the pixels above ``tolerance``; None if there are none."""
    rows, cols = np.nonzero((product > tolerance).any(1))[0], np.nonzero((product > tolerance).any(0))[0]
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def frame(product: np.ndarray, framing: Framing) -> torch.Tensor:
    """Pad a cropped product to a square (centred), resize it to ``fit`` pixels, centre it in ``size`` x ``size``."""
    h, w = product.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = product
    x = torch.from_numpy(square / 255.0)[None, None]
    x = F.interpolate(x, size=(framing.fit, framing.fit), mode="bilinear", antialias=True, align_corners=False)
    pad = framing.size - framing.fit
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    return x[0].clamp(0.0, 1.0)


def to_product_image(source: str | Path | Image.Image, framing: Framing = Framing()) -> torch.Tensor:
    """A user image (a path or a PIL image) as a product thumbnail: float tensor 1 x 28 x 28 in [0, 1].

    Steps: read (``ImageError`` naming the file if it cannot be read or is empty), composite transparency onto
    white, convert to grey, detect a light background from the border and invert to Fashion-MNIST polarity,
    crop to the product's bounding box, pad to a square, resize (aspect ratio kept) and centre.
    An image that already has the thumbnail's size is taken as framed (a catalogue thumbnail comes back
    unchanged; re-centring it could move it by a pixel). An image without a product (uniform) raises
    ``ImageError`` too: it cannot be searched.
    """
    img = open_image(source)
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{_name(source)}: the image is empty (0 pixels)")
    product = bright_on_black(grey_on_white(img), framing)
    box = product_box(product, framing.tolerance)
    if box is None:
        raise ImageError(f"{_name(source)}: no product found (the image is a uniform colour)")
    if img.size == (framing.size, framing.size):
        return torch.from_numpy(product / 255.0).float()[None]
    top, bottom, left, right = box
    return frame(product[top:bottom, left:right], framing)


def shop_photo(image: torch.Tensor, width: int = 1000, height: int = 800, background: int = 245,
               jpeg_quality: int | None = 85) -> Image.Image:
    """The inverse experiment: a catalogue thumbnail as a shop would photograph it, to test the way back.

    The product (uint8 28 x 28 or float (1 x) 28 x 28 in [0, 1]) is enlarged with bicubic interpolation to 3/4 of
    the photo's height, turned dark on a light ``background``, pasted in the middle of an RGB ``width`` x
    ``height`` photo and, unless ``jpeg_quality`` is None, JPEG-compressed with its artefacts.
    """
    x = image.float().reshape(28, 28) / (255.0 if image.dtype == torch.uint8 else 1.0)
    grey = np.clip(background * (1.0 - x.numpy()), 0, 255).astype(np.uint8)
    side = 3 * height // 4
    product = Image.fromarray(grey).resize((side, side), Image.Resampling.BICUBIC)
    photo = Image.new("L", (width, height), background)
    photo.paste(product, ((width - side) // 2, (height - side) // 2))
    photo = photo.convert("RGB")
    if jpeg_quality is None:
        return photo
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=jpeg_quality)
    return Image.open(io.BytesIO(buffer.getvalue()))
