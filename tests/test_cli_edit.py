"""``python -m prodlab edit PHOTO``: inpainting keeps the known pixels and fills the box, denoising is seeded,
recolouring makes the ruler read the asked colour, and every bad rectangle, colour, photo, output path or missing
model is one line and exit status 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prodlab import checkpoints, config, data, imageio
from prodlab.cli import edit as edit_cli
from prodlab.cli import main
from prodlab.datasets import store
from prodlab.datasets.spec import ImageSpec
from prodlab.models.unet import DiffusionConfig, DiffusionModel

BOX = (8, 6, 12, 10)  # x, y, w, h: across the product's middle


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A shop photo (JPEG, dark product on a light background) of a test product."""
    path = tmp_path_factory.mktemp("photo") / "boot.jpg"
    imageio.shop_photo(data.load("test")[0][0]).save(path)
    return path


def _png(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _edit(photo, out, *options: str) -> int:
    return main(["edit", str(photo), *options, "--out", str(out)])


def _one_line_error(capsys, *expected: str) -> str:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def test_inpainting_keeps_the_known_pixels_and_fills_the_box(photo, tmp_path, capsys):
    out = tmp_path / "filled.png"
    assert _edit(photo, out, "--inpaint", ",".join(map(str, BOX)), "--scale", "1") == 0
    assert "Inpainted the 12 x 10 box at x 8, y 6" in capsys.readouterr().out
    converted = data.to_uint8(imageio.to_product_image(photo)[None])[0, ..., 0].numpy()
    edited = _png(out)
    assert edited.shape == converted.shape and edited.dtype == np.uint8
    x, y, w, h = BOX
    inside = np.zeros_like(edited, dtype=bool)
    inside[y : y + h, x : x + w] = True
    assert np.array_equal(edited[~inside], converted[~inside])  # RePaint keeps the visible pixels exactly
    assert np.abs(edited[inside].astype(int) - converted[inside]).mean() > 1.0  # the box was redrawn
    big = tmp_path / "big.png"
    assert _edit(photo, big, "--inpaint", ",".join(map(str, BOX))) == 0  # default --scale 4: nearest neighbour
    assert np.array_equal(_png(big), edited.repeat(4, 0).repeat(4, 1))


@pytest.mark.parametrize("model", ["vae", "harmonic"])
def test_other_inpainting_methods_keep_the_known_pixels_too(photo, tmp_path, model):
    out = tmp_path / "filled.png"
    assert _edit(photo, out, "--inpaint", ",".join(map(str, BOX)), "--model", model, "--scale", "1") == 0
    converted = data.to_uint8(imageio.to_product_image(photo)[None])[0, ..., 0].numpy()
    x, y, w, h = BOX
    edited = _png(out).copy()
    edited[y : y + h, x : x + w] = converted[y : y + h, x : x + w]
    assert np.array_equal(edited, converted)


def test_denoising_changes_the_image_and_a_seed_gives_the_same_bytes(photo, tmp_path, capsys):
    first, second, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert _edit(photo, first, "--denoise", "--scale", "1") == 0
    assert f"at noise level sigma {edit_cli.DEFAULT_SIGMA}" in capsys.readouterr().out
    assert _edit(photo, second, "--denoise", "--scale", "1", "--seed", "0") == 0
    assert first.read_bytes() == second.read_bytes()
    converted = data.to_uint8(imageio.to_product_image(photo)[None])[0, ..., 0].numpy()
    assert np.abs(_png(first).astype(int) - converted).mean() > 1.0
    assert _edit(photo, other, "--denoise", "--scale", "1", "--seed", "1") == 0
    assert other.read_bytes() != first.read_bytes()


def test_the_default_noise_level_is_chapter_05s():
    from prodlab.chapters import ch05_editing

    assert ch05_editing.DENOISE_SHOWN["gaussian"] == edit_cli.DEFAULT_SIGMA


def test_side_by_side_writes_input_and_edited(photo, tmp_path):
    out = tmp_path / "pair.png"
    assert _edit(photo, out, "--denoise", "--model", "median", "--side-by-side", "--scale", "2") == 0
    assert _png(out).shape == (2 * 28, 2 * (28 + 1 + 28))


@pytest.mark.parametrize(("box", "expected"), [
    ("1,2,3", "expected four integers x,y,w,h"), ("a,b,c,d", "expected four integers"),
    ("1.5,2,3,4", "expected four integers"), ("4,4,0,5", "the box is empty"), ("-1,0,5,5", "must lie inside"),
    ("20,0,10,5", "must lie inside the 28 x 28 product image"), ("0,0,28,28", "the box is the whole image"),
])
def test_a_bad_rectangle_is_one_line(photo, tmp_path, capsys, box, expected):
    out = tmp_path / "x.png"
    assert _edit(photo, out, f"--inpaint={box}") == 1
    _one_line_error(capsys, expected)
    assert not out.exists()


def test_options_that_do_not_fit_the_edit_are_one_line(photo, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert _edit(photo, out, "--denoise", "--model", "mean") == 1
    _one_line_error(capsys, "--model mean cannot denoise; --denoise takes: diffusion, vae")
    assert _edit(photo, out, "--inpaint", "1,1,4,4", "--sigma", "0.2") == 1
    _one_line_error(capsys, "--sigma is the noise level of --denoise")
    for sigma in ("0", "-0.1", "5"):
        assert _edit(photo, out, "--denoise", "--sigma", sigma) == 1
        _one_line_error(capsys, "--sigma must be above 0")
    assert _edit(photo, out, "--denoise", "--scale", "0") == 1
    _one_line_error(capsys, "--scale must be between 1 and")
    assert not out.exists()


def test_exactly_one_edit_is_required(photo, tmp_path, capsys):
    for options in ([], ["--denoise", "--inpaint", "1,1,4,4"]):
        with pytest.raises(SystemExit) as stop:
            _edit(photo, tmp_path / "x.png", *options)
        assert stop.value.code == 2
    assert "one of the arguments --inpaint --denoise --recolour --pattern is required" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "text", "truncated"])
