"""The figure catalogue: registration, rendering, the index page and the CLI (issue: foundation)."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from PIL import Image

from prodlab import __main__ as cli
from prodlab import chapters, figures  # noqa: F401  (importing the chapters registers their figures)

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
