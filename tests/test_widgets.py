"""The explorers of notebook 07, driven headlessly: set a control's value, check what the image shows."""

from __future__ import annotations

import io
import statistics

import numpy as np
import pytest
import torch
from PIL import Image

from prodlab import data, edit, ruler, widgets
from prodlab.datasets.spec import ImageSpec


def _shown(explorer: widgets.Explorer) -> np.ndarray:
    """The PNG the explorer displays, decoded."""
    return np.asarray(Image.open(io.BytesIO(explorer.image.value)))


def test_png_lays_images_side_by_side_enlarged():
    side = data.spec().height
    images = torch.zeros(3, *data.spec().shape)
    images[1, 0, 0, 0] = 1.0
    arr = np.asarray(Image.open(io.BytesIO(widgets.png(images, scale=2, gap=4))))
    assert arr.shape == (2 * side, 3 * 2 * side + 2 * 4)  # one channel: a grey PNG
    tile = 2 * side + 4  # image 1 starts here
    assert arr[0, tile] == 255 and arr[1, tile + 1] == 255 and arr[2, tile + 2] == 0  # its top-left pixel, 2 x 2
    assert arr[10, 2 * side + 1] == 255  # the white gap


def test_png_of_colour_images_is_rgb():
    images = torch.zeros(2, 3, 5, 4)  # two colour images 5 high, 4 wide
    images[1, 2, 4, 3] = 1.0  # image 1's bottom-right pixel pure blue
    arr = np.asarray(Image.open(io.BytesIO(widgets.png(images, scale=3, gap=2))))
    assert arr.shape == (15, 2 * 12 + 2, 3)
    assert arr[14, 25].tolist() == [0, 0, 255] and arr[11, 23].tolist() == [0, 0, 0]
    assert arr[0, 12].tolist() == [255, 255, 255]  # the white gap


@pytest.fixture(scope="module")
def latent() -> widgets.LatentExplorer:
    return widgets.LatentExplorer(model="cdcgan", seed=3, label=4)


def test_latent_slider_moves_the_product_along_its_direction(latent):
    latent.sliders["brightness"].value = 0.0
    before, shown_before = latent.current.clone(), _shown(latent)
    latent.sliders["brightness"].value = 1.5
    assert float(edit.brightness(latent.current)) > float(edit.brightness(before)) + 0.05
    assert not np.array_equal(_shown(latent), shown_before)  # the displayed PNG changed too
    latent.sliders["brightness"].value = 0.0
    assert torch.equal(latent.current, before)  # back to the start: the same product


def test_latent_width_slider_and_seed(latent):
    latent.sliders["width"].value = -1.5
    narrow = float(edit.width(latent.current))
    latent.sliders["width"].value = 1.5
    assert float(edit.width(latent.current)) > narrow + 1.0  # pixels
    latent.sliders["width"].value = 0.0
    first = latent.current.clone()
    latent.seed.value = 4
    assert not torch.equal(latent.current, first)


def test_latent_class_and_model_pickers(latent):

    r = ruler.load()
    assert [name for name, _ in latent.label.options] == list(widgets.image_of("cdcgan").class_names)
    latent.seed.value = 3
    for label in (1, 7, 8):  # trouser, sneaker, bag
        latent.label.value = label
        assert int(r.predict(r.features(latent.current))) == label
    latent.model.value = "vae"
    assert latent.label.disabled and latent.current.shape == (1, *data.spec().shape)
    latent.model.value = "cdcgan"
    assert not latent.label.disabled


def test_slider_updates_render_in_under_100_ms(latent):
    times = []
    for model in ("cdcgan", "vae", "dcgan"):
        latent.model.value = model
        for v in np.linspace(-2, 2, 7):
            latent.sliders["pattern"].value = float(v)
            times.append(latent.seconds)
    latent.sliders["pattern"].value = 0.0
    assert statistics.median(times) < 0.1, times


@pytest.mark.parametrize("model", ["vae", "dcgan"])
@pytest.mark.parametrize("spherical", [True, False])
def test_mix_slider_reproduces_the_ends(model, spherical):
    ex = widgets.InterpolationExplorer(model=model, a=0, b=5)
    ex.spherical.value = spherical
    for mix, end in ((0.0, 0), (1.0, 2)):
        ex.mix.value = mix
        assert torch.allclose(ex.current[1], ex.current[end], atol=1e-5)
    ex.mix.value = 0.5
    assert not torch.allclose(ex.current[1], ex.current[0], atol=1e-2)


