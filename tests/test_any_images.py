"""Any images: a folder of the user's own 64 x 64 colour photos (5 classes, a few broken files) imported with
``python -m prodlab data import``, then every generative family trained on it for one quick epoch through the
command line; each samples images of the folder's shape, and a ruler trained on the folder measures them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import own_data_home, product_photo
from PIL import Image

from prodlab import checkpoints, datasets
from prodlab.cli import main

SIZE = 64


@pytest.fixture(scope="module")
def shop(photo_folder, tmp_path_factory):
    """The photo folder imported as catalogue ``shop`` into a data home and runs folder of its own."""
    with own_data_home(tmp_path_factory.mktemp("home")) as home:
        assert main(["data", "import", str(photo_folder["root"]), "--name", "shop", "--size", str(SIZE)]) == 0
        yield home


def test_the_import_lists_the_broken_files_and_the_catalogue(shop, photo_folder, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "shop" in out and f"3 x {SIZE} x {SIZE}, 5 classes" in out and "fashion-mnist" in out


@pytest.mark.integration
@pytest.mark.parametrize("model", ["dcgan", "cdcgan", "vae", "diffusion"])
def test_every_family_trains_one_quick_epoch_and_samples_the_folders_shape(model, shop, tmp_path):
    assert main(["train", model, "--data", "shop", "--set", "epochs=1"]) == 0
    folder = shop / "runs" / "shop" / f"{model}-quick"
    meta = checkpoints.read_meta(model, folder)
    assert meta["dataset"] == "shop" and meta["image_spec"]["height"] == SIZE and meta["image_spec"]["channels"] == 3
    out = tmp_path / "samples.npz"
    assert main(["sample", str(folder), "--n", "10", "--out", str(out)]) == 0
    with np.load(out) as f:
        images, names = f["images"], f["class_names"].tolist()
        labels = f.get("labels", None)
    assert images.shape == (10, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert names == list(datasets.spec("shop").class_names) and len(names) == 5
    assert (labels is not None) == (model in ("cdcgan", "diffusion"))
    if labels is not None:
        assert np.bincount(labels).tolist() == [2] * 5


@pytest.mark.integration
def test_a_ruler_trained_on_the_folder_measures_its_models(shop, capsys):
    assert main(["train", "classifier", "--data", "shop", "--set", "epochs=12"]) == 0
    if not checkpoints.exists("dcgan", shop / "runs" / "shop" / "dcgan-quick"):
        assert main(["train", "dcgan", "--data", "shop", "--set", "epochs=1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(shop / "runs" / "shop" / "dcgan-quick"), "--n", "60", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "shop" and result["n"] == 60 and result["fid"] > 0
    assert len(result["class_share"]) == 5


@pytest.mark.integration
def test_search_by_a_new_photo_finds_products_of_its_class_in_the_imported_catalogue(shop, photo_folder, tmp_path,
                                                                                    capsys):
    """``search PHOTO --data NAME --k 5 --json`` (issue 25) with a photo of each class the folder never held: most
    of the five products found are of the photo's class (with the ruler trained on the folder as the embedding)."""
    if not list((shop / "runs" / "shop").glob("classifier*/classifier.json")):
        assert main(["train", "classifier", "--data", "shop", "--set", "epochs=12"]) == 0
    rng = np.random.default_rng(99)
    found = {}
    for name in photo_folder["classes"]:
        photo = tmp_path / f"new-{name}.png"
        Image.fromarray(product_photo(rng, name, SIZE)[0]).save(photo)
        capsys.readouterr()
        assert main(["search", str(photo), "--data", "shop", "--k", "5", "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert len(hits) == 5 and {h["embedding"] for h in hits} == {"classifier"}
        found[name] = [h["class"] for h in hits]
    assert all(classes.count(name) >= 3 for name, classes in found.items()), found


def test_an_unknown_data_set_is_one_line_before_anything_trains(shop, capsys):
    assert main(["train", "dcgan", "--data", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "'nope'" in err and "data import" in err
    assert not (shop / "runs" / "nope").exists()
