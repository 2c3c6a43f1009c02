"""The ruler's attribute heads (issue 25): one head per attribute of the spec beside the class head, trained with
the summed cross-entropies, and the attribute fidelity of images measured with them.

Small synthetic specs and tensors (colour = which channel is bright, pattern = plain or striped, class = which band
is dark); one command-line run on a tiny catalogue with attributes in a data home of its own."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import own_data_home
from safetensors import safe_open

from prodlab import checkpoints, data, datasets, ruler, runs
from prodlab.cli import main
from prodlab.datasets import store
from prodlab.datasets.spec import ImageSpec
from prodlab.models.classifier import ClassifierConfig, ProductClassifier
from prodlab.training import classifier as classifier_training

SPEC = ImageSpec(3, 16, 16, ("top", "middle", "bottom"), (0.4, 0.4, 0.4), (0.3, 0.3, 0.3),
                 (("colour", ("red", "green", "blue")), ("pattern", ("plain", "striped"))))
SMALL = {"channels": (8, 16, 16), "hidden": 32}


def make_batch(n: int, seed: int, image: ImageSpec = SPEC) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float N x 3 x H x W in [0, 1], class labels (which third of the rows is dark) and attributes N x 2 (colour:
    which channel is bright; pattern: plain, or stripes two columns wide)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, image.n_classes, (n,), generator=g)
    attributes = torch.stack([torch.randint(0, len(v), (n,), generator=g) for _, v in image.attributes], 1)
    x = torch.full((n, *image.shape), 0.15)
    x[torch.arange(n), attributes[:, 0]] = 0.9
    band = torch.arange(image.height) * image.n_classes // image.height
    x = x * torch.where(band[None, :] == labels[:, None], 0.35, 1.0)[:, None, :, None]
    columns = torch.arange(image.width) % 4 < 2
    x = x * torch.where((attributes[:, 1:] == 1) & columns[None, :], 0.4, 1.0)[:, None, None, :]
    return (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1), labels, attributes


def test_heads_exist_exactly_when_the_spec_has_attributes():
    torch.manual_seed(0)
    model = ProductClassifier(ClassifierConfig(SPEC, **SMALL)).eval()
    assert {k: v.out_features for k, v in model.attribute_heads.items()} == {"colour": 3, "pattern": 2}
    x = make_batch(5, 0)[0]
    logits = model.attribute_logits(x)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"class": (5, 3), "colour": (5, 3), "pattern": (5, 2)}
    assert torch.equal(model(x), logits["class"])  # forward: the class logits, as before

    bare = ProductClassifier(ClassifierConfig(dataclasses.replace(SPEC, attributes=()), **SMALL))
    assert len(bare.attribute_heads) == 0 and not any("attribute" in k for k in bare.state_dict())
    assert list(bare.attribute_logits(x)) == ["class"]
    with pytest.raises(ValueError, match="cannot name a classifier head"):
        ProductClassifier(ClassifierConfig(dataclasses.replace(SPEC, attributes=(("class", ("a", "b")),))))


def test_fashion_mnists_classifier_keeps_its_tensor_names_and_the_shipped_weights_load():
    model = ProductClassifier(ClassifierConfig(data.spec()))
    with safe_open(str(checkpoints.paths("classifier")[0]), "pt") as f:
        shipped = set(f.keys())
    assert set(model.state_dict()) == shipped
    assert all(k.startswith(("body.", "head.")) for k in shipped)
    loaded = checkpoints.load("classifier")
    assert len(loaded.attribute_heads) == 0


def step_before_issue_25(model, optimizer, x, y, recipe, generator) -> dict[str, float]:
    """``classifier_step`` as it was before the attribute heads, verbatim: the class-only step must not change."""
    xb = classifier_training.augment_batch(x, generator, recipe.shift, recipe.flip)
    logits = model(xb.contiguous(memory_format=torch.channels_last))
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "correct": int((logits.detach().argmax(1) == y).sum())}


def test_the_fashion_mnist_step_keeps_its_signature_and_its_bits():
    image, recipe = data.spec(), classifier_training.ClassifierRecipe()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, *image.shape, generator=g), torch.randint(0, image.n_classes, (16,), generator=g)
    results = []
    for step in (classifier_training.classifier_step, step_before_issue_25):
        torch.manual_seed(0)
        model = ProductClassifier(ClassifierConfig(image, **SMALL)).to(memory_format=torch.channels_last)
        optimizer, generator = torch.optim.AdamW(model.parameters(), lr=1e-2), torch.Generator().manual_seed(0)
        rows = [step(model, optimizer, x, y, recipe, generator) for _ in range(2)]
        results.append((rows, model.state_dict()))
    (rows, weights), (old_rows, old_weights) = results
    assert rows == old_rows and set(rows[0]) == {"loss", "correct"}
    assert weights.keys() == old_weights.keys() and all(torch.equal(weights[k], old_weights[k]) for k in weights)


@pytest.fixture(scope="module")
def trained() -> tuple[ProductClassifier, list[dict[str, float]]]:
    """A small ruler trained with :func:`classifier_step` on the separable problem (flips and shifts on): the
    model and the row of every step."""
    torch.manual_seed(0)
    model = ProductClassifier(ClassifierConfig(SPEC, **SMALL))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    recipe, generator = classifier_training.ClassifierRecipe(shift=1), torch.Generator().manual_seed(0)
    rows = []
    for step in range(120):
        x, y, a = make_batch(64, 100 + step)
        rows.append(classifier_training.classifier_step(model, optimizer, x, y, recipe, generator, a))
    return model.eval(), rows


def test_the_step_sums_every_heads_loss_and_lowers_each(trained):
    _, rows = trained
    first = rows[0]
    assert first["loss"] == pytest.approx(first["loss_class"] + first["loss_colour"] + first["loss_pattern"], rel=1e-5)
    assert set(first) == {"loss", "correct", "loss_class", "loss_colour", "correct_colour", "loss_pattern",
                          "correct_pattern"}
    def mean_loss(head: str, steps: slice) -> float:
        return sum(r[f"loss_{head}"] for r in rows[steps]) / len(rows[steps])

    for head in ("colour", "pattern"):  # within a dozen steps
        assert mean_loss(head, slice(10, 13)) < 0.5 * mean_loss(head, slice(0, 3)), head
    for head in ("class", "colour", "pattern"):  # the class (where a band is) takes a few dozen
        assert mean_loss(head, slice(40, 43)) < 0.3 * mean_loss(head, slice(0, 3)), head
    assert rows[-1]["correct_colour"] == 64 and rows[-1]["correct_pattern"] >= 60


def test_predict_attributes_is_deterministic_and_restores_the_training_flag(trained):
    model, _ = trained
    x = make_batch(40, 7)[0]
    model.train()
    small_batches = model.predict_attributes(x, batch_size=7)
    assert model.training
    model.eval()
    one_batch = model.predict_attributes(x)
    assert not model.training
    assert list(one_batch) == ["class", "colour", "pattern"]
    assert all(torch.equal(small_batches[k], one_batch[k]) and v.dtype == torch.int64 for k, v in one_batch.items())
    assert torch.equal(one_batch["class"], model.predict(x))


def test_attribute_fidelity_is_one_for_the_asked_attributes_and_drops_when_they_are_shuffled(trained):
    model, _ = trained
    x, y, a = make_batch(300, 11)
    truth = ruler.attribute_fidelity(model, x, y, a)
    assert truth == {"class": 1.0, "colour": 1.0, "pattern": 1.0}
    as_stored = data.to_uint8(x)  # uint8 N x H x W x C, through a ruler: the same answer
    assert ruler.attribute_fidelity(ruler.Ruler(model, "0" * 64, "synthetic"), as_stored, y, a) == truth
    shuffle = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    shuffled = ruler.attribute_fidelity(model, x, y[shuffle], a[shuffle])
    assert all(shuffled[k] < 0.75 for k in truth), shuffled  # chance: 1/3, 1/3, 1/2
    assert list(ruler.attribute_fidelity(model, x, y)) == ["class"]
    with pytest.raises(ValueError, match="one column per attribute"):
        ruler.attribute_fidelity(model, x, y, a[:, :1])


# ---------------------------------------------------------------- the command line, on a tiny catalogue


def tiny_catalogue(n: int, seed: int) -> dict[str, torch.Tensor]:
    """The separable problem as a catalogue's tensors (uint8 images, class labels, attributes): ``n`` training
    images and a quarter as many test images."""
    tensors = {}
    for offset, split in enumerate(store.SPLITS):
        x, y, a = make_batch(n // (1 + 3 * offset), seed + offset)
        tensors.update({f"{split}_images": data.to_uint8(x), f"{split}_labels": y, f"{split}_attributes": a})
    return tensors


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A data home with catalogue ``swatches`` (tiny, with the attributes colour and pattern) and ``plain`` (the
    same images without). Not named ``colour``: that name is the generated catalogue, rebuilt when not its own."""
    with own_data_home(tmp_path_factory.mktemp("home")) as home:
        tensors = tiny_catalogue(256, 0)
        spec = ImageSpec.measure(tensors["train_images"], SPEC.class_names, SPEC.attributes)
        store.write_catalogue("swatches", spec, tensors, {"source": "tests/test_attribute_ruler.py"})
        plain = {k: v for k, v in tensors.items() if not k.endswith("_attributes")}
        store.write_catalogue("plain", dataclasses.replace(spec, attributes=()), plain, {"source": "the same"})
        yield home


