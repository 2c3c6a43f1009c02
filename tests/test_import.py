"""Chapter 09: a folder of the user's own images becomes a stored catalogue (``prodlab.datasets.folder``,
``prodlab.datasets.store``): both layouts, every odd or broken file answered, a seeded stratified split, the aspect
ratio kept, and no half-written catalogue whatever happens."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from prodlab import config, files
from prodlab.datasets import folder, store
from prodlab.datasets.spec import ImageSpec

RED, WHITE, SKY = (220, 20, 30), (255, 255, 255), (150, 200, 250)
BROKEN_REASONS = {  # kind of broken file -> words its reason must contain
    "empty": "empty (0 bytes)", "truncated": "truncated", "not_image": "not an image", "tiny": "too small",
    "bomb": "decompression bomb", "text": "not an image file (extension .txt)", "hidden": "hidden file",
    "hidden_in_class": "hidden file",
}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Every test writes its catalogues under a data home of its own, never the repo's data/."""
    monkeypatch.setenv(config.DATA_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def shop(photo_folder, tmp_path_factory) -> SimpleNamespace:
    """The photo folder imported once at the default size, with what the store reads back."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.DATA_ENV, str(tmp_path_factory.mktemp("shop-home")))
        report = folder.import_folder(photo_folder["root"], "shop")
        spec, tensors = store.read_catalogue("shop")
        manifest = files.read_json(report.path / store.MANIFEST_FILE)
    return SimpleNamespace(report=report, spec=spec, tensors=tensors, manifest=manifest)


def _image(path: Path, size: tuple[int, int], background: tuple[int, ...], box: tuple[int, int, int, int] | None,
           colour: tuple[int, ...] = RED, **save) -> Path:
    """An RGB file ``size`` (width, height) of ``background`` with a ``box`` (left, top, right, bottom) of
    ``colour``."""
    img = Image.new("RGB", size, background)
    if box is not None:
        img.paste(colour, box)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


def _two_class_folder(root: Path, per_class: int = 3) -> Path:
    """A tiny ImageFolder: classes ``dark`` and ``light``, plain squares of ``per_class`` shades each."""
    for i in range(per_class):
        _image(root / "dark" / f"d{i}.png", (16, 16), (10 * i, 0, 0), None)
        _image(root / "light" / f"l{i}.png", (16, 16), (255 - 10 * i, 255, 255), None)
    return root


def _image_of(report: folder.ImportReport, rel: str, tensors: dict[str, torch.Tensor] | None = None) -> np.ndarray:
    """The imported image (uint8 S x S x 3) of the source file ``rel``, found by the manifest's file lists
    (``tensors``: the catalogue's, else read from the current data home)."""
    manifest = files.read_json(report.path / store.MANIFEST_FILE)
    tensors = tensors if tensors is not None else store.read_catalogue(report.name)[1]
    for split in ("train", "test"):
        if rel in manifest["files"][split]:
            return tensors[f"{split}_images"][manifest["files"][split].index(rel)].numpy()
    raise AssertionError(f"{rel} was not imported")


# ---------------------------------------------------------------- the layouts, the shapes, the odd and broken files


@pytest.mark.parametrize("size", [32, 64])
def test_an_image_folder_becomes_catalogue_images_of_the_requested_size(photo_folder, size):
    report = folder.import_folder(photo_folder["root"], "shop", size=size)
    spec, tensors = store.read_catalogue("shop")
    assert spec == report.spec and spec.shape == (3, size, size)
    assert spec.class_names == tuple(photo_folder["classes"]) == tuple(sorted(photo_folder["classes"]))
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        assert images.dtype == torch.uint8 and images.shape == (report.counts[split], size, size, 3)
        assert labels.dtype == torch.int64 and labels.shape == (report.counts[split],)
    assert sum(report.counts.values()) == photo_folder["images"]
    assert 0.5 < spec.mean[0] < 0.95 and min(spec.std) > 0.1  # light backgrounds, coloured products: not blank


def test_every_broken_file_is_skipped_with_its_reason_in_one_line(shop, photo_folder):
    reasons = {path.as_posix(): reason for path, reason in shop.report.skipped}
    broken = photo_folder["broken"]
    assert set(reasons) == set(broken.values()), "exactly the broken files are skipped"
    for kind, rel in broken.items():
        assert BROKEN_REASONS[kind] in reasons[rel], f"{rel}: {reasons[rel]}"
    assert all("\n" not in line for line in shop.report.lines())
    assert shop.manifest["skipped"] == [[p.as_posix(), r] for p, r in shop.report.skipped]


def test_every_odd_mode_is_imported_on_a_light_background(shop, photo_folder):
    imported = set(shop.manifest["files"]["train"]) | set(shop.manifest["files"]["test"])
    for mode, paths in photo_folder["modes"].items():
        assert paths and set(paths) <= imported, f"{mode} files missing from the catalogue"
        for rel in paths:
            image = _image_of(shop.report, rel, shop.tensors)
            corners = image[[0, 0, -1, -1], [0, -1, 0, -1]].astype(float)
            # RGBA cut-outs hide black under their transparency: composited on white, never black;
            # CMYK must not come back inverted, 16-bit grey must be rescaled, not clipped to black or white
            assert corners.mean() > 200, f"{mode} {rel}: corners {corners.tolist()}"
            assert image.min() < 150, f"{mode} {rel}: the product is gone"


@pytest.mark.parametrize("header", [True, False])
def test_a_flat_folder_with_labels_csv(photo_folder, tmp_path, header):
    source = tmp_path / "flat"
    source.mkdir()
    rows = ["file,class"] if header else []
    for c, name in enumerate(photo_folder["classes"][:3]):
        for i, file in enumerate(sorted((photo_folder["root"] / name).glob(f"{name}_*.jpg"))[:4]):
            shutil.copy(file, source / f"{c}_{i}.jpg")
            rows.append(f"{c}_{i}.jpg,{name}")
    rows += ["gone.jpg,disc", "0_0.jpg,ring"]
    shutil.copy(source / "0_0.jpg", source / "unlisted.jpg")
    (source / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = folder.import_folder(source, "flat", size=32)
    assert report.spec.class_names == tuple(photo_folder["classes"][:3])
    assert report.counts == {"train": 9, "test": 3}
    reasons = {path.as_posix(): reason for path, reason in report.skipped}
    assert reasons.keys() == {"gone.jpg", "0_0.jpg", "unlisted.jpg"}
    assert "missing" in reasons["gone.jpg"] and "listed again" in reasons["0_0.jpg"]
    assert "not listed" in reasons["unlisted.jpg"]


def test_a_class_without_a_usable_image_is_dropped_and_one_class_is_an_error(tmp_path):
    source = _two_class_folder(tmp_path / "src")
    (source / "ghost").mkdir()
    (source / "ghost" / "empty.jpg").write_bytes(b"")
    report = folder.import_folder(source, "two", size=16)
    assert report.spec.class_names == ("dark", "light")
    assert (Path("ghost"), "class 'ghost' dropped: none of its files is a usable image") in report.skipped
    shutil.rmtree(source / "light")
    with pytest.raises(folder.FolderError, match="1 class") as err:
        folder.import_folder(source, "one", size=16)
    assert "\n" not in str(err.value) and any(p == Path("ghost/empty.jpg") for p, _ in err.value.skipped)
    with pytest.raises(folder.FolderError, match="no class subfolders"):
        folder.import_folder(source / "dark", "flat", size=16)
    assert store.list_catalogues()[0].name == "two" and len(store.list_catalogues()) == 1


# ---------------------------------------------------------------- the split


def test_the_split_is_seeded_and_stratified(photo_folder):
    first = folder.import_folder(photo_folder["root"], "a", size=16, seed=0)
    again = folder.import_folder(photo_folder["root"], "b", size=16, seed=0)
    other = folder.import_folder(photo_folder["root"], "c", size=16, seed=1)
    (_, a), (_, b), (_, c) = (store.read_catalogue(n) for n in "abc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "same seed, same bits"
    assert first.counts == again.counts == other.counts
    assert not torch.equal(a["test_images"], c["test_images"]), "another seed, another split"
    n = len(photo_folder["classes"])
    assert torch.bincount(a["test_labels"], minlength=n).tolist() == [8] * n  # 20 % of 40 in every class
    assert torch.bincount(c["train_labels"], minlength=n).tolist() == [32] * n


def test_a_small_class_keeps_one_test_image_and_a_single_image_stays_in_training():
    labels = torch.tensor([0] * 10 + [1, 1] + [2])
    train, test = folder.stratified_split(labels, 0.2, seed=3)
    assert torch.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert sorted(torch.cat([train, test]).tolist()) == list(range(len(labels)))


# ---------------------------------------------------------------- the conversion keeps the aspect ratio


@pytest.mark.parametrize("background", [WHITE, SKY], ids=["white", "sky"])
def test_a_wide_bar_keeps_its_shape_and_is_padded_with_the_border_colour(tmp_path, background):
    source = _two_class_folder(tmp_path / "src")
    _image(source / "bar" / "bar.png", (120, 40), background, (10, 15, 110, 25))
    report = folder.import_folder(source, "bars", size=32)
    image = _image_of(report, "bar/bar.png").astype(int)
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    rows, cols = np.nonzero(red.any(1))[0], np.nonzero(red.any(0))[0]
    assert 2 <= len(rows) <= 4, f"the bar is 10/40 of a 32 x 11 picture, not stretched to 32 rows: {rows}"
    assert 24 <= len(cols) <= 28 and abs(rows.mean() - 15.5) < 1.0
    for corner in (image[0, 0], image[-1, -1], image[0, -1]):  # the padding: the border colour, not black
        assert np.abs(corner - background).max() <= 3, corner


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    source = _two_class_folder(tmp_path / "src")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show: stored wide, shown tall
    _image(source / "phone" / "photo.jpg", (120, 40), WHITE, (10, 15, 110, 25), quality=95, exif=exif.tobytes())
    image = _image_of(folder.import_folder(source, "phone", size=32), "phone/photo.jpg")
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    assert red.any(1).sum() >= 24 and red.any(0).sum() <= 4, "the bar stands upright"


# ---------------------------------------------------------------- never half a catalogue


def _interrupt(monkeypatch, module, name: str) -> None:
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, stop)


def _leftovers(home: Path) -> list[str]:
    root = home / "catalogues"
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) if root.exists() else []


@pytest.mark.parametrize("where", ["decoding", "writing the tensors", "writing the manifest"])
def test_an_interrupted_import_leaves_no_catalogue(photo_folder, home, monkeypatch, where):
    if where == "decoding":
        calls = []
        convert = folder.convert

        def convert_then_stop(path, size):
            calls.append(path)
            if len(calls) == 50:
                raise KeyboardInterrupt
            return convert(path, size)

        monkeypatch.setattr(folder, "convert", convert_then_stop)
    else:
        _interrupt(monkeypatch, files, "write_tensors" if where == "writing the tensors" else "write_json")
    with pytest.raises(KeyboardInterrupt):
        folder.import_folder(photo_folder["root"], "shop", size=16)
    assert _leftovers(home) == []
    assert store.list_catalogues() == []
    with pytest.raises(store.CatalogueError, match="no catalogue 'shop'"):
        store.read_catalogue("shop")


@pytest.mark.parametrize("failure", ["interrupted write", "interrupted swap", "one class left"])
def test_an_old_catalogue_survives_a_failed_reimport(photo_folder, tmp_path, home, monkeypatch, failure):
    folder.import_folder(photo_folder["root"], "shop", size=16)
    before = store.read_catalogue("shop")[1]
    source = photo_folder["root"]
    if failure == "interrupted write":
        _interrupt(monkeypatch, files, "write_json")
    elif failure == "interrupted swap":
        replace = os.replace

        def replace_but_not_the_new_folder(src, dst):
            if ".shop.partial-" in Path(src).name:
                raise KeyboardInterrupt
            return replace(src, dst)

        monkeypatch.setattr(store.os, "replace", replace_but_not_the_new_folder)
    else:
        source = tmp_path / "one"
        shutil.copytree(photo_folder["root"] / photo_folder["classes"][0], source / "only")
    with pytest.raises((KeyboardInterrupt, folder.FolderError)):
        folder.import_folder(source, "shop", size=32)
    monkeypatch.undo()
    monkeypatch.setenv(config.DATA_ENV, str(home))
    spec, after = store.read_catalogue("shop")
    assert spec.shape == (3, 16, 16) and all(torch.equal(before[k], after[k]) for k in before)
    assert _leftovers(home) == ["shop"]


# ---------------------------------------------------------------- the store: damage, names, limits


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "not safetensors"])
def test_a_corrupt_catalogue_is_one_line_and_listed_with_its_problem(tmp_path, damage):
    report = folder.import_folder(_two_class_folder(tmp_path / "src"), "shop", size=16)
    path = report.path / store.CATALOGUE_FILE
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":
        data[-5] ^= 0xFF
    path.write_bytes(bytes(data[: len(data) - 100] if damage == "cut short" else
                           b"hello" if damage == "not safetensors" else data))
    with pytest.raises(store.CatalogueError) as err:
        store.read_catalogue("shop")
    message = str(err.value)
    assert "\n" not in message and "'shop' is damaged" in message and "python -m prodlab data import" in message
    assert ("corrupt" in message) == (damage == "flipped byte")
    [info] = store.list_catalogues()
    assert info.name == "shop" and info.problem and "\n" not in info.problem and info.counts == {}
    assert info.spec == report.spec, "the manifest still names what it was"