def test_a_bad_photo_is_one_line(tmp_path, capsys, kind):
    path = tmp_path / ("photo.jpg" if kind == "missing" else "photo.png")
    if kind == "text":
        path.write_text("not an image\n")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:1000])  # the header and the start of the pixels
    expected = {"missing": "photo.jpg: no such file", "text": "photo.png: not an image",
                "truncated": "photo.png: the image is truncated or corrupt"}[kind]
    out = tmp_path / "x.png"
    assert _edit(path, out, "--denoise") == 1
    _one_line_error(capsys, expected)
    assert not out.exists()


def test_out_folders_are_created_and_bad_outputs_refused_before_any_work(photo, tmp_path, capsys):
    deep = tmp_path / "new" / "folder" / "edit.png"
    assert _edit(photo, deep, "--denoise", "--model", "median") == 0  # missing folders are created
    assert deep.is_file() and not list(deep.parent.glob(".*.partial"))
    (tmp_path / "folder.png").mkdir()
    assert _edit(photo, tmp_path / "folder.png", "--denoise") == 1
    _one_line_error(capsys, "folder.png: is a directory")
    (tmp_path / "file").write_text("")
    assert _edit(photo, tmp_path / "file" / "edit.png", "--denoise") == 1  # unwritable, even for root
    _one_line_error(capsys, "cannot be written", "is a file, not a folder")
    assert _edit(photo, tmp_path / "edit.jpg", "--denoise") == 1
    _one_line_error(capsys, "--out takes a file name ending in .png")
    copy = tmp_path / "photo.png"
    copy.write_bytes(deep.read_bytes())
    assert _edit(copy, copy, "--denoise") == 1
    _one_line_error(capsys, "is the photo itself")


