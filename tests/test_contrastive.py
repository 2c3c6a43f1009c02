"""The second ruler (issue 27): the SimCLR encoder, its loss, its augmentations, its training and what it is
measured by (k-NN and linear-probe accuracy of labels it never saw)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import own_data_home

from prodlab import checkpoints, config, data, datasets, models, runs
from prodlab.cli import main
from prodlab.datasets import store
from prodlab.datasets.spec import ImageSpec
from prodlab.models.encoder import ContrastiveEncoder, EncoderConfig
from prodlab.training import contrastive, registry
from prodlab.training.contrastive import ContrastiveRecipe

COLOUR_SPEC = ImageSpec(3, 32, 32, ("a", "b"), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
ODD_SPEC = ImageSpec(2, 20, 12, ("a", "b", "c"), (0.3, 0.6), (0.2, 0.1))
SMALL = {"widths": (8, 16, 32), "projection_dim": 16}
IDENTITY = ContrastiveRecipe(crop_scale=1.0, aspect=1.0, flip=False, brightness=0.0, contrast=0.0)


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """NT-Xent written out from Chen et al.'s definition, one anchor at a time, in float64 Python arithmetic."""
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        others = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[partner]) / t) / others)
    return total / (2 * n)


def test_nt_xent_is_the_definition_and_the_masked_cross_entropy():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = contrastive.nt_xent(z1, z2, 0.3)
    assert float(loss) == pytest.approx(reference_nt_xent(z1, z2, 0.3), rel=1e-5)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sims = (z @ z.T / 0.3).masked_fill(torch.eye(12, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(6, 12), torch.arange(0, 6)])  # view i's partner: i + N, and back
    assert float(loss) == pytest.approx(float(F.cross_entropy(sims, targets)), rel=1e-5)
    assert float(contrastive.nt_xent(z1 * 3.0, z2 * 0.5, 0.3)) == pytest.approx(float(loss), rel=1e-5)  # cosine


def test_nt_xent_known_values_aligned_pairs_beat_shuffled_ones():
    n, t = 4, 0.5
    z = torch.eye(n)  # every pair identical, every other view orthogonal: s = 1 for the partner, 0 otherwise
    aligned = float(contrastive.nt_xent(z, z, t))
    assert aligned == pytest.approx(-1 / t + math.log(math.exp(1 / t) + 2 * n - 2), rel=1e-6)
    shuffled = float(contrastive.nt_xent(z, z.roll(1, 0), t))
    assert shuffled > aligned + 1.0
    assert float(contrastive.nt_xent(z, z, 0.1)) < aligned  # a lower temperature rewards the same separation more


def test_two_views_are_seeded_shaped_and_in_range():
    x = torch.rand(16, *COLOUR_SPEC.shape, generator=torch.Generator().manual_seed(1))
    recipe = ContrastiveRecipe()
    a1, a2 = contrastive.two_views(x, torch.Generator().manual_seed(5), recipe)
    b1, b2 = contrastive.two_views(x, torch.Generator().manual_seed(5), recipe)
    c1, _ = contrastive.two_views(x, torch.Generator().manual_seed(6), recipe)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, c1) and not torch.allclose(a1, a2)
    assert a1.shape == a2.shape == x.shape and a1.min() >= 0 and a1.max() <= 1
    same, _ = contrastive.two_views(x, torch.Generator().manual_seed(5), IDENTITY)
    assert torch.allclose(same, x, atol=1e-5)  # no crop, no jitter: the image itself


def test_crops_zoom_in_at_most_one_over_sqrt_crop_scale_and_stay_inside():
    w = 16
    ramp = (torch.arange(w) / (w - 1)).expand(64, 1, w, w).clone()  # each row: 0 .. 1 from left to right
    recipe = dataclasses.replace(IDENTITY, crop_scale=0.25)
    view, _ = contrastive.two_views(ramp, torch.Generator().manual_seed(0), recipe)
    # the crop's width share (1: no zoom), between pixels off the outermost ones (a crop that reaches the image's
    # edge reads its last half pixel, where bilinear sampling repeats the edge pixel: the same for every image)
    steps = view.diff(dim=-1)[..., 1:-1] * (w - 1)
    assert steps.min() > 0.5 - 1e-4 and steps.max() < 1 + 1e-4  # sqrt(0.25) ... 1, never a flat border
    assert steps.flatten(1).std(1).max() < 1e-4  # one linear map per image
    flipped, _ = contrastive.two_views(ramp, torch.Generator().manual_seed(0), dataclasses.replace(IDENTITY, flip=True))
    mirrored = (flipped - ramp.flip(-1)).flatten(1).abs().amax(1) < 1e-5
    kept = (flipped - ramp).flatten(1).abs().amax(1) < 1e-5
    assert (mirrored | kept).all() and 0.25 < mirrored.double().mean() < 0.75