def test_train_classifier_on_attributes_reports_an_accuracy_per_head(home):
    assert main(["train", "classifier", "--data", "swatches", "--set", "epochs=1", "--threads", "1"]) == 0
    folder = home / "runs" / "swatches" / "classifier-quick"
    meta = checkpoints.read_meta("classifier", folder)
    metrics = meta["metrics"]
    assert {"test_accuracy", "test_accuracy_colour", "test_accuracy_pattern"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("test_accuracy_colour", "test_accuracy_pattern"))
    epoch = meta["history"][-1]
    assert {"test_accuracy_colour", "test_accuracy_pattern", "loss_colour", "train_accuracy_pattern"} <= set(epoch)
    model = checkpoints.load("classifier", folder)  # the heads are saved and load back
    assert set(model.attribute_heads) == {"colour", "pattern"}
    evaluated = ruler.evaluate("classifier", directory=folder)
    assert evaluated["test_accuracy_colour"] == metrics["test_accuracy_colour"]


def test_a_ruler_with_heads_refuses_a_data_set_without_those_attributes(home, tmp_path):
    cfg = ClassifierConfig(datasets.spec("swatches"), **SMALL)
    recipe = classifier_training.ClassifierRecipe(epochs=1, batch_size=32)
    with pytest.raises(ValueError, match="does not hold them"):
        classifier_training.train_classifier(cfg, recipe, runs.Run("plain", tmp_path), progress=False,
                                             dataset="plain", threads=1)