def test_a_missing_catalogue_says_how_to_make_one():
    with pytest.raises(store.CatalogueError) as err:
        store.read_catalogue("nope")
    assert "\n" not in str(err.value) and "data import" in str(err.value) and "data list" in str(err.value)


@pytest.mark.parametrize("name", ["", "Shop", "-shop", "_x", "a" * 41, "fashion-mnist", "my shop", "../x", "é"])
def test_a_bad_name_is_refused_in_one_line(name, photo_folder, home):
    with pytest.raises(ValueError) as err:
        store.check_name(name)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        folder.import_folder(photo_folder["root"], name)
    with pytest.raises(store.CatalogueError):
        store.read_catalogue(name)
    assert not home.exists()


@pytest.mark.parametrize("name", ["a", "shop", "my-shop_2", "0" * 40])
def test_good_names_pass(name):
    assert store.check_name(name) == name


def test_more_images_than_the_limit_is_refused_before_decoding(photo_folder, home, monkeypatch):
    monkeypatch.setattr(folder, "convert", lambda path, size: pytest.fail("decoded despite the limit"))
    with pytest.raises(files.TooLarge) as err:
        folder.import_folder(photo_folder["root"], "shop", max_images=50)
    assert "\n" not in str(err.value) and "more than 50 image files" in str(err.value)
    with pytest.raises(ValueError, match="size must be"):
        folder.import_folder(photo_folder["root"], "shop", size=10_000)
    assert _leftovers(home) == []


