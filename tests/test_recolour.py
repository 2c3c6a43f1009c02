"""Recolouring and re-patterning (prodlab.edit.recolour, notebook 09): the directions against scikit-learn's class
centroids, the colour map against a known affine map, the re-rendered truth differs from the photo only in the
attribute asked for, an edit to the value a photo already has leaves it as it was, and the shipped colour GAN
recolours held-out test products as asked while the ruler still reads their class."""

from __future__ import annotations

import pytest
import torch
from sklearn.neighbors import NearestCentroid

from prodlab import data, ruler
from prodlab.datasets import colour
from prodlab.edit import recolour, restore
from prodlab.edit.evaluate import ssim


def test_value_means_are_scikit_learns_class_centroids():
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (400,), generator=gen)
    codes = torch.randn(400, 7, generator=gen, dtype=torch.float64) + values[:, None]
    centroids = NearestCentroid().fit(codes.numpy(), values.numpy()).centroids_
    assert torch.allclose(recolour.value_means_of(codes, values, 5), torch.from_numpy(centroids))


@pytest.mark.parametrize("attribute", recolour.ATTRIBUTES)
def test_the_truth_is_the_same_product_with_only_the_attribute_changed(attribute):
    pairs = recolour.ground_truth(slice(0, 60), attribute)
    column = recolour.ATTRIBUTES.index(attribute)
    assert (pairs["new"] != pairs["attributes"][:, column]).all()
    before, truth = pairs["before"], pairs["truth"]
    background = (before - truth).abs().amax(1) == 0  # pixels the product does not cover are the same studio
    assert background.float().mean() > 0.3 and not torch.equal(before, truth)
    if attribute == "colour":  # the colour, read by the package's rule (no network), is the asked one
        assert (colour.name_colours(data.to_uint8(truth)) == pairs["new"]).float().mean() > 0.95
        assert (colour.name_colours(data.to_uint8(before)) == pairs["attributes"][:, 0]).float().mean() > 0.95


def test_an_edit_to_the_value_a_photo_has_leaves_it_as_it_was():
    vae = restore.load_trained("vae", colour.NAME, kind="vae")
    x = data.to_float(data.load("test", dataset=colour.NAME)[0][:16])
    values = torch.arange(16) % len(colour.COLOURS)
    means = recolour.value_means("colour")
    before, after = recolour.vae_pair(vae, x, means, values, values)
    assert torch.allclose(before, after, atol=1e-5)  # z + d - d is z up to rounding
    assert torch.equal(recolour.change("colour", x, before, after), x)  # no pixel changed: nothing is mapped
    assert torch.allclose(recolour.change("pattern", x, before, after), x, atol=1e-5)
    before, after = recolour.vae_pair(vae, x, means, values, (values + 1) % len(colour.COLOURS))
    for attribute in recolour.ATTRIBUTES:
        moved = recolour.change(attribute, x, before, after)
        assert (moved - x).abs().amax() > 0.2 and moved.min() >= 0 and moved.max() <= 1


def test_the_colour_map_recovers_a_known_affine_map_and_stays_where_the_drawing_changed():
    gen = torch.Generator().manual_seed(1)
    before = torch.rand(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    a, b = torch.rand(3, 3, 3, generator=gen, dtype=torch.float64), torch.rand(3, 1, 3, generator=gen,
                                                                               dtype=torch.float64)
    after = (before.flatten(2).transpose(1, 2) @ a + b).transpose(1, 2).view_as(before)
    fit = recolour.colour_map(before, after, torch.ones_like(before[:, :1]))
    assert torch.allclose(fit, torch.cat([a, b], 1), atol=1e-3)
    after[..., :4] = before[..., :4]  # the left half unchanged: the photo's left half must stay as it was
    x = torch.rand(3, 3, 8, 8, generator=gen, dtype=torch.float64)
    assert torch.equal(recolour.recoloured(x, before, after)[..., :1], x[..., :1])  # beyond the blur's reach


@pytest.mark.integration
def test_the_shipped_gan_recolours_as_asked_and_keeps_the_class():
    """The issue's target (90 % asked, 90 % class kept) on 100 held-out test products, each made a colour it does
    not have (the notebook measures 500, the other method and the re-patterning too)."""
    pairs = recolour.ground_truth(slice(500, 600), "colour")
    edited = recolour.edit(pairs["before"], "colour", pairs["new"], "cdcgan")
    model = ruler.load(dataset=colour.NAME).model
    before, after = model.predict_attributes(pairs["before"]), model.predict_attributes(edited)
    margin = 1.96 * (0.9 * 0.1 / len(edited)) ** 0.5  # the sampling error of a share near 0.9 on 100 products
    asked, kept = ((after["colour"] == pairs["new"]).float().mean(), (after["class"] == before["class"]).float().mean())
    assert asked >= 0.9 - margin and kept >= 0.9 - margin, (asked, kept)


def test_sdedit_with_a_new_colour_is_read_as_asked_and_carried_it_keeps_more_of_the_product():
    """SDEdit alone redraws the product in the asked colour; carried into the photo as a colour map, its change
    keeps the class and the shape (SSIM to the truth) better, on 100 held-out test products."""
    pairs = recolour.ground_truth(slice(500, 600), "colour")
    model = ruler.load(dataset=colour.NAME).model
    before = model.predict_attributes(pairs["before"])
    rows = {}
    for method in ("diffusion", "sdedit"):
        edited = recolour.edit(pairs["before"], "colour", pairs["new"], method)
        after = model.predict_attributes(edited)
        rows[method] = {"asked": (after["colour"] == pairs["new"]).float().mean().item(),
                        "class_kept": (after["class"] == before["class"]).float().mean().item(),
                        "ssim": ssim(edited, pairs["truth"]).mean().item()}
    assert rows["sdedit"]["asked"] >= 0.9, rows
    assert rows["diffusion"]["class_kept"] > rows["sdedit"]["class_kept"], rows
    assert rows["diffusion"]["ssim"] > rows["sdedit"]["ssim"] + 0.1, rows


def test_bad_requests_are_one_line_errors():
    x = torch.rand(2, 3, colour.SIZE, colour.SIZE)
    with pytest.raises(ValueError, match="method must be one of"):
        recolour.edit(x, "colour", 0, "magic")
    with pytest.raises(ValueError, match="colour has values 0..7"):
        recolour.edit(x, "colour", 8)
    with pytest.raises(ValueError, match="no attribute 'size'"):
        recolour.attribute_values("size")