def test_vae_interpolation_ends_are_the_encoded_catalogue_items():
    ex = widgets.InterpolationExplorer(model="vae", a=10, b=20)
    items = data.to_float(data.load("train")[0][[10, 20]])
    assert torch.allclose(ex.current[[0, 2]], edit.shipped("vae").reconstruct(items), atol=1e-6)


def test_inpainting_explorer_box_and_presets():
    ex = widgets.InpaintingExplorer(image_id=0)
    original, masked, restored = ex.current
    mask = widgets.inpainting_mask("box", (8, 20), (8, 20))[0]
    assert torch.equal(restored[~mask], original[~mask])  # visible pixels kept
    assert torch.allclose(masked[mask], torch.tensor(0.5))  # the hole is shown grey
    assert "missing pixels: 144" in ex.status.value and "ms" in ex.status.value
    ex.preset.value = "half"
    assert ex.rows.disabled and "missing pixels: 392" in ex.status.value
    assert float(edit.psnr(ex.current[2:], ex.current[:1], widgets.inpainting_mask("half", (0, 0), (0, 0)))) > 10


def test_find_similar_uses_the_other_explorers_image_or_a_test_image(latent):
    ex = widgets.SimilarExplorer(source=latent, k=4)
    assert ex.current.shape == (5, *data.spec().shape)
    assert torch.equal(ex.current[0], latent.current[0])
    ex.query.value = "test"
    ex.image_id.value = 0  # an ankle boot
    ex.button.click()
    assert ex.caption.value.count("Ankle boot") >= 3


def test_box_mask_takes_the_image_size():
    image = ImageSpec(3, 6, 5, ("a", "b"), (0.5,) * 3, (0.2,) * 3)
    mask = widgets.inpainting_mask("box", (1, 3), (3, 9), image=image)
    assert mask.shape == (1, 3, 6, 5) and int(mask[0, 0].sum()) == 4 and bool(mask[0, 2, 2, 4])  # every channel
    preset = widgets.inpainting_mask("center", (0, 0), (0, 0), image=image)
    assert preset.shape == mask.shape


def test_cached_slider_directions_are_notebook_05s():
    assert set(widgets.directions()) == {f"{m}/{p}" for m in widgets.MODELS.values() for p in edit.PROPERTIES}
    assert torch.equal(widgets.slider_direction("vae", "width"), edit.direction("vae", "width"))


def test_moved_code_and_mix_code():
    z, d = torch.zeros(1, 3), torch.tensor([1.0, 2.0, 0.0])
    assert torch.equal(widgets.moved_code(z, {"width": d, "pattern": d}, {"width": 0.5, "pattern": 0.0}), 0.5 * d[None])
    za, zb = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert torch.allclose(widgets.mix_code(za, zb, 0.5, spherical=False), torch.tensor([[0.5, 1.0]]))
    assert torch.allclose(widgets.mix_code(za, zb, 1.0, spherical=True), zb, atol=1e-6)


def test_heel_height_grows_with_the_heel_and_ignores_lift_and_darkness():
    from prodlab.exercises.ch07 import shoes  # the synthetic shoes of exercise 07.3's checker

    heights = [0, 3, 6]
    value = widgets.heel_height(shoes(heights))
    assert (value.diff() > 0).all() and float(value[0]) == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(widgets.heel_height(shoes(heights, lift=5)), value, atol=1e-5)
    assert torch.allclose(widgets.heel_height(shoes(heights, level=0.4)), value, atol=1e-5)


def test_an_added_slider_moves_its_models_and_is_off_for_the_others(latent):
    latent.model.value = "cdcgan"
    heel = widgets.slider_direction("cdcgan", "width")  # any direction will do
    slider = latent.add_slider("extra", {"cdcgan": heel})
    try:
        before = latent.current.clone()
        slider.value = 1.0
        assert not torch.equal(latent.current, before) and slider in latent.widget.children
        latent.model.value = "vae"
        assert slider.disabled
    finally:
        latent.model.value = "cdcgan"
        slider.value = 0.0
        latent.widget.children = tuple(c for c in latent.widget.children if c is not slider)
        del latent.sliders["extra"], latent.extra["extra"]
