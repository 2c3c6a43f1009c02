"""The colour catalogue (prodlab.datasets.colour, ``python -m prodlab data colour``): deterministic, the colour and
pattern asked for, shading kept from the grey original, a light background, captions, and the stored catalogue
built, verified and rebuilt only when its recipe changes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prodlab import cli, datasets
from prodlab.datasets import colour, fashion_mnist, store

N = 600


def _grey(n: int = N) -> torch.Tensor:
    return fashion_mnist.load("test")[0][:n]


def _core(grey: torch.Tensor) -> torch.Tensor:
    """Where the grey product is clearly present, on the colour canvas (bool N x S x S)."""
    h = grey.shape[1]
    top = (colour.SIZE - h) // 2
    pad = (top, colour.SIZE - h - top, top, colour.SIZE - h - top)
    return F.pad(grey[..., 0].float() / 255, pad) > 0.3


def test_captions_read_like_a_shop():
    assert colour.caption("Dress", "red", "stripes") == "a red striped dress"
    assert colour.caption("Coat", "orange", "plain") == "an orange coat"
    assert colour.caption("Trouser", "blue", "checks") == "a pair of blue checked trousers"
    assert colour.caption("Ankle boot", "white", "dots") == "a white dotted ankle boot"
    assert set(colour.NOUNS) == set(fashion_mnist.CLASS_NAMES)  # every class has its noun


def test_a_caption_of_an_unknown_value_is_refused():
    for bad in (("Dress", "teal", "plain"), ("Dress", "red", "paisley"), ("Hat", "red", "plain")):
        with pytest.raises(ValueError, match="no caption"):
            colour.caption(*bad)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    grey = _grey(200)
    a, attrs_a = colour.build_split(grey, 5)
    b, attrs_b = colour.build_split(grey, 5)
    c, attrs_c = colour.build_split(grey, 6)
    assert torch.equal(a, b) and torch.equal(attrs_a, attrs_b)
    assert not torch.equal(attrs_a, attrs_c) and not torch.equal(a, c)
    assert a.dtype == torch.uint8 and a.shape == (200, colour.SIZE, colour.SIZE, 3)


def test_colours_and_patterns_are_uniform_and_independent_of_each_other():
    attrs = colour.draw_attributes(16_000, torch.Generator().manual_seed(0))
    joint = torch.bincount(attrs[:, 0] * len(colour.PATTERNS) + attrs[:, 1],
                           minlength=len(colour.COLOURS) * len(colour.PATTERNS)).float()
    expected = len(attrs) / len(joint)
    chi2 = ((joint - expected) ** 2 / expected).sum().item()
    assert chi2 < 60, chi2  # 31 degrees of freedom: 60 is beyond the 99.9th percentile of a fair draw


def test_each_plain_product_has_the_colour_it_was_given():
    """The mean colour of the product's core, compared by direction (hue) with the named colours, and by brightness
    for black against white, names the colour the image was given."""
    grey = _grey()
    images, attrs = colour.build_split(grey, 1)
    x, core = images.float() / 255, _core(grey)
    names = [name for name, _ in colour.COLOURS]
    ref = torch.tensor([rgb for _, rgb in colour.COLOURS])
    ref = ref / ref.norm(dim=1, keepdim=True)
    plain = (attrs[:, 1] == 0).nonzero()[:, 0].tolist()
    assert len(plain) > N // 8
    for i in plain:
        mean = x[i][core[i]].mean(0)
        found = names[int(((mean / mean.norm()) - ref).norm(dim=1).argmin())]
        if found in ("black", "white"):
            found = "black" if mean.mean() < 0.4 else "white"
        assert found == names[attrs[i, 0]], (i, found, names[attrs[i, 0]])


def test_pattern_masks_cover_what_their_names_say():
    n = 400
    kinds = torch.arange(len(colour.PATTERNS)).repeat(n // len(colour.PATTERNS))
    params = torch.randint(0, 12, (n, 3), generator=torch.Generator().manual_seed(0))
    params[:, 2] %= 2
    masks = colour.pattern_masks(kinds, params, colour.SIZE)
    cover = {name: masks[kinds == k].mean().item() for k, name in enumerate(colour.PATTERNS)}
    assert cover["plain"] == 0.0
    assert abs(cover["stripes"] - 1 / 3) < 0.01 and abs(cover["checks"] - 1 / 2) < 0.01
    assert 0.1 < cover["dots"] < 0.2
    stripes = masks[kinds == colour.PATTERNS.index("stripes")]
    rows_constant = (stripes == stripes[:, :, :1]).flatten(1).all(1)
    cols_constant = (stripes == stripes[:, :1, :]).flatten(1).all(1)
    assert rows_constant.any() and cols_constant.any() and not (rows_constant & cols_constant).any()


def test_the_shading_of_the_grey_original_is_kept_and_the_background_is_light():
    grey = _grey()
    images, attrs = colour.build_split(grey, 2)
    x, core = images.float() / 255, _core(grey)
    corners = torch.cat([x[:, :2, :2], x[:, :2, -2:]], 1).reshape(-1, 3)
    assert corners.min() > 0.85 and (corners.max(1).values - corners.min(1).values).max() < 0.06
    h = grey.shape[1]
    top = (colour.SIZE - h) // 2
    g = F.pad(grey[..., 0].float() / 255, (top, colour.SIZE - h - top) * 2)
    correlations = []
    for i in ((attrs[:, 1] == 0) & (attrs[:, 0] != len(colour.COLOURS) - 1)).nonzero()[:, 0].tolist():
        lum, src = x[i][core[i]].mean(1), g[i][core[i]]
        if src.std() > 0.05:
            correlations.append(torch.corrcoef(torch.stack([lum, src]))[0, 1].item())
    assert torch.tensor(correlations).median() > 0.8


def test_data_colour_builds_verifies_and_rebuilds_the_stored_catalogue(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRODLAB_DATA", str(tmp_path))
    small = {split: tuple(t[:120] for t in fashion_mnist.load(split)) for split in ("train", "test")}
    monkeypatch.setattr(fashion_mnist, "load", lambda split, download=True: small[split])
    datasets.forget()
    assert cli.main(["data", "list"]) == 0
    assert "not built yet" in capsys.readouterr().out
    assert cli.main(["data", "colour"]) == 0
    assert "built" in capsys.readouterr().out
    assert cli.main(["data", "list"]) == 0
    assert "not built yet" not in capsys.readouterr().out
    spec = datasets.spec(colour.NAME)
    assert spec.shape == (3, colour.SIZE, colour.SIZE) and spec.class_names == fashion_mnist.CLASS_NAMES
    assert spec.values("colour") == tuple(name for name, _ in colour.COLOURS)
    images, labels = datasets.load(colour.NAME, "test")
    assert torch.equal(labels, small["test"][1]) and datasets.attributes(colour.NAME, "test").shape == (120, 2)
    assert torch.equal(images, colour.build_split(small["test"][0], colour.SEED + 1)[0])  # the test split's seed
    assert cli.main(["data", "colour"]) == 0
    assert "verified" in capsys.readouterr().out  # current: not built again
    monkeypatch.setattr(colour, "VERSION", colour.VERSION + 1)
    assert not colour.is_current()
    assert cli.main(["data", "colour"]) == 0 and "built" in capsys.readouterr().out
    path = store.catalogue_dir(colour.NAME) / store.CATALOGUE_FILE
    path.write_bytes(path.read_bytes()[:-100])  # damaged: rebuilt, not trusted
    datasets.forget()
    assert not colour.is_current()
    assert cli.main(["data", "colour"]) == 0 and "built" in capsys.readouterr().out
    datasets.forget()


def test_the_colour_catalogue_is_made_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODLAB_DATA", str(tmp_path))
    small = {split: tuple(t[:60] for t in fashion_mnist.load(split)) for split in ("train", "test")}
    monkeypatch.setattr(fashion_mnist, "load", lambda split, download=True: small[split])
    datasets.forget()
    assert not store.catalogue_dir(colour.NAME).exists()
    images, labels = datasets.load(colour.NAME, "train")  # no `data colour` first: built here
    assert images.shape == (60, colour.SIZE, colour.SIZE, 3) and colour.is_current()
    datasets.forget()
