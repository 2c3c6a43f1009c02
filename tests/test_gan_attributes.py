"""A GAN conditioned on class and attributes (issue 25): G reads the one-hots of class, colour and pattern, D's
projection sums one embedding per condition, labels are N x (1 + K); on a spec without attributes nothing changes.

A tiny synthetic spec (3 x 8 x 8, 2 classes, colour 3, pattern 2) and, for training and the command line, a tiny
catalogue with those attributes in a data home of its own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import own_data_home, write_attribute_catalogue
from safetensors import safe_open

from prodlab import checkpoints, config, data, datasets
from prodlab.cli import main
from prodlab.datasets import colour
from prodlab.datasets.spec import ImageSpec
from prodlab.models import gan as gan_models
from prodlab.training import gan as gan_training
from prodlab.training import registry

SPEC = ImageSpec(3, 8, 8, ("top", "bottom"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                 (("colour", ("red", "green", "blue")), ("pattern", ("plain", "striped"))))
TINY = gan_models.GANConfig(SPEC, latent_dim=4, width=4, conditional=True)
NAME = "tinycolour"


def test_g_reads_every_one_hot_and_d_sums_one_embedding_per_condition():
    torch.manual_seed(0)
    assert TINY.condition_sizes == (2, 3, 2) and TINY.condition_names == ("class", "colour", "pattern")
    gan = gan_models.GAN(TINY).eval()
    assert gan.generator.project[0].in_features == TINY.latent_dim + 2 + 3 + 2
    assert [e.num_embeddings for e in (gan.discriminator.embed, *gan.discriminator.embed_attributes)] == [2, 3, 2]
    z, y = torch.randn(5, TINY.latent_dim), torch.tensor([[0, 2, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 2, 0]])
    x = gan.generator(z, y)
    assert x.shape == (5, *SPEC.shape)
    d = gan.discriminator
    h = d.features(x)
    e = d.embed(y[:, 0]) + d.embed_attributes[0](y[:, 1]) + d.embed_attributes[1](y[:, 2])
    assert torch.allclose(d(x, y), d.head(h).squeeze(1) + (e * h).sum(1))
    other = y.clone()
    other[:, 1] = (other[:, 1] + 1) % 3  # another colour: another image from the same z, another judgement
    assert not torch.equal(gan.generator(z, other), x) and not torch.equal(d(x, other), d(x, y))
    normed = gan_models.GAN(dataclasses.replace(TINY, spectral_norm=True)).state_dict()
    assert "discriminator.embed_attributes.1.parametrizations.weight.original" in normed


def test_a_spec_without_attributes_keeps_the_tensors_of_the_shipped_cdcgan():
    cfg = gan_models.GANConfig(data.spec(), conditional=True)
    assert cfg.condition_sizes == (data.spec().n_classes,) and not cfg.on_attributes
    with safe_open(str(checkpoints.paths("cdcgan")[0]), "pt") as f:
        names = list(f.keys())  # a safetensors handle is not iterable
        shipped = {k: tuple(f.get_slice(k).get_shape()) for k in names}
    assert {k: tuple(v.shape) for k, v in gan_models.GAN(cfg).state_dict().items()} == shipped
    plain = gan_models.GAN(dataclasses.replace(TINY, image=dataclasses.replace(SPEC, attributes=())))
    assert len(plain.discriminator.embed_attributes) == 0
    assert not any("embed_attributes" in k for k in plain.state_dict())
    assert plain.sample(3, torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 1])).shape == (3, *SPEC.shape)
    assert gan_models.GANConfig(SPEC).condition_sizes == ()  # unconditional: no labels at all


@pytest.mark.parametrize("labels", [
    torch.tensor([0, 1, 0]),  # classes only
    torch.tensor([[0, 1], [1, 0], [0, 0]]),  # a column short
    torch.tensor([[0, 1, 0], [1, 3, 0], [0, 0, 1]]),  # colour 3 of 0..2
    torch.tensor([[0, 1, 0], [1, 1, -1], [0, 0, 1]]),  # a negative pattern
    torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]),  # floats
    torch.tensor([[0, 1, 0], [1, 1, 1]]),  # two rows for three samples
])
def test_labels_of_the_wrong_shape_or_range_are_refused_in_one_message(labels):
    gan = gan_models.GAN(TINY)
    expected = r"shape \(3, 3\) for 3 samples \(class 0\.\.1, colour 0\.\.2, pattern 0\.\.1\)"
    with pytest.raises(ValueError, match=expected):
        gan.sample(3, labels=labels)


def test_without_labels_every_column_is_drawn_uniformly():
    g = torch.Generator().manual_seed(0)
    labels = gan_models.random_labels(TINY, 3000, g)
    assert labels.shape == (3000, 3)
    for j, size in enumerate(TINY.condition_sizes):
        assert torch.bincount(labels[:, j]).tolist() == pytest.approx([3000 / size] * size, rel=0.1)
    gan = gan_models.GAN(TINY)
    assert gan.sample(4, torch.Generator().manual_seed(1)).shape == (4, *SPEC.shape)
    gan_models.recompute_batchnorm(gan.generator, 2, 8, torch.Generator().manual_seed(2))
    assert torch.equal(gan.sample(4, torch.Generator().manual_seed(1)), gan.sample(4, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="needs class labels"):
        gan.generator(torch.randn(2, TINY.latent_dim))


def test_class_norm_tells_every_batch_norm_of_g_the_labels():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, class_norm=True)
    g = gan_models.GAN(cfg).generator.train()
    norms = [m for m in g.modules() if isinstance(m, gan_models.ClassBatchNorm)]
    assert len(norms) == cfg.stages and not any(type(m) is torch.nn.BatchNorm2d for m in g.children())
    with torch.no_grad():
        g.project[0].weight[:, cfg.latent_dim:] = 0  # the one-hots no longer reach G through its input
        for m in norms:
            for table in (*m.gain, *m.shift):
                table.weight.normal_()
    z, y = torch.randn(4, cfg.latent_dim), torch.tensor([[0, 2, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1]])
    other = y.clone()
    other[:, 2] = 1 - other[:, 2]  # another pattern
    assert not torch.equal(g(z, y), g(z, other))  # the labels still change the image: through the norms
    m = norms[0]
    x = torch.randn(4, m.norm.num_features, 3, 3)
    columns = [y[:, i] for i in range(3)]
    gain = 1 + sum(t(c) for t, c in zip(m.gain, columns, strict=True))
    shift = sum(t(c) for t, c in zip(m.shift, columns, strict=True))
    assert torch.allclose(m(x, columns), m.norm(x) * gain[:, :, None, None] + shift[:, :, None, None])
    with pytest.raises(ValueError, match="needs conditional=True"):
        gan_models.GANConfig(SPEC, class_norm=True)


def test_one_training_step_with_attributes_moves_every_embedding():
    torch.manual_seed(0)
    gan = gan_models.GAN(TINY)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(gan.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(6, *SPEC.shape) * 2 - 1
    y = gan_models.random_labels(TINY, 6, torch.Generator().manual_seed(3))
    before = [e.weight.detach().clone() for e in gan.discriminator.embed_attributes]
    row = gan_training.gan_step(gan, opt_g, opt_d, gan_training.GAN_LOSSES["bce"], x, y,
                                torch.Generator().manual_seed(4))
    assert all(np.isfinite(v) for v in row.values())
    assert all(not torch.equal(b, e.weight) for b, e in zip(before, gan.discriminator.embed_attributes, strict=True))
    one_hot_columns = gan.generator.project[0].weight.grad[:, TINY.latent_dim:]
    assert one_hot_columns.abs().sum(0).gt(0).all()  # every one-hot column of G received a gradient


def test_the_class_head_is_a_cross_entropy_on_the_same_features_and_only_the_aux_weight_trains_it():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, aux_classifier=True)
    d = gan_models.GAN(cfg).discriminator.eval()
    x, y = torch.rand(5, *SPEC.shape) * 2 - 1, torch.tensor([[0, 2, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1], [1, 2, 0]])
    logits, class_loss = gan_training.judge(d, x, y, 0.5)
    reference = torch.nn.functional.cross_entropy(d.classify(d.features(x)), y[:, 0])  # torch's own, by hand
    assert torch.equal(logits, d(x, y)) and torch.allclose(class_loss, 0.5 * reference)
    plain_logits, zero = gan_training.judge(d, x, y, 0.0)
    assert torch.equal(plain_logits, logits) and zero.item() == 0
    for weight in (0.0, 1.0):
        torch.manual_seed(1)
        gan = gan_models.GAN(cfg)
        head = gan.discriminator.classify.weight.detach().clone()
        opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (gan.generator, gan.discriminator))
        gan_training.gan_step(gan, opt_g, opt_d, gan_training.GAN_LOSSES["bce"], x, y,
                              torch.Generator().manual_seed(4), weight)
        assert torch.equal(head, gan.discriminator.classify.weight) == (weight == 0)  # moved only by the aux term


def test_a_class_head_needs_labels_and_an_aux_weight_needs_a_class_head():
    with pytest.raises(ValueError, match="aux_classifier works on the labels"):
        gan_models.GANConfig(SPEC, aux_classifier=True)
    with pytest.raises(ValueError, match="needs aux_classifier=True"):
        gan_training.GANFamily(TINY, gan_training.GANRecipe(aux_weight=1.0), NAME, seed=0)
    with pytest.raises(ValueError, match="class head"):
        gan_models.GAN(TINY).discriminator(torch.zeros(2, *SPEC.shape), torch.tensor([[0, 0, 0], [1, 1, 1]]),
                                           with_class=True)
    with pytest.raises(ValueError, match="aux_weight must be >= 0"):
        gan_training.GANRecipe(aux_weight=-1.0)
    shipped = registry.entry("colour-cdcgan")
    assert shipped.config(SPEC).aux_classifier and shipped.recipe.aux_weight > 0 and shipped.quick.aux_weight > 0


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Catalogue ``tinycolour`` (64 training images with attributes) in a data home and runs folder of its own."""
    with own_data_home(tmp_path_factory.mktemp("home")) as home:
        write_attribute_catalogue(NAME, SPEC, "tests/test_gan_attributes.py")
        yield home


