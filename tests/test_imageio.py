"""User images -> Fashion-MNIST thumbnails: formats, transparency, polarity, framing, and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prodlab import data
from prodlab.imageio import Framing, ImageError, shop_photo, to_product_image


def _shop_photo(width: int = 1000, height: int = 800, box: tuple[int, int, int, int] = (300, 250, 700, 450),
                product: int = 40, background: int = 250) -> Image.Image:
    """A dark product (a filled rectangle left, top, right, bottom) on a light background, RGB."""
    arr = np.full((height, width, 3), background, dtype=np.uint8)
    left, top, right, bottom = box
    arr[top:bottom, left:right] = product
    return Image.fromarray(arr)


def _extent(x: torch.Tensor, level: float = 0.5) -> tuple[int, int]:
    """(height, width) of the pixels brighter than ``level``."""
    mask = x[0] > level
    return int(mask.any(1).sum()), int(mask.any(0).sum())


def _check_thumbnail(x: torch.Tensor) -> None:
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.max()) > 0.9  # the product is bright ...
    assert float(x[0, 0, :].max()) < 0.1 or float(x[0, :, 0].max()) < 0.1  # ... on black


def test_jpeg_photo_on_white_is_inverted_cropped_and_framed_keeping_the_aspect_ratio(tmp_path):
    path = tmp_path / "shoe.jpg"
    _shop_photo().save(path, quality=70)  # a 400 x 200 product in a 1000 x 800 JPEG, dark on white
    x = to_product_image(path)
    _check_thumbnail(x)
    assert _extent(x) == (14, 28)  # longest side fills the frame as in Fashion-MNIST; 2:1 aspect ratio kept
    assert float(x[0, 14, 14]) > 0.9 and float(x[0, 2, 14]) < 0.05  # centred: product in the middle rows only


def test_rgba_cut_out_is_composited_on_white(tmp_path):
    arr = np.zeros((800, 1000, 4), dtype=np.uint8)  # fully transparent black ...
    arr[100:700, 400:600] = (20, 30, 40, 255)  # ... around an opaque dark product, 200 wide x 600 tall
    path = tmp_path / "cutout.png"
    Image.fromarray(arr, "RGBA").save(path)
    x = to_product_image(path)
    _check_thumbnail(x)
    assert _extent(x) == (28, 10)  # tall and thin: 28 x 9.3 pixels (transparent black would have hidden it)


def test_palette_image_with_transparency(tmp_path):
    photo = _shop_photo(300, 300, (100, 50, 200, 250)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    photo.info["transparency"] = photo.getpixel((0, 0))  # the background colour is transparent
    path = tmp_path / "palette.png"
    photo.save(path, transparency=photo.info["transparency"])
    assert Image.open(path).mode == "P"
    x = to_product_image(path)
    _check_thumbnail(x)
    assert _extent(x) == (28, 14)


def test_light_and_dark_backgrounds_give_the_same_thumbnail(tmp_path):
    light = _shop_photo(500, 400, (100, 100, 300, 200), product=30, background=240)
    dark = _shop_photo(500, 400, (100, 100, 300, 200), product=220, background=10)
    a, b = to_product_image(light), to_product_image(dark.convert("L"))  # a PIL image is accepted as well
    _check_thumbnail(a)
    assert torch.allclose(a, b, atol=1e-6)


def test_fashion_mnist_products_survive_a_shop_photo_round_trip(tmp_path):
    images = data.load("test")[0][:20]
    corr = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.jpg"
        shop_photo(image).save(path)  # dark on a light background, 1000 x 800, JPEG
        x = to_product_image(path)
        corr.append(np.corrcoef(x.flatten().numpy(), data.to_float(image[None]).flatten().numpy())[0, 1])
    # blur and half-pixel shifts of fine patterns (checked shirts) cost a little; nothing is lost or misplaced
    assert np.median(corr) > 0.93 and min(corr) > 0.75, corr


def test_framing_can_mimic_mnist(tmp_path):
    x = to_product_image(_shop_photo(), Framing(fit=20))
    assert _extent(x) == (10, 20) and float(x[0, :, :4].max()) == 0.0  # a 20-pixel box, 4 black columns left


def test_a_text_file_named_png_is_an_image_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        to_product_image(path)


@pytest.mark.parametrize("kind", ["empty", "missing", "blank", "truncated"])
def test_other_bad_files(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        Image.new("RGB", (64, 64), (200, 200, 200)).save(path)
    elif kind == "truncated":
        _shop_photo(200, 200, (50, 50, 150, 150)).save(path)
        path.write_bytes(path.read_bytes()[:100])
    expected = {"empty": "the file is empty", "missing": "no such file", "blank": "no product found",
                "truncated": "not an image"}[kind]
    with pytest.raises(ImageError, match=f"{kind}.png: {expected}"):
        to_product_image(path)


def test_a_catalogue_thumbnail_comes_back_unchanged(tmp_path):
    images = data.load("train")[0][:50]
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image.numpy()).save(path)
        x = to_product_image(path)
        original = data.to_float(image[None])[0]
        assert torch.allclose(x * original.max(), original, atol=1e-6)  # the same, up to a contrast stretch
