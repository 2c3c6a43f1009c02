"""Checkpoints: round trip, and a clear CheckpointError for every way a checkpoint can be wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from prodlab import checkpoints, data, files, models
from prodlab.datasets.spec import ImageSpec
from prodlab.models.classifier import ClassifierConfig, ProductClassifier

SMALL = ClassifierConfig(data.spec(), channels=(4, 8, 8), convs=(1, 1, 2), hidden=16)


@dataclass(frozen=True)
class ToyConfig:
    image: ImageSpec
    size: int = 3


class Toy(nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.weight = nn.Parameter(torch.arange(float(cfg.size)))


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(models.FAMILIES, "toy", (Toy, ToyConfig))


def _save_small(tmp_path):
    torch.manual_seed(0)
    model = ProductClassifier(SMALL).eval()
    checkpoints.save("classifier", model, dataset=data.DEFAULT, recipe=None,
                     command="python -m prodlab train classifier", seed=7, train_seconds=1.25,
                     metrics={"test_accuracy": 0.5}, directory=tmp_path)
    return model


def test_round_trip_restores_config_tensors_and_outputs(tmp_path):
    model = _save_small(tmp_path)
    loaded = checkpoints.load("classifier", tmp_path)
    assert loaded.cfg == SMALL  # JSON lists come back as the config's tuples
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(5, *data.spec().shape)
    assert torch.equal(loaded(x), model(x))


def test_json_records_the_recipe(tmp_path):
    _save_small(tmp_path)
    meta = json.loads((tmp_path / "classifier.json").read_text())
    assert meta["model"] == "classifier" and meta["kind"] == "classifier" and meta["dataset"] == data.DEFAULT
    assert ImageSpec.from_json(meta["image_spec"]) == data.spec() == ImageSpec.from_json(meta["config"]["image"])
    assert meta["command"] == "python -m prodlab train classifier" and meta["seed"] == 7
    assert meta["train_seconds"] == pytest.approx(1.2, abs=0.06)
    assert meta["metrics"] == {"test_accuracy": 0.5}
    assert set(meta["training_data_sha256"]) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}
    assert {"platform", "cpu_count", "torch"} <= set(meta["machine"])
    assert meta["weights_sha256"] == files.sha256(tmp_path / "classifier.safetensors")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint for 'classifier'.*prodlab train classifier"):
        checkpoints.load("classifier", tmp_path)


def test_checkpoint_of_another_model_is_refused(tmp_path, toy_registered):
    checkpoints.save("toy", Toy(ToyConfig(data.spec())), dataset=data.DEFAULT, recipe=None, command="x", seed=0,
                     train_seconds=0.0, metrics={}, directory=tmp_path)
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


def test_a_checkpoint_of_another_family_is_refused_when_a_family_is_asked_for(tmp_path):
    _save_small(tmp_path)
    assert checkpoints.load("classifier", tmp_path, kind="classifier").cfg == SMALL
    with pytest.raises(checkpoints.CheckpointError, match="not 'classifier' \\(kind 'vae'\\)"):
        checkpoints.load("classifier", tmp_path, kind="vae")


def test_a_checkpoint_whose_config_has_unknown_fields_is_refused(tmp_path):
    _save_small(tmp_path)
    meta_path = tmp_path / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["n_layers"] = 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match="config does not build a classifier.*n_layers"):
        checkpoints.load("classifier", tmp_path)


def test_format_2_checkpoints_are_read_as_format_3(tmp_path):
    """The shipped checkpoints were written before image specs: every one was trained on Fashion-MNIST."""
    _save_small(tmp_path)
    meta_path = tmp_path / "classifier.json"
    meta = json.loads(meta_path.read_text())
    for key in ("dataset", "image_spec"):
        del meta[key]
    del meta["config"]["image"]
    meta["format"], meta["config"]["n_classes"] = 2, data.spec().n_classes
    meta_path.write_text(json.dumps(meta))
    upgraded = checkpoints.read_meta("classifier", tmp_path)
    assert upgraded["format"] == checkpoints.FORMAT_VERSION and upgraded["upgraded_from_format"] == 2
    assert upgraded["dataset"] == data.DEFAULT and checkpoints.load("classifier", tmp_path).cfg == SMALL
    meta["format"] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(checkpoints.CheckpointError, match="has format 1; this prodlab reads formats 2 and 3"):
        checkpoints.load("classifier", tmp_path)


@pytest.mark.parametrize(("fields", "conditional"), [
    ({"n_classes": 10, "width": 16}, True),  # format 2: a class count
    ({"n_classes": 0, "width": 16}, False),
    ({"image": {"channels": 1}, "conditional": False, "width": 16}, False),  # format 3 keeps its own
    ({"image": {"channels": 1}, "conditional": True, "width": 16}, True),
])
def test_a_generator_s_recorded_config_reads_the_class_count_as_conditional(fields, conditional):
    """What reading a format-2 GAN or diffusion checkpoint and re-training chapter 02's recorded ablation runs share."""
    assert checkpoints.conditional_fields(fields) == {"width": 16, "conditional": conditional}


def test_names_lists_the_checkpoints_present(tmp_path):
    assert checkpoints.names(tmp_path) == []
    _save_small(tmp_path)
    (tmp_path / "bench.json").write_text("{}")  # a JSON without weights is not a checkpoint
    assert checkpoints.names(tmp_path) == ["classifier"]


def test_balanced_labels():
    labels = checkpoints.balanced_labels(25, 10)
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [3] * 5 + [2] * 5
    assert torch.bincount(checkpoints.balanced_labels(7, 3)).tolist() == [3, 2, 2]
