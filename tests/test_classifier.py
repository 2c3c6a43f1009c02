"""The product classifier: shapes, batched augmentation, seeded training, and the shipped weights' accuracy."""

from __future__ import annotations

import torch

from prodlab import checkpoints, data, runs
from prodlab.datasets import fashion_mnist
from prodlab.models.classifier import ClassifierConfig, ProductClassifier
from prodlab.training import classifier as classifier_training


def test_shapes_and_features():
    torch.manual_seed(0)
    model = ProductClassifier(ClassifierConfig(data.spec())).eval()
    x = torch.rand(6, 1, 28, 28)
    feats = model.features(x)
    assert feats.shape == (6, 256) and model.num_features == 256
    assert feats.min() >= 0  # post-ReLU
    assert model(x).shape == (6, 10)
    assert torch.allclose(model.head(feats), model(x))  # logits = head(features) in eval mode
    assert model.predict(x, batch_size=4).tolist() == model(x).argmax(1).tolist()


def test_augment_batch_flips_and_shifts_each_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 28, 28)
    flipped = classifier_training.augment_batch(x, gen, shift=0, flip=True)
    is_flipped = (flipped == x.flip(-1)).flatten(1).all(1)
    assert ((flipped == x).flatten(1).all(1) | is_flipped).all()
    assert 0.4 < is_flipped.double().mean() < 0.6
    shifted = classifier_training.augment_batch(x, gen, shift=2, flip=False)
    assert shifted.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    crops = torch.stack([padded[:, :, dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)], 1)
    match = (crops == shifted[:, None]).flatten(2).all(2)  # which of the 25 crops each output equals
    assert match.any(1).all()
    assert match.double().mean(0).min() > 0  # every shift occurs


def test_training_is_seeded_and_learns(tmp_path):
    # 32 steps: BN statistics settle
    recipe = classifier_training.ClassifierRecipe(epochs=1, batch_size=64, train_limit=2048)
    small = ClassifierConfig(data.spec(), channels=(8, 16, 16), hidden=32)
    def train(seed: int, name: str):
        return classifier_training.train_classifier(small, recipe, runs.Run(name, tmp_path), seed, progress=False)

    a, history = train(3, "a")
    b, _ = train(3, "b")
    c, _ = train(4, "c")
    assert len(history) == 1 and history[0]["test_accuracy"] > 0.5  # well above chance (0.1) after 2k images
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.head.weight, c.head.weight)


def test_shipped_classifier_reaches_93_percent():
    """Its accuracy as recorded (tests/test_shipped.py measures it again), on the full training data."""
    meta = checkpoints.read_meta("classifier")
    assert meta["metrics"]["test_accuracy"] >= 0.93 and not meta["quick_mode"]
    assert sum(map(sum, meta["test_confusion"])) == 10_000
    assert meta["training_data_sha256"]["train-images-idx3-ubyte"] == fashion_mnist.SHA256["train-images-idx3-ubyte"]
