"""User images -> Fashion-MNIST thumbnails: formats, transparency, polarity, framing, and bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prodlab import data
from prodlab.imageio import MAX_PIXELS, WORK_SIDE, Framing, ImageError, open_image, shop_photo, to_product_image


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
    x = to_product_image(_shop_photo(), Framing(size=28, fit=20))
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
                "truncated": "the image is truncated or corrupt"}[kind]
    with pytest.raises(ImageError, match=f"{kind}.png: {expected}"):
        to_product_image(path)


def test_a_catalogue_thumbnail_comes_back_unchanged(tmp_path):
    images = data.load("train")[0][:50]
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image[..., 0].numpy()).save(path)
        x = to_product_image(path)
        original = data.to_float(image[None])[0]
        assert torch.allclose(x * original.max(), original, atol=1e-6)  # the same, up to a contrast stretch


def test_a_directory_is_called_a_directory(tmp_path):
    (tmp_path / "photos.png").mkdir()
    with pytest.raises(ImageError, match="photos.png: is a directory, not an image file"):
        to_product_image(tmp_path / "photos.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway; the next test covers it for root")
def test_an_unreadable_file_is_permission_denied(tmp_path):
    path = tmp_path / "secret.png"
    _shop_photo(64, 64, (10, 10, 50, 50)).save(path)
    path.chmod(0)
    with pytest.raises(ImageError, match="secret.png: permission denied"):
        to_product_image(path)


def test_permission_denied_as_the_operating_system_reports_it(tmp_path, monkeypatch):
    """The same refusal, with the PermissionError that open(2) gives a user without read permission (any uid)."""
    path = tmp_path / "secret.png"
    _shop_photo(64, 64, (10, 10, 50, 50)).save(path)
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ImageError, match=r"secret.png: permission denied, the file cannot be read \(Permission denied"):
        to_product_image(path)


@pytest.mark.parametrize("suffix", [".gif", ".tif", ".png", ".webp"])
def test_an_animated_or_multi_page_image_is_refused_as_such(tmp_path, suffix):
    path = tmp_path / f"animated{suffix}"
    frames = [_shop_photo(120, 100, (20 + 10 * i, 20, 80 + 10 * i, 80)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match=f"animated{suffix}: an animated or multi-page .* image"):
        to_product_image(path)
    frames[0].save(tmp_path / f"still{suffix}")  # one frame in the same format is fine
    assert to_product_image(tmp_path / f"still{suffix}").shape == (1, 28, 28)


def test_a_camera_mpo_uses_its_first_frame_the_photograph(tmp_path):
    path = tmp_path / "camera.jpg"
    photo, preview = _shop_photo(), _shop_photo(1000, 800, (100, 100, 900, 700))
    photo.save(path, "MPO", save_all=True, append_images=[preview])
    assert Image.open(path).format == "MPO"
    assert _extent(to_product_image(path)) == (14, 28)  # the 2:1 product of frame 0, not the 4:3 one of frame 1


def test_a_declared_size_over_the_limit_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 10  # 7081 x 7081: just over 50 megapixels
    path = tmp_path / "big.png"
    Image.new("1", (side, side), 1).save(path)  # mode "1": 6 MB in memory, a few kB on disk
    with pytest.raises(ImageError, match=f"big.png: {side} x {side} pixels .* over the limit of 50 megapixels; "
                                          "refused before decoding"):
        to_product_image(path)


def test_a_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "phone.jpg"
    _shop_photo(9000, 6000, (2000, 1500, 7000, 4000)).save(path, quality=60)  # 54 MP declared: over the limit ...
    img = open_image(path)  # ... but the JPEG's draft decodes it at 1/4 scale, then it is shrunk to WORK_SIDE
    assert max(img.size) == WORK_SIDE and img.size == (1024, 683)
    assert _extent(to_product_image(path)) == (14, 28)


def test_exif_orientation_survives_the_shrinking(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _shop_photo(3000, 2000, (500, 500, 2500, 1500)).save(path, exif=exif.tobytes())
    assert open_image(path).size == (683, 1024)  # upright and shrunk
    assert _extent(to_product_image(path)) == (28, 14)  # the wide product stands on end, as the camera meant


@pytest.mark.parametrize("mode", ["1", "P", "L", "RGBA", "I;16", "CMYK"])
def test_a_large_image_is_shrunk_in_its_own_mode_before_any_conversion(mode):
    big = _shop_photo(4000, 3000, (1000, 1000, 3000, 2000)).convert(mode if mode != "I;16" else "L",
                                                                     dither=Image.Dither.NONE)
    if mode == "I;16":
        big = Image.fromarray(np.asarray(big, dtype=np.uint16) * 257)
    small = open_image(big)
    assert small.mode == big.mode and small.size == (1024, 768)
    assert _extent(to_product_image(big)) == (14, 28)


def test_a_colour_photo_becomes_a_catalogue_image_of_the_spec():
    from prodlab.datasets.spec import ImageSpec
    from prodlab.imageio import to_colour_image, user_image

    spec = ImageSpec(3, 32, 32, ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    arr = np.full((300, 600, 3), (250, 250, 250), dtype=np.uint8)
    arr[100:200, 100:500] = (200, 20, 20)  # a red bar, twice as wide as the photo is high... on light grey
    x = to_colour_image(Image.fromarray(arr), spec)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([250 / 255] * 3), atol=0.01)  # padded with the border colour
    centre = x[:, 16, 16]
    assert centre[0] > 0.7 and centre[1] < 0.2 and centre[2] < 0.2  # red stays red
    assert torch.equal(user_image(Image.fromarray(arr), spec), x)
    assert user_image(_shop_photo(), data.spec()).shape == (1, 28, 28)  # a grey catalogue: Fashion-MNIST's way
