"""Any user photo -> a product image of a catalogue's spec, so it can be searched (§2.4 item 3) or edited
(notebook 05): a Fashion-MNIST thumbnail (:func:`to_product_image`) or a colour one (:func:`to_colour_image`, the
conversion ``python -m prodlab data import`` applies to every file of a folder); :func:`user_image` picks by spec.

A shopper's photo is not a catalogue thumbnail: any size, colour or grey, often dark product on a light
background, sometimes with a transparent one. :func:`to_product_image` repeats the steps Zalando used to make
Fashion-MNIST from its product photos (the dataset's README, "Get the data"): trim the edges that have the colour of
the background, resize the **longest edge to 28 pixels** keeping the aspect ratio, extend the short edge to 28 with
the product centred, and negate, so that the product is bright on black.

Correction of a common belief: a Fashion-MNIST product is not a 20 x 20 box centred in 28 x 28 (that is MNIST's
digits). Measured on the 60,000 training images, the longest side of the product spans 27 or 28 pixels in 99.97 %
of them, so :meth:`Framing.of` fits the product to the whole side; notebook 06 measures what a 20-pixel framing
costs search.

**Inputs that cannot break it** (the rules, each with its own one-line ``ImageError``):

* at most :data:`MAX_PIXELS` (50 megapixels) are decoded, checked on the header **before** decoding: a
  decompression bomb (a 30000 x 30000 PNG is 2.7 MB on disk and 900 megapixels) is refused, and so is any image
  that large. A JPEG is first decoded at a reduced scale (``Image.draft``, 1/2 to 1/8 in the DCT), so a 108 MP
  phone photo is read at 1.7 MP and passes; anything over Pillow's own ceiling (179 MP declared) is refused;
* what is decoded is shrunk to :data:`WORK_SIDE` pixels on its longest side before any conversion, so a
  50 MP image costs at most its decoded size (200 MB for RGBA) once, and every later step works on 1 megapixel;
* an animated or multi-page image (GIF, APNG, WebP, TIFF with more than one frame) is refused: which frame is the
  product is the user's call, not ours. The one exception is MPO, the JPEG that cameras write with extra views or
  a preview: its first frame is the photograph, by the MPO standard, and it is used;
* a directory, an unreadable file (permission denied), an empty (0-byte) file, a file that is not an image and a
  truncated image each get a message that says which.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from prodlab.datasets import fashion_mnist
from prodlab.datasets.spec import ImageSpec

WHITE = (255, 255, 255, 255)
MAX_PIXELS = 50_000_000  # the most pixels decoded from one file (after a JPEG's draft reduction): 200 MB as RGBA
WORK_SIDE = 1024  # longest side an image is shrunk to before any conversion: ample for a 28-pixel thumbnail
STILL_FORMATS_WITH_FRAMES = {"MPO"}  # frames beyond the first are previews or other views: frame 0 is the photo


class ImageError(ValueError):
    """A file that is not a readable image, or an image with no product in it; the message names the file."""


@dataclass(frozen=True)
class Framing:
    """How a product is framed in its thumbnail (defaults: Fashion-MNIST's own conventions, measured)."""

    size: int  # side of the square thumbnail
    fit: int  # longest side of the product after resizing (Fashion-MNIST: the whole side; MNIST's digits: 20 of 28)
    border: float = 0.02  # fraction of each side read to estimate the background level
    tolerance: float = 24.0  # grey levels: a pixel this close to the background is background (JPEG noise)

    @classmethod
    def of(cls, image: ImageSpec) -> Framing:
        """Fashion-MNIST's convention for images of ``image``: the product's longest side spans the thumbnail."""
        return cls(size=image.height, fit=image.height)


def open_image(source: str | Path | Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """``source`` decoded in bounded memory, upright (EXIF orientation) and shrunk to ``side`` pixels at most.

    A path is checked before it is decoded (see the module's rules: :data:`MAX_PIXELS`, one frame); every refusal
    is an ``ImageError`` whose one line names the file and says what is wrong with it. A PIL image is only shrunk.
    """
    if isinstance(source, Image.Image):
        return shrink(source, side)
    path = Path(source)
    _check_path(path)
    try:
        with path.open("rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit is lower and stated
            with Image.open(fp) as img:
                _check_decodable(path, img, side)
                img.load()
                return ImageOps.exif_transpose(shrink(img, side))
    except ImageError:
        raise
    except PermissionError as err:
        raise ImageError(f"{path}: permission denied, the file cannot be read ({err.strerror})") from err
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))  # Pillow's own ceiling, hit inside Image.open
        raise _too_large(path, f"{int(found[1]) / 1e6:,.0f} megapixels" if found else "the image") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image PIL can read (the format is unknown or the file is corrupt)") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"{path}: the image is truncated or corrupt and cannot be decoded ({err})") from err


def _check_path(path: Path) -> None:
    """Refuse what is not a non-empty regular file, each case with its own message."""
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file (a device, socket or pipe), not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes)")