def test_the_store_checks_tensors_against_the_spec_and_keeps_attributes(home):
    spec = ImageSpec(3, 8, 8, ("a", "b"), (0.5,) * 3, (0.2,) * 3, (("colour", ("red", "blue", "green")),))
    tensors = {f"{s}_{k}": v for s in ("train", "test") for k, v in (
        ("images", torch.zeros(4, 8, 8, 3, dtype=torch.uint8)), ("labels", torch.tensor([0, 1, 0, 1])),
        ("attributes", torch.tensor([[0], [1], [2], [0]])))}
    path = store.write_catalogue("colours", spec, tensors, {"source": "generated", "seed": 7, "kind": "test"})
    read_spec, read = store.read_catalogue("colours")
    assert read_spec == spec and all(torch.equal(read[k], tensors[k]) for k in tensors)
    manifest = json.loads((path / store.MANIFEST_FILE).read_text())
    assert manifest["counts"] == {"train": 4, "test": 4} and manifest["seed"] == 7 and manifest["kind"] == "test"
    for key, bad in [("train_images", torch.zeros(4, 8, 8, 1, dtype=torch.uint8)),
                     ("train_labels", torch.tensor([0, 1, 0, 2])), ("test_labels", torch.zeros(4)),
                     ("test_attributes", torch.tensor([[0], [1], [3], [0]]))]:
        with pytest.raises(ValueError, match=key.split("_")[0]):
            store.write_catalogue("colours", spec, {**tensors, key: bad}, {})
    assert torch.equal(store.read_catalogue("colours")[1]["train_attributes"], tensors["train_attributes"])