def test_help_lists_the_methods_and_says_where_the_rectangle_is(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["edit", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--inpaint diffusion RePaint", "harmonic", "--denoise diffusion SDEdit", "median",
                  "after the photo was converted to the catalogue's size", "--side-by-side", "example: python -m"):
        assert words in text, words


# ---------------------------------------------------------------- a catalogue other than Fashion-MNIST

@pytest.fixture
def tiny(tmp_path, monkeypatch) -> tuple[str, ImageSpec]:
    """A stored colour catalogue ``tiny`` (3 x 8 x 8: a coloured square on black) in a temporary data home, with
    its runs folder empty."""
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "data"))
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(40, 8, 8, 3, dtype=torch.uint8)
    labels = torch.arange(40) % 2
    for i in range(40):
        top, left = torch.randint(0, 4, (2,), generator=g).tolist()
        images[i, top : top + 4, left : left + 4] = torch.randint(60, 255, (3,), generator=g).to(torch.uint8)
    spec = ImageSpec.measure(images[:30], ("a", "b"))
    store.write_catalogue("tiny", spec, {"train_images": images[:30], "train_labels": labels[:30],
                                         "test_images": images[30:], "test_labels": labels[30:]}, {"source": "test"})
    return "tiny", spec


def _colour_photo(path):
    arr = np.full((64, 64, 3), 240, np.uint8)
    arr[16:48, 20:44] = (200, 30, 30)
    Image.fromarray(arr).save(path)
    return path


def test_a_catalogue_without_the_model_says_which_and_how_to_train_it(tiny, tmp_path, capsys):
    photo = _colour_photo(tmp_path / "red.png")
    assert _edit(photo, tmp_path / "x.png", "--data", "tiny", "--inpaint", "2,2,3,3") == 1
    _one_line_error(capsys, "no diffusion model has been trained on data set 'tiny'",
                    "python -m prodlab train diffusion --data tiny")
    assert _edit(photo, tmp_path / "x.png", "--data", "tiny", "--denoise", "--model", "vae") == 1
    _one_line_error(capsys, "python -m prodlab train vae --data tiny")
    out = tmp_path / "fill.png"
    assert _edit(photo, out, "--data", "tiny", "--inpaint", "2,2,3,3", "--model", "harmonic", "--scale", "1") == 0
    assert _png(out).shape == (8, 8, 3)  # a classical fill needs no model: RGB of the catalogue's size


def test_a_model_trained_on_the_catalogue_is_found_in_its_runs(tiny, tmp_path, capsys):
    name, spec = tiny
    torch.manual_seed(0)
    model = DiffusionModel(DiffusionConfig(spec, width=8))  # untrained: only where it is found matters here
    checkpoints.save("diffusion", model, dataset=name, recipe=None, command="test", seed=0, train_seconds=0.0,
                     metrics={}, directory=config.RUNS_DIR / name / "diffusion-test")
    photo, out = _colour_photo(tmp_path / "red.png"), tmp_path / "edit.png"
    assert _edit(photo, out, "--data", name, "--inpaint", "2,2,3,3", "--scale", "1") == 0
    assert "(as a 3 x 8 x 8 tiny image) with diffusion" in capsys.readouterr().out
    converted = data.to_uint8(imageio.user_image(photo, spec)[None])[0].numpy()
    edited = _png(out).copy()
    edited[2:5, 2:5] = converted[2:5, 2:5]
    assert np.array_equal(edited, converted)


@pytest.fixture(scope="module")
def colour_photo(tmp_path_factory):
    """A colour catalogue test product neither blue nor striped, saved as a PNG photo, and its colour's name."""
    from prodlab import datasets
    from prodlab.datasets import colour

    images, _ = data.load("test", dataset=colour.NAME)
    attributes = datasets.attributes(colour.NAME, "test")
    blue, striped = colour.ATTRIBUTES[0][1].index("blue"), colour.PATTERNS.index("stripes")
    i = int(((attributes[:, 0] != blue) & (attributes[:, 1] != striped)).nonzero()[0])
    path = tmp_path_factory.mktemp("colour") / "product.png"
    Image.fromarray(images[i].numpy()).save(path)
    return path, colour.ATTRIBUTES[0][1][int(attributes[i, 0])]