def test_brightness_and_contrast_keep_the_hue():
    x = torch.zeros(32, 3, 8, 8)
    x[:, 0], x[:, 1] = 0.6, 0.3  # an orange-ish product: red twice green, no blue
    view, _ = contrastive.two_views(x, torch.Generator().manual_seed(0), dataclasses.replace(IDENTITY, brightness=0.4))
    factor = view[:, 0, 0, 0] / 0.6
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5 and factor.std() > 0.05
    assert torch.allclose(view[:, 1], view[:, 0] / 2, atol=1e-5) and view[:, 2].abs().max() < 1e-6
    x[:, 1], x[:, 2] = 0.45, 0.3  # contrast moves each pixel along its line to the image's grey: hue stays
    view, _ = contrastive.two_views(x, torch.Generator().manual_seed(0), dataclasses.replace(IDENTITY, contrast=0.4))
    r, g, b = view[:, :, 0, 0].T
    assert torch.allclose((g - b) / (r - b), torch.full_like(r, 0.5), atol=1e-4) and (r - b).std() > 0.02


def test_channel_gains_move_each_channel_a_little_on_its_own():
    x = torch.full((64, 3, 4, 4), 0.5)
    view, _ = contrastive.two_views(x, torch.Generator().manual_seed(0),
                                    dataclasses.replace(IDENTITY, channel_gain=0.1))
    gains = view[:, :, 0, 0] / 0.5
    assert gains.min() >= 0.9 - 1e-5 and gains.max() <= 1.1 + 1e-5
    assert (gains[:, 0] - gains[:, 1]).abs().mean() > 0.03  # not one factor for all channels: the shade changes


@pytest.mark.parametrize("spec", [data.spec(), COLOUR_SPEC, ODD_SPEC], ids=["fashion", "colour", "odd"])
def test_features_follow_the_config(spec):
    config.seed_everything(0)
    cfg = EncoderConfig(spec, **SMALL)
    model = ContrastiveEncoder(cfg)
    x = torch.rand(5, *spec.shape)
    feats = model.features(x)
    assert feats.shape == (5, 32) == (5, model.num_features) and feats.min() >= 0
    assert model(x).shape == (5, 16)
    images = data.to_uint8(x)  # the stored form, N x H x W x C
    assert torch.allclose(model.features(images), model.features(data.to_float(images)))
    assert torch.allclose(model.encode(x, batch_size=2), feats, atol=1e-5)
    with pytest.raises(ValueError, match="expected images of shape"):
        model.features(torch.rand(5, spec.channels, spec.height + 4, spec.width))


def test_the_config_refuses_widths_groupnorm_cannot_split():
    with pytest.raises(ValueError, match="divisible by groups"):
        EncoderConfig(data.spec(), widths=(12, 24))


def test_the_loss_falls_over_a_few_steps_on_one_batch():
    config.seed_everything(0)
    model = ContrastiveEncoder(EncoderConfig(data.spec(), **SMALL))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = data.to_float(data.load("train")[0][:32])
    g = torch.Generator().manual_seed(0)
    rows = [contrastive.contrastive_step(model, optimizer, x, ContrastiveRecipe(), g) for _ in range(24)]
    first, last = ({key: sum(r[key] for r in part) / 4 for key in rows[0]} for part in (rows[:4], rows[-4:]))
    assert last["loss"] < first["loss"] - 0.3, (first, last)
    assert last["pair_accuracy"] > first["pair_accuracy"]  # more views find their partner


def test_knn_votes_and_breaks_ties_by_nearness():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[5.0, 0.2], [0.3, 4.0]])  # cosine: the length does not matter
    assert contrastive.knn_predict(bank, labels, queries, k=3).tolist() == [0, 1]
    assert contrastive.knn_predict(bank, labels, torch.tensor([[1.0, 0.98]]), k=4).tolist() == [0]  # 2 votes each
    assert contrastive.knn_predict(bank, labels, torch.tensor([[0.98, 1.0]]), k=4).tolist() == [1]


