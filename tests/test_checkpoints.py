"""Checkpoints: round trip, and a clear CheckpointError for every way a checkpoint can be wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from prodlab import checkpoints, data
from prodlab.models.classifier import ClassifierConfig, ProductClassifier

SMALL = ClassifierConfig(channels=(4, 8, 8), convs=(1, 1, 2), hidden=16)


@dataclass(frozen=True)
class ToyConfig:
    size: int = 3


class Toy(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.arange(float(cfg.size)))


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(checkpoints.MODELS, "toy", checkpoints.ModelSpec("toy", "gan", Toy, ToyConfig()))


def _save_small(tmp_path):
    torch.manual_seed(0)
    model = ProductClassifier(SMALL).eval()
    checkpoints.save("classifier", model, recipe=None, command="python -m prodlab train classifier", seed=7,
                     train_seconds=1.25, metrics={"test_accuracy": 0.5}, directory=tmp_path)
    return model


def test_round_trip_restores_config_tensors_and_outputs(tmp_path):
    model = _save_small(tmp_path)
    loaded = checkpoints.load("classifier", tmp_path)
    assert loaded.cfg == SMALL  # JSON lists come back as the config's tuples
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))


def test_json_records_the_recipe(tmp_path):
    _save_small(tmp_path)
    meta = json.loads((tmp_path / "classifier.json").read_text())
    assert meta["model"] == "classifier" and meta["kind"] == "classifier"
    assert meta["command"] == "python -m prodlab train classifier" and meta["seed"] == 7
    assert meta["train_seconds"] == pytest.approx(1.2, abs=0.06)
    assert meta["metrics"] == {"test_accuracy": 0.5}
    assert set(meta["training_data_sha256"]) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}
    assert {"platform", "cpu_count", "torch"} <= set(meta["machine"])
    assert meta["weights_sha256"] == data.sha256(tmp_path / "classifier.safetensors")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint for 'classifier'.*prodlab train classifier"):
        checkpoints.load("classifier", tmp_path)


def test_checkpoint_of_another_model_is_refused(tmp_path, toy_registered):
    checkpoints.save("toy", Toy(ToyConfig()), recipe=None, command="x", seed=0, train_seconds=0.0, metrics={},
                     directory=tmp_path)
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"toy{suffix}").rename(tmp_path / f"classifier{suffix}")
    with pytest.raises(checkpoints.CheckpointError, match="holds a 'toy' checkpoint"):
        checkpoints.load("classifier", tmp_path)


def test_corrupt_weights_are_detected(tmp_path):
    _save_small(tmp_path)
    weights = tmp_path / "classifier.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF  # one flipped byte inside a tensor: still parses, but the SHA-256 differs
    weights.write_bytes(bytes(raw))
    with pytest.raises(checkpoints.CheckpointError, match="corrupt checkpoint"):
        checkpoints.load("classifier", tmp_path)


def test_unreadable_weights_without_recorded_hash(tmp_path):
    _save_small(tmp_path)
    meta_path = tmp_path / "classifier.json"
    meta = json.loads(meta_path.read_text())
    del meta["weights_sha256"]
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "classifier.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(checkpoints.CheckpointError, match="corrupt checkpoint"):
        checkpoints.load("classifier", tmp_path)


def test_corrupt_json_is_detected(tmp_path):
    _save_small(tmp_path)
    (tmp_path / "classifier.json").write_text("{ not json")
    with pytest.raises(checkpoints.CheckpointError, match="corrupt checkpoint description"):
        checkpoints.load("classifier", tmp_path)


def test_mismatched_shapes_are_reported(tmp_path):
    _save_small(tmp_path)
    meta_path = tmp_path / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["hidden"] = 32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match="does not fit model 'classifier'.*wrong shape"):
        checkpoints.load("classifier", tmp_path)


def test_unknown_model_and_registry(toy_registered):
    with pytest.raises(checkpoints.ModelError, match="unknown model 'nope'.*classifier"):
        checkpoints.spec("nope")
    assert checkpoints.spec("toy").kind == "gan"
    with pytest.raises(ValueError, match="registered twice"):
        checkpoints.register_model(checkpoints.MODELS["classifier"])


def test_balanced_labels():
    labels = checkpoints.balanced_labels(25)
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [3] * 5 + [2] * 5
