"""Editing (notebook 05): degradations, classical baselines, latent optimisation, interpolation, directions, user
images and the ``evaluate edit`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from prodlab import cli, data, edit, imageio, ruler
from prodlab.datasets.spec import ImageSpec


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return edit.test_images(32)


# ---------------------------------------------------------------- degradations and masks


def test_noise_is_seeded_and_stays_in_range(x):
    a, b = edit.gaussian_noise(x, 0.3, seed=1), edit.gaussian_noise(x, 0.3, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, edit.gaussian_noise(x, 0.3, seed=2))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert 0.2 < float((a - x).std()) < 0.3  # clamping at 0 and 1 trims the noise a little


def test_salt_and_pepper_hits_the_requested_share_with_zeros_and_ones(x):
    y = edit.salt_and_pepper(x, 0.1, seed=0)
    changed = y != x
    assert 0.07 < float(changed.float().mean()) < 0.11  # some hits land on pixels that already were 0 or 1
    assert set(torch.unique(y[changed]).tolist()) <= {0.0, 1.0}


def test_downsample_averages_2x2_blocks():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(edit.downsample(img), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_masks_have_the_documented_shapes():
    centre = edit.missing_mask("center", 3)
    assert centre.shape == (3, 1, 28, 28) and int(centre[0].sum()) == 144 and bool(centre[0, 0, 14, 14])
    half = edit.missing_mask("half", 2)
    assert bool(half[0, 0, :, :14].all()) and not bool(half[0, 0, :, 14:].any())
    assert bool(half[1, 0, :, 14:].all()) and not bool(half[1, 0, :, :14].any())
    blocks = edit.missing_mask("blocks", 5, seed=3)
    assert torch.equal(blocks, edit.missing_mask("blocks", 5, seed=3))
    assert all(49 <= int(b.sum()) <= 196 for b in blocks)
    assert int(edit.box_mask(2, 6, 20, 40).sum()) == 4 * 8  # clipped at the image border
    with pytest.raises(ValueError, match="unknown mask"):
        edit.missing_mask("circle", 1)


def test_masks_and_filters_follow_the_image_spec():
    spec = ImageSpec(3, 64, 64, ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    centre = edit.missing_mask("center", 2, image=spec)
    side = round(5 * 64 / 7) - round(2 * 64 / 7)
    assert centre.shape == (2, 3, 64, 64) and int(centre[0].sum()) == 3 * side**2
    assert torch.equal(centre[:, :1].expand_as(centre), centre)  # a missing pixel is missing in every channel
    assert all(int(b.sum()) >= 3 * 16 * 16 for b in edit.missing_mask("blocks", 3, seed=1, image=spec))
    assert edit.box_mask(60, 70, 0, 2, image=spec).shape == (1, 3, 64, 64)
    assert int(edit.box_mask(60, 70, 0, 2, image=spec).sum()) == 3 * 4 * 2  # clipped at the image border
    wide = ImageSpec(1, 32, 64, ("a",), (0.5,), (0.25,))
    half = edit.missing_mask("half", 2, image=wide)
    assert bool(half[0, 0, :, :32].all()) and not bool(half[0, 0, :, 32:].any()) and bool(half[1, 0, :, 32:].all())
    blocks = edit.missing_mask("blocks", 50, seed=0, image=wide)
    assert blocks.shape == (50, 1, 32, 64)
    assert all(8 * 16 <= int(b.sum()) <= 4 * 8 * 16 for b in blocks)  # four 8 x 16 blocks, inside the image
    assert bool(blocks[..., -1].any()) and bool(blocks[..., -1, :].any())  # the corners span the whole width
    colour = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = torch.from_numpy(ndimage.median_filter(colour.numpy(), size=(1, 1, 3, 3), mode="mirror"))
    assert torch.allclose(edit.median_filter(colour), ref)  # each channel on its own
    assert edit.bicubic(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)


def test_region_masks_of_one_channel_count_every_channel():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    one = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    one[..., 2:6, 2:6] = True
    full = one.expand(2, 3, 8, 8)
    assert torch.allclose(edit.psnr(y, x, one), edit.psnr(y, x, full))
    assert torch.allclose(edit.psnr(y, x, full), edit.psnr(y[..., 2:6, 2:6], x[..., 2:6, 2:6]))
    toy = edit.Prior("toy", lambda z: torch.sigmoid(z.reshape(-1, 3, 8, 8)),
                     lambda guess, forward, target: torch.zeros(len(target), 3 * 8 * 8),
                     edit.InversionConfig(steps=5))
    assert torch.equal(edit.invert(toy, y, lambda v: v, y, observed=one),
                       edit.invert(toy, y, lambda v: v, y, observed=full.clone()))


# ---------------------------------------------------------------- classical baselines


def test_median_filter_matches_scipy_and_removes_an_impulse(x):
    ours = edit.median_filter(x[:4])
    ref = torch.from_numpy(ndimage.median_filter(x[:4].numpy(), size=(1, 1, 3, 3), mode="mirror"))
    assert torch.allclose(ours, ref)
    flat = torch.full((1, 1, 28, 28), 0.5)
    flat[0, 0, 10, 10] = 1.0
    assert torch.allclose(edit.median_filter(flat), torch.full_like(flat, 0.5))


def test_diffusion_fill_keeps_visible_pixels_and_continues_a_ramp():
    h, w = data.spec().height, data.spec().width
    ramp = torch.linspace(0, 1, w).repeat(h, 1).reshape(1, 1, h, w)  # harmonic: Laplace's equation holds
    m = edit.box_mask(8, 20, 8, 20)
    filled = edit.diffusion_fill(ramp.masked_fill(m, 0.0), m, iterations=2000)
    assert torch.equal(filled[~m], ramp[~m])
    assert float((filled - ramp)[m].abs().max()) < 0.01
    colour = torch.cat([ramp, ramp.transpose(-1, -2) * (h - 1) / (w - 1), 1 - ramp], dim=1)  # each channel harmonic
    m3 = m.expand_as(colour)
    filled = edit.diffusion_fill(colour.masked_fill(m3, 0.0), m3, iterations=2000)
    assert torch.equal(filled[~m3], colour[~m3])
    assert float((filled - colour)[m3].abs().max()) < 0.01  # each channel filled from its own border


def test_mean_fill_uses_the_average_training_product(x):
    m = edit.missing_mask("center", len(x))
    filled = edit.mean_fill(x.masked_fill(m, 0.0), m)
    assert torch.equal(filled[~m], x[~m])
    assert torch.allclose(filled[0][m[0]], edit.mean_image()[0][m[0]])


def test_psnr_matches_torchmetrics_and_respects_the_region(x):
    # Imported here: torchmetrics loads torchvision, 5 s that every test worker would pay while collecting.
    from torchmetrics.functional.image import peak_signal_noise_ratio

    y = edit.gaussian_noise(x, 0.1)
    ours = edit.psnr(y, x)
    ref = torch.stack([peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(y, x, strict=True)])
    assert torch.allclose(ours, ref, atol=1e-4)
    m = edit.missing_mask("center", len(x))
    only_outside = torch.where(m, x, y)  # errors outside the region only
    assert float(edit.psnr(only_outside, x, m).min()) >= 99.0  # perfect inside: capped at 100 dB
    assert edit.ssim(x, x).allclose(torch.ones(len(x)))


# ---------------------------------------------------------------- latent optimisation


def test_inversion_recovers_a_decoded_product_better_than_its_start():
    p = edit.prior("vae")
    z_true = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    target = edit.decode(p, z_true)
    start = edit.decode(p, p.start(edit.gaussian_filter(target, 2.0), lambda v: v, target))
    found = edit.decode(p, edit.invert(p, target, lambda v: v, edit.gaussian_filter(target, 2.0)))
    assert float(edit.psnr(found, target).mean()) > float(edit.psnr(start, target).mean()) + 3.0


def test_inpainting_keeps_visible_pixels_and_beats_mean_fill(x):
    m = edit.missing_mask("center", len(x))
    y = x.masked_fill(m, 0.0)
    for name in ("vae", "dcgan"):
        out = edit.inpaint(edit.prior(name), y, m)
        assert torch.equal(out[~m], x[~m])
        assert float(edit.psnr(out, x, m).mean()) > float(edit.psnr(edit.mean_fill(y, m), x, m).mean()) + 2.0


def test_evaluate_editing_reports_every_task_and_method():
    result = edit.evaluate_editing(n=8)
    for task in edit.TASKS:
        assert {"vae_inversion", "gan_inversion"} <= set(result[task])
        assert all(np.isfinite(v["psnr"]) for v in result[task].values())
    assert "ssim" in result["superres"]["bicubic"] and "ssim" not in result["inpaint_half"]["mean_fill"]
    levels = {str(v) for v in edit.NOISE_LEVELS["gaussian"]}
    assert set(result["denoise_gaussian"]["median_filter"]["by_level"]) == levels
    table = edit.format_table(result)
    assert all(t.replace("_", " ") in table for t in edit.TASKS) and "**" in table
    settings = {f"{k} {lv:g}" for k, lvs in edit.NOISE_LEVELS.items() for lv in lvs}  # each ranked in both spaces
    assert set(result["rankings"]) == settings | {"superres"} | {f"inpaint {k}" for k in edit.MASKS}
    for setting, row in result["rankings"].items():
        assert {"psnr", "classifier", "encoder"} <= set(row) and isinstance(row["agree"], bool)
        assert row["psnr"]["best"] == max(result[_task(setting)], key=lambda m: _psnr(result, setting, m))


def _task(setting: str) -> str:
    kind = setting.split()[0]
    return f"denoise_{kind}" if kind in edit.NOISE_LEVELS else setting.replace(" ", "_")


def _psnr(result: dict, setting: str, method: str) -> float:
    row = result[_task(setting)][method]
    return row["by_level"][str(float(setting.split()[1]))]["psnr"] if "by_level" in row else row["psnr"]


def test_cli_bench_editing_prints_json(capsys):
    assert cli.main(["bench", "editing", "--images", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 4 and set(edit.TASKS) <= set(result)


# ---------------------------------------------------------------- personalised edits


def test_slerp_keeps_the_norm_and_lerp_does_not():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(64, generator=g), torch.randn(64, generator=g)
    z1 = z1 * z0.norm() / z1.norm()
    s, line = edit.interpolate(z0, z1, 11, spherical=True), edit.interpolate(z0, z1, 11, spherical=False)
    assert torch.allclose(s[0], z0, atol=1e-5) and torch.allclose(s[-1], z1, atol=1e-5)
    assert torch.allclose(s.norm(dim=1), z0.norm().expand(11), rtol=1e-4)
    assert float(line[5].norm()) < 0.85 * float(z0.norm())  # nearly orthogonal codes: the midpoint shrinks ~1/sqrt 2


def test_a_property_function_gives_the_same_direction_as_its_name():
    by_name = edit.direction("cdcgan", "width", n=300, seed=0)
    by_function = edit.property_direction("cdcgan", edit.width, n=300, seed=0)
    assert torch.equal(by_name, by_function)
    tall = edit.property_direction("cdcgan", edit.height, n=300, seed=0)
    assert tall.shape == by_name.shape and not torch.allclose(tall, by_name)


def test_class_transfer_draws_every_class_and_the_ruler_agrees():
    gan = edit.shipped("cdcgan")
    images = edit.class_transfer(gan, gan.noise(20, torch.Generator().manual_seed(0)))
    assert images.shape == (20, 10, 1, 28, 28)

    r = ruler.load()
    predicted = r.predict(r.features(images.reshape(-1, 1, 28, 28))).reshape(20, 10)
    assert float((predicted == torch.arange(10)).float().mean()) > 0.8
    with pytest.raises(ValueError, match="conditional"):
        edit.class_transfer(edit.shipped("dcgan"), torch.zeros(1, 64))


@pytest.mark.parametrize("name", edit.DIRECTION_MODELS)
@pytest.mark.parametrize("prop", list(edit.PROPERTIES))
def test_each_direction_moves_its_property_monotonically_and_keeps_the_class(name, prop):
    report = edit.direction_report(name, prop, n=100)
    assert np.all(np.diff(report["mean"]) > 0)  # the batch mean rises at every step
    assert report["share_monotone"] >= 0.8  # and for most products individually
    assert report["class_kept_small_steps"] >= 0.8


def test_direction_properties_measure_what_they_say():
    box = torch.zeros(1, 1, 28, 28)
    box[..., 4:24, 10:18] = 0.5
    assert float(edit.width(box)) == pytest.approx(8.0, abs=0.1)
    assert float(edit.brightness(box)) == pytest.approx(0.5)
    striped = box.clone()
    striped[..., :, 10:18:2] = 1.0
    assert float(edit.pattern(striped)) > 2 * float(edit.pattern(box))


# ---------------------------------------------------------------- user images


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "P"])
def test_user_photos_of_any_mode_and_size_become_editable_products(tmp_path, mode):
    x, _ = edit.showcase(1)
    photo = imageio.shop_photo(x[0], width=1000, height=800, jpeg_quality=None).convert(mode)
    path = tmp_path / f"photo.{'png' if mode in ('RGBA', 'P') else 'jpg'}"
    photo.save(path)
    product = edit.product_image(path)
    assert product.shape == (1, 28, 28) and float(product.max()) > 0.6  # bright (P: web palette, dithered) ...
    assert float(product[0, 0, :].max()) < 0.1 or float(product[0, :, 0].max()) < 0.1  # ... on black, framed
    strip = edit.edit_real(product, "width")
    assert strip.shape == (len(edit.STEPS), 1, 28, 28)
    widths = edit.width(strip)
    assert float(widths[-1]) > float(widths[0])


def test_a_catalogue_tensor_of_any_layout_becomes_the_same_product():
    x, _ = edit.showcase(1)
    u8 = (x[0] * 255).round().to(torch.uint8)  # C x H x W
    want = u8.float() / 255
    for form in (u8, u8.permute(1, 2, 0), u8[0], u8[None], want, want[None]):
        assert torch.equal(edit.product_image(form), want)
    with pytest.raises(ValueError, match="shape"):
        edit.product_image(torch.zeros(3, 5, 5))


def test_a_user_photo_takes_the_channels_and_size_of_the_spec():
    photo = Image.new("RGB", (300, 200), (245, 245, 245))
    photo.paste((200, 20, 20), (100, 50, 200, 150))  # a red product on a light background
    colour = ImageSpec(3, 32, 32, ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    x = edit.product_image(photo, colour)
    assert x.shape == (3, 32, 32)
    assert float(x[0, 16, 16]) > 0.6 and float(x[1, 16, 16]) < 0.2  # red stays red: no grey conversion
    big_grey = ImageSpec(1, 64, 64, ("a",), (0.5,), (0.25,))
    assert edit.product_image(photo, big_grey).shape == (1, 64, 64)


def test_a_file_that_is_not_an_image_is_refused_by_name(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(imageio.ImageError, match="notes.png"):
        edit.product_image(bad)
    Image.new("L", (5, 5), 0).save(tmp_path / "blank.png")
    with pytest.raises(imageio.ImageError, match="no product"):
        edit.product_image(tmp_path / "blank.png")


def test_classical_filters_are_tuned_on_images_outside_the_tables():
    settings = {lv: edit.tuned_filter("gaussian", "gaussian", lv) for lv in edit.NOISE_LEVELS["gaussian"]}
    assert set(settings.values()) <= set(edit.FILTER_GRID["gaussian"])
    assert settings[0.1] <= settings[0.3]  # more noise, more smoothing
    x = edit.test_images(64)  # the tables' images: the tuned sigma is no worse there than the untuned extremes
    y = edit.gaussian_noise(x, 0.1)
    tuned = float(edit.psnr(edit.gaussian_filter(y, settings[0.1]), x).mean())
    assert tuned >= max(float(edit.psnr(edit.gaussian_filter(y, s), x).mean()) for s in (1.0, 1.5))
