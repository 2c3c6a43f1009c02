"""The train / sample / evaluate contract of ``python -m prodlab``, with a toy generator plugged into the registry."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from prodlab import checkpoints, data, models
from prodlab.__main__ import main
from prodlab.datasets.spec import ImageSpec
from prodlab.training import registry


@dataclass(frozen=True)
class ReplayConfig:
    image: ImageSpec
    size: int = 300

    @property
    def n_classes(self) -> int:  # conditional: sample() takes class labels
        return self.image.n_classes


class Replay(nn.Module):
    """A "generator" that returns stored test images: the smallest model that honours the sampling interface."""

    def __init__(self, cfg: ReplayConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("bank", data.to_float(data.load("test")[0][: cfg.size]))

    def sample(self, n: int, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.bank[torch.randint(len(self.bank), (n,), generator=generator)]


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A checkpoint folder with the shipped classifier and a conditional toy generator 'replay'."""
    monkeypatch.setitem(models.FAMILIES, "replay", (Replay, ReplayConfig))
    for path in checkpoints.paths("classifier"):
        shutil.copy(path, tmp_path / path.name)
    checkpoints.save("replay", Replay(ReplayConfig(data.spec())), dataset=data.DEFAULT, recipe=None, command="test",
                     seed=0, train_seconds=0.0, metrics={}, directory=tmp_path)
    return tmp_path


@pytest.mark.integration
def test_train_writes_a_checkpoint_that_evaluate_reproduces(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRODLAB_QUICK", "1")  # one short epoch on 4,096 images
    assert main(["train", "classifier", "--checkpoint-dir", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "classifier.json").read_text())
    assert meta["command"] == f"python -m prodlab train classifier --checkpoint-dir {tmp_path}"
    assert meta["quick_mode"] and 0.5 < meta["metrics"]["test_accuracy"] < 1.0
    assert registry.recipe_of("classifier", meta) == registry.resolve("classifier", [])  # as the loop below checks
    capsys.readouterr()
    assert main(["evaluate", "classifier", "--json", "--checkpoint-dir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] == meta["metrics"]["test_accuracy"]
    assert list(result["test_per_class_accuracy"]) == list(data.spec().class_names)


def test_classifier_cannot_sample(tmp_path, capsys):
    assert main(["sample", "classifier", "--n", "4", "--out", str(tmp_path / "x.npz")]) == 1
    assert "error: classifier is not a generative model" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_unknown_model_and_missing_checkpoint_are_errors(tmp_path, capsys):
    assert main(["evaluate", "nope"]) == 1
    assert "error: no checkpoint for 'nope'" in capsys.readouterr().err
    assert main(["train", "nope"]) == 1
    assert "error: unknown model 'nope'; models: classifier" in capsys.readouterr().err
    assert main(["evaluate", "classifier", "--checkpoint-dir", str(tmp_path)]) == 1
    assert "error: no checkpoint for 'classifier'" in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "100000000"])
def test_oversized_or_empty_requests_are_refused_at_once(shipped, n, capsys):
    out = shipped / "x.npz"
    assert main(["sample", "replay", "--n", n, "--out", str(out), "--checkpoint-dir", str(shipped)]) == 1
    assert capsys.readouterr().err.startswith("error: --n must be between 1 and 10,000,000")
    assert not out.exists()


def test_a_request_larger_than_memory_is_refused_before_sampling(shipped, monkeypatch, capsys):
    from prodlab import files

    monkeypatch.setattr(files, "available_memory", lambda: 1_000_000)  # 1 MB free: 2,000 images do not fit
    out = shipped / "x.npz"
    assert main(["sample", "replay", "--n", "2000", "--out", str(out), "--checkpoint-dir", str(shipped)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2,000 images of replay need 1.6 MB of memory and 1.0 MB are free: refused")
    assert not out.exists()


def test_a_run_folder_is_a_model(shipped, tmp_path, capsys):
    run = tmp_path / "runs" / "replay-quick"
    run.mkdir(parents=True)
    for path in checkpoints.paths("replay", shipped):
        shutil.copy(path, run / path.name)
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "y.npz")]) == 0
    assert main(["sample", str(run / "replay.json"), "--n", "3", "--out", str(tmp_path / "z.npz")]) == 0
    with np.load(tmp_path / "y.npz") as y, np.load(tmp_path / "z.npz") as z:
        assert np.array_equal(y["images"], z["images"])
    (run / "extra.json").write_text("{}")
    shutil.copy(run / "replay.safetensors", run / "extra.safetensors")
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "w.npz")]) == 1
    assert "expected one checkpoint (NAME.json + NAME.safetensors), found 2: extra, replay" in capsys.readouterr().err


