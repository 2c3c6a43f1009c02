"""The figure catalogue: registration, rendering, the index page and the CLI (issue: foundation)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from prodlab import __main__ as cli
from prodlab import chapters, data, figures, plotting  # noqa: F401  (importing the chapters registers their figures)

DATA_FIGURES = [fid for fid in figures.REGISTRY if fid.startswith("data-")]


def test_every_figure_says_where_it_belongs():
    assert len(DATA_FIGURES) >= 5
    for spec in figures.REGISTRY.values():
        assert spec.section.startswith("§"), spec.id
        assert spec.notebook[:2].isdigit(), spec.id
        assert spec.title and spec.how, spec.id


@pytest.mark.parametrize("fid", DATA_FIGURES)
def test_data_figures_render_closed(fid):
    fig = figures.REGISTRY[fid].make()
    assert isinstance(fig, Figure)
    assert fig.number not in plt.get_fignums()  # closed: a notebook shows it once
    assert fig.axes, "an empty figure"


def test_plot_helpers_draw_grey_and_colour_images_in_either_layout():
    """uint8 N x H x W x C (stored) and float N x C x H x W (model output) draw the same; one channel is drawn grey
    with the grey colour map, three channels in their own colours."""
    grey = data.load("test")[0][:4]  # uint8 N x H x W x C, one channel
    assert np.array_equal(plotting.as_numpy(grey), plotting.as_numpy(data.to_float(grey)))
    assert plotting.as_numpy(grey).shape == (4, *grey.shape[1:3])  # H x W per image: drawn with a colour map
    colour = torch.zeros(3, 3, 12, 20)  # float N x C x H x W: red, green, blue products, wider than high
    for i in range(3):
        colour[i, i, 3:9, 5:15] = 1.0
    stored = data.to_uint8(colour)  # uint8 N x H x W x C
    assert np.array_equal(plotting.as_numpy(stored), plotting.as_numpy(colour))
    assert plotting.as_numpy(colour).shape == (3, 12, 20, 3)
    for images, cmap in ((grey, "gray"), (colour, None), (stored, None)):
        fig = plotting.image_grid(images, ncols=4)
        drawn = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(drawn) == len(images)
        if cmap:
            assert drawn[0].get_array().ndim == 2 and drawn[0].get_cmap().name == cmap
        else:
            rgb = np.asarray(drawn[1].get_array())
            assert rgb.shape == (12, 20, 3) and rgb[6, 10].tolist() == [0.0, 1.0, 0.0]  # the green one is green
    fig = plotting.labelled_rows([colour, grey[:2]], ["colour", "grey"])
    assert sum(len(ax.images) for ax in fig.axes) == 5
    assert plotting.mosaic(colour[:2], 1, 2).shape == (12, 40, 3)
    assert plotting.mosaic(grey, 2, 2).shape == (2 * grey.shape[1], 2 * grey.shape[2])
    with pytest.raises(ValueError, match="2 channels"):
        plotting.image_grid(torch.zeros(2, 2, 8, 8))


def test_catalogue_writes_png_and_index(tmp_path):
    written = figures.write_catalogue(tmp_path, only="data-augmentation")
    assert written == [tmp_path / "data-augmentation.png"]
    width, height = Image.open(written[0]).size
    assert width >= 600 and height >= 300
    index = (tmp_path / "index.md").read_text()
    assert "§3.3 step 2" in index and "(data-augmentation.png)" in index and "partial run" in index


def test_register_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="registered twice"):
        figures.register("data-samples", "x", "§1", "00_products", "x")(lambda: None)


def test_cli_unknown_figure_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["figures", "--only", "no-such-figure", "--out", str(tmp_path)]) == 1
    assert "no figure 'no-such-figure'" in capsys.readouterr().err


def test_cli_lists_figures(capsys):
    assert cli.main(["figures", "--list"]) == 0
    assert "data-samples" in capsys.readouterr().out


def test_readme_gallery_shows_registered_figures_that_exist():
    readme = (figures.config.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for fid in figures.GALLERY:
        assert fid in figures.REGISTRY
        assert f"(docs/gallery/{fid}.png)" in readme, fid
        assert (figures.GALLERY_DIR / f"{fid}.png").is_file(), "refresh it: python -m prodlab figures --gallery"


def test_write_gallery_makes_small_copies_and_names_a_missing_figure(tmp_path):
    source = tmp_path / "figs"
    source.mkdir()
    for fid in figures.GALLERY:
        Image.new("RGB", (1200, 600), "white").save(source / f"{fid}.png")
    written = figures.write_gallery(source, tmp_path / "gallery", width=300)
    assert [p.name for p in written] == [f"{fid}.png" for fid in figures.GALLERY]
    assert Image.open(written[0]).size == (300, 150)
    (source / f"{figures.GALLERY[0]}.png").unlink()
    with pytest.raises(FileNotFoundError, match="python -m prodlab figures"):
        figures.write_gallery(source, tmp_path / "gallery")