@pytest.mark.parametrize("model", ["vae", "cdcgan", "sdedit", "prompt"])
def test_recolouring_a_photo_makes_the_ruler_read_the_asked_colour(colour_photo, tmp_path, capsys, model):
    from prodlab import ruler

    path, was = colour_photo
    out = tmp_path / "blue.png"
    assert _edit(path, out, "--recolour", "blue", "--data", "colour", "--model", model, "--scale", "1") == 0
    assert f"Set the colour of {path} to blue" in capsys.readouterr().out
    edited = torch.from_numpy(_png(out))[None]
    read = ruler.load(dataset="colour").model.predict_attributes(data.to_float(edited))
    assert ruler.load(dataset="colour").image.values("colour")[int(read["colour"])] == "blue" != was


def test_re_patterning_changes_the_photo(colour_photo, tmp_path):
    path, _ = colour_photo
    out = tmp_path / "striped.png"
    assert _edit(path, out, "--pattern", "stripes", "--data", "colour", "--scale", "1") == 0
    with Image.open(path) as before:
        assert np.abs(_png(out).astype(int) - np.asarray(before.convert("RGB"))).mean() > 1.0


def test_a_colour_edit_needs_a_catalogue_with_that_attribute_and_a_known_value(colour_photo, photo, tmp_path,
                                                                                capsys):
    out = tmp_path / "x.png"
    assert _edit(photo, out, "--recolour", "blue") == 1
    _one_line_error(capsys, "has no colour attribute", "--data colour")
    assert _edit(colour_photo[0], out, "--recolour", "mauve", "--data", "colour") == 1
    _one_line_error(capsys, "--recolour 'mauve'", "red", "white")
    assert _edit(colour_photo[0], out, "--pattern", "paisley", "--data", "colour") == 1
    _one_line_error(capsys, "stripes")
    assert _edit(colour_photo[0], out, "--recolour", "blue", "--data", "colour", "--model", "median") == 1
    _one_line_error(capsys, "--model median cannot recolour")
    assert not out.exists()


def test_inpainting_from_a_prompt_keeps_the_known_pixels_and_draws_the_words_in_the_box(colour_photo, tmp_path,
                                                                                         capsys):
    path, _ = colour_photo
    with Image.open(path) as before:
        photo = np.asarray(before.convert("RGB")).astype(int)
    x, y, w, h = 8, 8, 16, 16
    inside = np.zeros(photo.shape[:2], dtype=bool)
    inside[y : y + h, x : x + w] = True
    blue_minus_red = {}
    for colour_word in ("blue", "red"):
        out = tmp_path / f"{colour_word}.png"
        assert _edit(path, out, "--inpaint", f"{x},{y},{w},{h}", "--data", "colour", "--model", "prompt",
                     "--prompt", f"a {colour_word} dress", "--scale", "1") == 0
        assert f"from 'a {colour_word} dress' (as a 3 x 32 x 32 colour image) with prompt" in capsys.readouterr().out
        edited = _png(out).astype(int)
        assert np.array_equal(edited[~inside], photo[~inside])  # the visible pixels are kept exactly
        blue_minus_red[colour_word] = float((edited[inside][:, 2] - edited[inside][:, 0]).mean())
    assert blue_minus_red["blue"] > blue_minus_red["red"] + 20  # the words decide what fills the box


def test_a_prompt_goes_with_inpainting_by_the_text_model_and_uses_its_words(colour_photo, tmp_path, capsys):
    path, out = colour_photo[0], tmp_path / "x.png"
    assert _edit(path, out, "--inpaint", "8,8,8,8", "--data", "colour", "--model", "prompt") == 1
    _one_line_error(capsys, "add --prompt WORDS")
    assert _edit(path, out, "--inpaint", "8,8,8,8", "--data", "colour", "--prompt", "a red dress") == 1
    _one_line_error(capsys, "--prompt says what --inpaint --model prompt draws")
    assert _edit(path, out, "--inpaint", "8,8,8,8", "--data", "colour", "--model", "prompt", "--prompt",
                 "a mauve dress") == 1
    _one_line_error(capsys, "mauve", "dress")
    assert _edit(path, out, "--denoise", "--data", "colour", "--model", "prompt") == 1
    _one_line_error(capsys, "cannot denoise")
    assert not out.exists()