def test_the_family_trains_on_class_and_attributes(home):
    family = gan_training.GANFamily(TINY, gan_training.GANRecipe(train_limit=40), NAME, seed=0)
    x, y = family.data()
    images, labels = datasets.load(NAME, "train")
    assert x.shape == (40, *SPEC.shape) and y.shape == (40, 3)
    assert torch.equal(y, torch.cat([labels[:, None], datasets.attributes(NAME, "train")], 1)[:40])
    with pytest.raises(ValueError, match="does not hold those attributes"):
        other = dataclasses.replace(SPEC, attributes=(("colour", ("red", "green", "blue")),))
        gan_training.training_labels(dataclasses.replace(TINY, image=other), labels, NAME)


def test_the_registry_has_the_colour_models():
    gan, ruler_entry = registry.entry("colour-cdcgan"), registry.entry("colour-classifier")
    assert gan.dataset == ruler_entry.dataset == colour.NAME and gan.kind == "gan" and gan.generative
    assert gan.config(SPEC).condition_sizes == (2, 3, 2)
    assert ruler_entry.recipe == registry.entry("classifier").recipe and not ruler_entry.generative


def _sample(folder, out, *options: str) -> dict[str, np.ndarray]:
    assert main(["sample", str(folder), "--n", "12", "--out", str(out), *options]) == 0
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_train_and_sample_through_the_command_line(home, tmp_path, capsys):
    folder = tmp_path / "gan"
    assert main(["train", "cdcgan", "--data", NAME, "--set", "batch_size=32", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "not measured: fid" in out and "attribute_fidelity_pattern" in out  # no ruler for tinycolour: one line
    assert checkpoints.read_meta("cdcgan", folder)["config"]["conditional"]

    got = _sample(folder, tmp_path / "a.npz", "--where", "colour=Blue", "--where", "pattern=striped", "--seed", "3")
    assert got["images"].shape == (12, SPEC.height, SPEC.width, SPEC.channels) and got["images"].dtype == np.uint8
    assert got["labels"].tolist() == [0, 1] * 6 and got["class_names"].tolist() == list(SPEC.class_names)
    assert got["colour"].tolist() == [2] * 12 and got["pattern"].tolist() == [1] * 12
    assert got["colour_names"].tolist() == ["red", "green", "blue"] and got["pattern_names"].tolist() == ["plain",
                                                                                                          "striped"]
    balanced = _sample(folder, tmp_path / "b.npz", "--where", "class=bottom", "--seed", "3")
    assert balanced["labels"].tolist() == [1] * 12 and np.bincount(balanced["colour"]).tolist() == [4, 4, 4]
    again = _sample(folder, tmp_path / "c.npz", "--where", "class=bottom", "--seed", "3")
    assert all(np.array_equal(again[k], balanced[k]) for k in balanced)
    assert again["images"].tobytes() == balanced["images"].tobytes()
    assert _sample(folder, tmp_path / "d.npz", "--seed", "4")["images"].tobytes() != again["images"].tobytes()


@pytest.mark.parametrize("where, message", [
    ("colour=pink", "unknown colour 'pink'; colour values: red, green, blue"),
    ("size=large", "NAME one of class, colour, pattern"),
    ("colour", "expected NAME=VALUE"),
])
def test_sample_refuses_unknown_names_in_one_line(home, tmp_path, capsys, where, message):
    folder = tmp_path / "gan"
    gan = gan_models.GAN(dataclasses.replace(TINY, image=datasets.spec(NAME)))
    checkpoints.save("cdcgan", gan, dataset=NAME, recipe=None, command="test", seed=0, train_seconds=0.0,
                     metrics={}, directory=folder)
    capsys.readouterr()
    assert main(["sample", str(folder), "--out", str(tmp_path / "x.npz"), "--where", where]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "x.npz").exists()


def test_with_a_ruler_that_has_attribute_heads_the_attribute_fidelities_are_measured(home, tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")  # this test's ruler, unseen by the others
    assert main(["train", "classifier", "--data", NAME, "--set", "epochs=1"]) == 0
    assert main(["train", "cdcgan", "--data", NAME, "--set", "batch_size=32", "--out", str(tmp_path / "gan")]) == 0
    assert "not measured" not in capsys.readouterr().out
    meta = checkpoints.read_meta("cdcgan", tmp_path / "gan")
    assert 0 <= meta["metrics"]["attribute_fidelity_colour"] <= 1 and "attribute_fidelity_pattern" in meta["metrics"]
    assert all("attribute_fidelity_colour" in row for row in meta["ablation"]) and "not_measured" not in meta
