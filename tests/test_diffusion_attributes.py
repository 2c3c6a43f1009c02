"""The diffusion U-Net conditioned on class and attributes (issue 25): one embedding per condition, one "no label"
token per column, label dropout and guidance on whole rows, training and sampling through the command line, and
SDEdit with a new condition (``prodlab.edit.recolour.diffusion_pair``).

A tiny synthetic spec (3 x 8 x 8, 2 classes, colour 3, pattern 2) and a tiny catalogue in a data home of its own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import own_data_home, write_attribute_catalogue

from prodlab import checkpoints, diffusion
from prodlab.cli import main
from prodlab.datasets.spec import ImageSpec
from prodlab.edit import recolour
from prodlab.models import conditions, unet

SPEC = ImageSpec(3, 8, 8, ("top", "bottom"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                 (("colour", ("red", "green", "blue")), ("pattern", ("plain", "striped"))))
CFG = unet.DiffusionConfig(SPEC, width=8)
NAME = "tinycolourdiffusion"
ROWS = torch.tensor([[0, 2, 1], [1, 0, 0], [1, 1, 1], [0, 0, 1]])


def _model(seed: int = 0) -> unet.DiffusionModel:
    torch.manual_seed(seed)
    model = unet.DiffusionModel(CFG).eval()
    for p in model.parameters():  # the head starts at zero: give every weight a value so outputs differ
        torch.nn.init.normal_(p, 0.0, 0.2)
    return model


def test_the_unet_adds_one_embedding_per_condition_and_none_means_every_null_token():
    assert CFG.condition_sizes == (2, 3, 2) and CFG.null_label == (2, 3, 2)
    net = _model().net
    assert [e.num_embeddings for e in (net.label_emb, *net.attribute_emb)] == [3, 4, 3]
    t = torch.full((4,), 0.3)
    base = net.time_mlp(unet.timestep_embedding(t, net.emb_dim))
    want = base + net.label_emb(ROWS[:, 0]) + net.attribute_emb[0](ROWS[:, 1]) + net.attribute_emb[1](ROWS[:, 2])
    assert torch.allclose(net.embedding(t, ROWS), want)
    nulls = torch.tensor([CFG.null_label] * 4)
    assert torch.equal(net.embedding(t, None), net.embedding(t, nulls))
    other = ROWS.clone()
    other[:, 1] = (other[:, 1] + 1) % 3  # another colour: another embedding
    assert not torch.allclose(net.embedding(t, other), net.embedding(t, ROWS))
    grey = unet.DiffusionConfig(dataclasses.replace(SPEC, attributes=()), width=8)
    assert grey.null_label == 2 and not any("attribute_emb" in k for k in unet.DiffusionModel(grey).state_dict())


def test_label_dropout_drops_whole_rows_and_guidance_asks_the_null_row():
    seen = []

    def net(x, t, y):  # records the labels it is given; the prediction is the colour column times the input
        seen.append(y.clone())
        return x * y[:, 1].float()[:, None, None, None]

    x0 = torch.randn(64, *SPEC.shape)
    labels = torch.stack([torch.randint(0, k, (64,)) for k in CFG.condition_sizes], 1)
    diffusion.diffusion_loss(net, x0, labels, "flow", torch.Generator().manual_seed(0), 0.5, CFG.null_label)
    nulls = torch.tensor(CFG.null_label)
    dropped = (seen[0] == nulls).all(1)
    assert 10 < dropped.sum() < 54  # about half
    assert torch.equal(seen[0][~dropped], labels[~dropped])  # the others are kept whole
    guided = diffusion.predict(net, x0[:4], 0.5, ROWS, 3.0, CFG.null_label)
    cond, uncond = net(x0[:4], None, ROWS), net(x0[:4], None, nulls.expand(4, -1))
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond))


def test_a_model_on_attributes_refuses_labels_of_another_shape():
    model = _model()
    assert model.sample(4, torch.Generator().manual_seed(0), labels=ROWS).shape == (4, *SPEC.shape)
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(4, 3\)"):
        model.sample(4, labels=ROWS[:, 0])
    with pytest.raises(ValueError, match="colour 0..2"):
        model.sample(1, labels=torch.tensor([[0, 3, 0]]))


def test_sdedit_with_a_new_condition_changes_only_what_the_condition_changes():
    model = _model()
    x = torch.rand(4, *SPEC.shape)
    new = ROWS.clone()
    new[:, 1] = (new[:, 1] + 1) % 3
    before, after = recolour.diffusion_pair(model, x, ROWS, new, seed=3)
    again = recolour.diffusion_pair(model, x, ROWS, new, seed=3)
    assert torch.equal(before, again[0]) and torch.equal(after, again[1])  # deterministic given the seed
    assert before.shape == x.shape and before.min() >= 0 and after.max() <= 1
    assert not torch.allclose(before, after)
    same, same_after = recolour.diffusion_pair(model, x, ROWS, ROWS, seed=3)
    assert torch.equal(same, same_after) and torch.equal(recolour.change("colour", x, same, same_after), x)
    near = recolour.diffusion_pair(model, x, ROWS, ROWS, start=0.05, steps=1, seed=3)[0]
    assert (near - x).abs().mean() < (before - x).abs().mean()  # little noise: the photo comes back nearly as it was


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Catalogue ``tinycolourdiffusion`` (64 training images with attributes) in a data home of its own."""
    with own_data_home(tmp_path_factory.mktemp("home")) as home:
        write_attribute_catalogue(NAME, SPEC, "tests/test_diffusion_attributes.py")
        yield home


def test_train_and_sample_on_attributes_through_the_command_line(home, tmp_path):
    folder = tmp_path / "diffusion"
    assert main(["train", "diffusion", "--data", NAME, "--set", "epochs=1", "--set", "width=8",
                 "--set", "batch_size=32", "--set", "warmup_steps=1", "--out", str(folder)]) == 0
    model = checkpoints.load("diffusion", folder)
    assert model.cfg.condition_sizes == (2, 3, 2) and len(model.net.attribute_emb) == 2
    out = tmp_path / "a.npz"
    assert main(["sample", str(folder), "--n", "6", "--where", "colour=blue", "--out", str(out)]) == 0
    with np.load(out) as got:
        assert got["images"].shape == (6, SPEC.height, SPEC.width, SPEC.channels)
        assert got["colour"].tolist() == [2] * 6 and got["labels"].tolist() == [0, 1] * 3
    assert conditions.training_labels(model.cfg, torch.zeros(5, dtype=torch.long), NAME).shape == (5, 3)
