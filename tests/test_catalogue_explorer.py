"""The explorers for any catalogue (prodlab.catalogue_explorer, notebooks 07 and 09): what they show is what their
pure render function draws, the generator draws what the dropdowns ask (read back by the catalogue's ruler), the
nearest products follow the drawn one, and a catalogue without a generator gets one clear line."""

from __future__ import annotations

import pytest
import torch
from conftest import own_data_home

from prodlab import catalogue_explorer, checkpoints, data, ruler, widgets
from prodlab.datasets import colour, store
from prodlab.datasets.spec import ImageSpec


@pytest.fixture(scope="module")
def explorer() -> catalogue_explorer.ConditionExplorer:
    colour.build()
    return catalogue_explorer.ConditionExplorer(colour.NAME, seed=3, n=8)


def test_the_explorer_offers_each_condition_of_the_catalogue_and_its_generators(explorer):
    spec = data.spec(colour.NAME)
    assert list(explorer.choices) == ["class", *spec.attribute_names]
    assert [label for label, _ in explorer.choices["colour"].options] == list(spec.values("colour"))
    assert ("conditional GAN", "cdcgan") in explorer.model.options


def test_what_is_shown_is_what_was_asked_for(explorer):
    spec = data.spec(colour.NAME)
    explorer.choices["class"].value = spec.class_names.index("Trouser")
    explorer.choices["colour"].value = spec.values("colour").index("blue")
    asked = {c: d.value for c, d in explorer.choices.items()}
    drawn = catalogue_explorer.render_conditioned(colour.NAME, explorer.model.value, asked, 3, 8)
    assert torch.equal(explorer.current, drawn)
    read = ruler.load(dataset=colour.NAME).model.predict_attributes(drawn)
    assert (read["colour"] == asked["colour"]).float().mean() >= 0.75  # the ruler reads the asked colour
    assert (read["class"] == asked["class"]).float().mean() >= 0.75
    explorer.seed.value = 4  # another seed, other products; the same seed again, the same ones
    assert not torch.equal(explorer.current, drawn)
    explorer.seed.value = 3
    assert torch.equal(explorer.current, drawn)


def test_the_nearest_products_follow_the_drawn_one(explorer):
    near = catalogue_explorer.CatalogueSimilar(explorer, k=4)
    assert torch.equal(near.current[0], explorer.current[0]) and len(near.current) == 5
    images, captions = widgets.render_similar(explorer.current[0], 4, dataset=colour.NAME)
    assert torch.equal(near.current, images) and "#" in near.caption.value
    before = near.current.clone()
    explorer.seed.value = 5
    assert torch.equal(near.current[0], explorer.current[0]) and not torch.equal(near.current, before)


def test_a_catalogue_without_a_generator_gets_one_line(tmp_path):
    spec = ImageSpec(3, 8, 8, ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    g = torch.Generator().manual_seed(0)
    tensors = {f"{split}_{k}": v for split in ("train", "test") for k, v in {
        "images": torch.randint(0, 256, (8, 8, 8, 3), dtype=torch.uint8, generator=g),
        "labels": torch.arange(8) % 2}.items()}
    with own_data_home(tmp_path):
        store.write_catalogue("nogenerator", spec, tensors, {"source": "tests/test_catalogue_explorer.py"})
        assert catalogue_explorer.generators("nogenerator") == []
        with pytest.raises(checkpoints.CheckpointError, match="python -m prodlab train cdcgan --data nogenerator"):
            catalogue_explorer.ConditionExplorer("nogenerator")