def _check_decodable(path: Path, img: Image.Image, side: int) -> None:
    """Before decoding (only the header has been read): one still frame, at most :data:`MAX_PIXELS` to decode.

    A JPEG's ``draft`` is applied first, so its limit counts the pixels it will really decode.
    """
    if img.format in {"JPEG", "MPO"}:
        img.draft(img.mode, (side, side))
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise _too_large(path, f"{width} x {height} pixels ({width * height / 1e6:,.0f} megapixels)")
    if getattr(img, "is_animated", False) and img.format not in STILL_FORMATS_WITH_FRAMES:
        raise ImageError(f"{path}: an animated or multi-page {img.format} image (more than one frame); search and "
                         "editing take one still image: save the frame you mean as PNG or JPEG")


def _too_large(path: Path, what: str) -> ImageError:
    return ImageError(f"{path}: {what} is over the limit of {MAX_PIXELS / 1e6:.0f} megapixels; refused before "
                      "decoding (a decompression bomb, or far larger than a product photo needs: resize it)")


def shrink(img: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """``img`` with its longest side at most ``side``: area-averaged (palette and bilevel images: nearest).

    Done before any mode conversion, and without a full-size copy: an integer ``reduce`` (block means) of strips
    first, then a resize of the small result (Pillow's resize and reduce of RGBA and LA premultiply a copy of the
    whole image). The conversions that follow (transparency, grey, float) cost about ``side`` x ``side`` pixels
    each, whatever the input.
    """
    if max(img.size) <= side:
        return img
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if img.mode in {"1", "P", "PA"}:  # averaging palette indices would invent colours
        return img.resize(size, Image.Resampling.NEAREST)
    factor = max(img.size) // side
    if factor > 1 and img.mode not in {"I;16", "I;16L", "I;16B", "I;16N"}:  # the modes reduce() takes
        img = _reduce_in_strips(img, factor)
    return img.resize(size, Image.Resampling.BOX)


def _reduce_in_strips(img: Image.Image, factor: int, blocks: int = 64) -> Image.Image:
    """``img.reduce(factor)``, computed ``blocks`` rows of blocks at a time: the copies it makes are strips."""
    out = Image.new(img.mode, (-(-img.width // factor), -(-img.height // factor)))
    out.info = dict(img.info)  # as reduce() keeps it: the EXIF orientation is applied after shrinking
    step = factor * blocks
    for top in range(0, img.height, step):
        strip = img.crop((0, top, img.width, min(img.height, top + step)))
        out.paste(strip.reduce(factor), (0, top // factor))
    return out


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
    # clipped: in float32, max * (255 / max) can round to a hair above 255 (a pixel of 1.0000001 after / 255)
    return np.clip(product * (255.0 / product.max()), 0.0, 255.0) if product.max() > 0 else product


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


def to_product_image(source: str | Path | Image.Image, framing: Framing | None = None) -> torch.Tensor:
    """A user image (a path or a PIL image) as a product thumbnail: float tensor 1 x S x S in [0, 1] (``framing``:
    default Fashion-MNIST's, :meth:`Framing.of` its spec).

    Steps: read (``ImageError`` naming the file if it cannot be read or is empty), composite transparency onto
    white, convert to grey, detect a light background from the border and invert to Fashion-MNIST polarity,
    crop to the product's bounding box, pad to a square, resize (aspect ratio kept) and centre.
    An image that already has the thumbnail's size is taken as framed (a catalogue thumbnail comes back
    unchanged; re-centring it could move it by a pixel). An image without a product (uniform) raises
    ``ImageError`` too: it cannot be searched.
    """
    framing = framing or Framing.of(fashion_mnist.SPEC)
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

    The product (a one-channel image, uint8 or float in [0, 1], H x W with any size-1 axes) is enlarged with
    bicubic interpolation to 3/4 of the photo's height, turned dark on a light ``background``, pasted in the middle
    of an RGB ``width`` x
    ``height`` photo and, unless ``jpeg_quality`` is None, JPEG-compressed with its artefacts.
    """
    x = image.float().squeeze() / (255.0 if image.dtype == torch.uint8 else 1.0)
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


def rgb_on_white(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB: transparency composited onto white (as shops show cut-out products), 16-bit and float
    grey rescaled to 0..255, CMYK, palette, bilevel and grey converted by Pillow."""
    if img.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        return Image.fromarray(grey_on_white(img).round().astype(np.uint8)).convert("RGB")
    if img.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as err:  # a mode Pillow cannot convert to RGB (e.g. LAB)
        raise ImageError(f"<{img.mode} image>: its colour mode cannot be converted to RGB ({err})") from err


def border_colour(rgb: np.ndarray, fraction: float = 0.02) -> tuple[int, ...]:
    """Per-channel median of the outer ``fraction`` of rows and columns of a H x W x C array: the background."""
    h, w = rgb.shape[:2]
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    ring = np.concatenate([rgb[:bh].reshape(-1, rgb.shape[2]), rgb[-bh:].reshape(-1, rgb.shape[2]),
                           rgb[:, :bw].reshape(-1, rgb.shape[2]), rgb[:, -bw:].reshape(-1, rgb.shape[2])])
    return tuple(int(v) for v in np.median(ring, axis=0))


def colour_thumbnail(img: Image.Image, height: int, width: int) -> np.ndarray:
    """An RGB image fitted into ``height`` x ``width`` with its aspect ratio kept (antialiased), the rest padded with
    its border colour: uint8 H x W x 3. Chapter 09's conversion of every imported photo."""
    rgb = rgb_on_white(img)
    scale = min(height / rgb.height, width / rgb.width)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    small = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    canvas = Image.new("RGB", (width, height), border_colour(np.asarray(rgb)))
    canvas.paste(small, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(canvas, dtype=np.uint8).copy()


def to_colour_image(source: str | Path | Image.Image, image: ImageSpec) -> torch.Tensor:
    """A user photo as a colour catalogue image of spec ``image``: float 3 x H x W in [0, 1], converted exactly as
    ``python -m prodlab data import`` converts a folder's files (bounded memory: :func:`open_image`)."""
    img = open_image(source)
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{_name(source)}: the image is empty (0 pixels)")
    arr = colour_thumbnail(img, image.height, image.width)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div(255.0).clone(memory_format=torch.contiguous_format)


def user_image(source: str | Path | Image.Image, image: ImageSpec) -> torch.Tensor:
    """A user photo as an image of the catalogue spec ``image`` (float C x H x W in [0, 1]): Fashion-MNIST's grey
    thumbnail for one channel (:func:`to_product_image`), the imported catalogues' colour one for three."""
    if image.channels == 1:
        return to_product_image(source, Framing.of(image))
    if image.channels == 3:
        return to_colour_image(source, image)
    raise ImageError(f"{_name(source)}: catalogues of {image.channels} channels take no photos (1 or 3 only)")