def test_corrupt_checkpoint_is_an_error_message(shipped, capsys):
    (shipped / "replay.safetensors").write_bytes(b"garbage")
    args = ["sample", "replay", "--n", "4", "--out", str(shipped / "x.npz"), "--checkpoint-dir", str(shipped)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: corrupt checkpoint") and "Traceback" not in err


def test_sample_writes_uint8_images_and_balanced_labels(shipped):
    out = shipped / "samples.npz"
    args = ["sample", "replay", "--n", "25", "--out", str(out), "--seed", "3", "--checkpoint-dir", str(shipped)]
    assert main(args) == 0
    with np.load(out) as f:
        images, labels = f["images"], f["labels"]
        names = f["class_names"].tolist()
    assert images.dtype == np.uint8 and images.shape == (25, *data.spec().shape[1:], data.spec().channels)  # NHWC
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [3] * 5 + [2] * 5
    assert names == list(data.spec().class_names)
    bank = data.load("test")[0][:300].numpy()
    assert all((bank == image).all((1, 2, 3)).any() for image in images)  # bright-on-black test images, unchanged
    first = images.copy()
    assert main(args) == 0
    with np.load(out) as f:
        assert np.array_equal(f["images"], first)  # same seed, same samples


@pytest.mark.integration
def test_evaluate_generator_reports_every_metric(shipped, capsys):
    assert main(["evaluate", "replay", "--json", "--n", "600", "--checkpoint-dir", str(shipped)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"fid", "kid", "kid_std", "precision", "recall", "class_fidelity", "classes_covered"} <= set(result)
    assert result["n"] == 600
    assert 0.0 < result["class_fidelity"] < 0.3  # replay ignores the requested labels: about 1 in 10 by chance
    assert result["precision"] > 0.9  # the samples are real test images
    for report in (result, result["second_ruler"]):  # both feature spaces, each with its bootstrap intervals
        assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(report)
        assert {"fid", "precision", "recall", "density", "coverage"} <= set(report["intervals"])
        assert all(low <= report[key] <= high for key, (low, high) in report["intervals"].items())
        assert report["intervals"]["fid"][0] < report["intervals"]["fid"][1]  # (replayed test images: precision 1)
    assert result["ruler"] == "classifier" and result["second_ruler"]["ruler"] == "encoder"
    assert result["second_ruler"]["fid"] != result["fid"]  # another space, another number
    assert main(["evaluate", "replay", "--n", "600", "--replicates", "0", "--checkpoint-dir", str(shipped)]) == 0
    out = capsys.readouterr().out
    assert "fid" in out and "second ruler, encoder" in out and "[" not in out  # no intervals asked for


# The classifier's recipe runs end to end in test_train_writes_a_checkpoint_that_evaluate_reproduces.
SHRINK = {"vae": [],  # vae: the plain quick recipe, with its reference VAE
          "vae2d": ["train_limit=1024"],
          "dcgan": ["train_limit=512", "batch_size=32"], "cdcgan": ["train_limit=512", "batch_size=32"]}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(SHRINK))
def test_every_recipe_trains_end_to_end_in_quick_mode(name, tmp_path, monkeypatch):
    """The code that makes each shipped checkpoint runs through the CLI (quick recipe, smaller still)."""
    from prodlab import config

    monkeypatch.setenv("PRODLAB_QUICK", "1")
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    overrides = [arg for kv in SHRINK[name] for arg in ("--set", kv)]
    assert main(["train", name, *overrides, "--out", str(tmp_path)]) == 0
    meta = checkpoints.read_meta(name, tmp_path)
    assert registry.recipe_of(name, meta) == registry.resolve(name, SHRINK[name])
    assert meta["quick_mode"] and meta["metrics"]
    model = checkpoints.load(name, tmp_path)
    if registry.entry(name).generative:
        images, _ = checkpoints.generate(name, 4, model=model)
        assert images.shape == (4, data.spec().height, data.spec().width, data.spec().channels)


def test_rechoosing_a_shipped_sampler_is_refused_in_quick_mode(monkeypatch, capsys):
    monkeypatch.setenv("PRODLAB_QUICK", "1")  # its 200-sample metrics would overwrite the shipped JSON's
    assert main(["bench", "diffusion-sampling", "--model", "diffusion"]) == 1
    assert "run it without PRODLAB_QUICK" in capsys.readouterr().err