def test_the_linear_probe_reads_a_linear_label_and_not_noise():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(400, 6, generator=g), torch.randn(200, 6, generator=g)
    rule = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    assert contrastive.linear_probe(train, (train @ rule > 0).long(), test, (test @ rule > 0).long()) > 0.95
    noise = torch.randint(0, 2, (200,), generator=g)
    assert contrastive.linear_probe(train, torch.randint(0, 2, (400,), generator=g), test, noise) < 0.65


def test_training_is_seeded_and_the_checkpoint_gives_the_same_features(tmp_path):
    recipe = ContrastiveRecipe(epochs=1, batch_size=32, train_limit=128)
    cfg = EncoderConfig(data.spec(), **SMALL)

    def train(seed: int, name: str) -> tuple[ContrastiveEncoder, list]:
        return contrastive.train_encoder(cfg, recipe, runs.Run(name, tmp_path), seed, progress=False, threads=1)

    a, history = train(3, "a")
    b, _ = train(3, "b")
    c, _ = train(4, "c")
    assert len(history) == 1 and {"loss", "pair_accuracy", "monitor_knn_accuracy"} <= set(history[0])
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.projection[0].weight, c.projection[0].weight)
    checkpoints.save("enc", a, dataset=data.DEFAULT, recipe=None, command="test", seed=3, train_seconds=0.0,
                     metrics={}, directory=tmp_path)
    loaded = checkpoints.load("enc", tmp_path, kind="encoder")
    assert models.kind_of(loaded) == "encoder" and loaded.cfg == cfg
    x = data.load("test")[0][:20]
    assert torch.equal(loaded.encode(x), a.encode(x))


def test_the_encoders_are_registered_rulers_not_generators():
    assert {registry.entry(n).dataset for n in ("encoder", "colour-encoder")} == {data.DEFAULT, "colour"}
    assert not any(registry.entry(n).generative for n in ("encoder", "colour-encoder", "classifier"))
    assert registry.entry("dcgan").generative and "encoder" not in registry.generative_models(None)
    assert registry.entry("encoder").quick.train_limit and registry.entry("encoder").recipe.train_limit is None


def _colour_catalogue(name: str, spec: ImageSpec) -> None:
    """Catalogue ``name``: noise images whose one bright channel is their colour; class and pattern are random."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> dict[str, torch.Tensor]:
        colours = torch.randint(0, 3, (n,), generator=g)
        x = 0.2 * torch.rand(n, spec.height, spec.width, 3, generator=g)
        x[torch.arange(n), :, :, colours] += 0.7
        attributes = torch.stack([colours, torch.randint(0, 2, (n,), generator=g)], 1)
        return {"images": (x * 255).round().to(torch.uint8), "labels": torch.randint(0, 2, (n,), generator=g),
                "attributes": attributes}

    tensors = {f"{part}_{k}": v for part, n in (("train", 96), ("test", 48)) for k, v in split(n).items()}
    store.write_catalogue(name, spec, tensors, {"source": "tests/test_contrastive.py"})


def test_the_command_trains_on_a_catalogue_and_measures_each_attribute(tmp_path):
    spec = dataclasses.replace(COLOUR_SPEC, height=8, width=8,
                               attributes=(("colour", ("red", "green", "blue")), ("pattern", ("plain", "striped"))))
    with own_data_home(tmp_path / "home"):
        _colour_catalogue("tints", spec)
        assert datasets.spec("tints").attributes == spec.attributes
        out = tmp_path / "out"
        assert main(["train", "encoder", "--data", "tints", "--set", "batch_size=32", "--threads", "1",
                     "--out", str(out)]) == 0
        meta = checkpoints.read_meta("encoder", out, kind="encoder")
    measured = meta["metrics"]
    assert set(measured) == {"knn_accuracy", "knn_accuracy_colour", "knn_accuracy_pattern", "linear_probe_accuracy"}
    assert measured["knn_accuracy_colour"] > 0.9  # the colour is there to see, and the space keeps it
    assert measured["knn_accuracy_pattern"] < 0.8  # the pattern is noise: no better than chance, give or take
    assert meta["dataset"] == "tints" and meta["quick_mode"] and meta["recipe"]["fields"]["batch_size"] == 32
