"""Every model of the registry is shipped, loads, and reproduces a metric its checkpoint recorded, within a
tolerance that another CPU respects (floating point differs between CPU generations; the numbers were recorded on
one machine, this test may run on another)."""

from __future__ import annotations

from typing import Any

import pytest

from prodlab import checkpoints, data, metrics, ruler
from prodlab.models import vae as vae_models
from prodlab.training import autoencoder as autoencoder_training
from prodlab.training import clip as clip_training
from prodlab.training import contrastive, diffusion_measure, distill, registry
from prodlab.training import text_diffusion as text_diffusion_training

pytestmark = pytest.mark.integration  # every shipped model measured again: make test-integration

# Another CPU moves these by far less; another model (or another sampler) by far more. Keys by prefix
# (``test_accuracy_colour`` is a ``test_accuracy``).
TOLERANCE = {"test_accuracy": (0.002, 0.0), "class_fidelity": (0.005, 0.0), "fid": (0.0, 0.02),
             "neg_elbo_bernoulli": (0.0, 0.002), "knn_accuracy": (0.002, 0.0), "linear_probe_accuracy": (0.003, 0.0),
             "image_to_text": (0.003, 0.0), "kept": (0.003, 0.0), "psnr": (0.02, 0.0)}


def _reproduced(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recorded, measured now) for model ``name``: the cheapest of its recorded numbers to measure again."""
    meta = checkpoints.read_meta(name)
    kind, recorded, dataset = meta["kind"], meta["metrics"], meta.get("dataset", data.DEFAULT)
    if kind == "classifier":  # the class head, and each attribute head of a catalogue with attributes
        model = checkpoints.load(name)
        now = {"test_accuracy": ruler.classifier_report(model, dataset=dataset)["test_accuracy"],
               **ruler.attribute_accuracies(model, "test", dataset)}
        return {key: recorded[key] for key in now}, now
    if kind == "encoder":  # on the second ruler's cached features of every training and test image
        r = ruler.load_second(dataset)
        now = contrastive.label_accuracies(r.reference("train"), r.reference("test"), dataset)
        return {key: recorded[key] for key in now}, now
    if kind == "clip":  # the image -> text reading of the test photos (one pass of the image encoder)
        now = {f"image_to_text_{k}": v for k, v in clip_training.image_to_text(checkpoints.load(name)).items()}
        return {key: recorded[key] for key in now}, now
    if kind == "autoencoder":  # what the first stage keeps of the test photos (one round trip, the ruler twice)
        now = autoencoder_training.keeps(checkpoints.load(name), dataset, recorded["n"])
        return {key: recorded[key] for key in now if key.startswith(("kept", "psnr"))}, now
    if kind == "text-diffusion":  # the guidance sweep's unguided row (500 samples, one network call a step)
        row = next(r for r in meta["guidance_sweep"] if r["guidance"] == 1.0)
        model = text_diffusion_training.with_guidance(checkpoints.load(name), 1.0)
        images, _ = checkpoints.generate(name, 500, seed=0, model=model, batch_size=100)  # as it was measured
        return {"fid": row["fid"]}, {"fid": metrics.fid(ruler.load(dataset=dataset).reference("test"),
                                                        ruler.load(dataset=dataset).features(images))}
    if kind == "diffusion" and "bench" in meta:  # a distilled student: its bench point (1,000 samples, 4 calls each)
        report = ruler.generator_report(*checkpoints.generate(name, distill.BENCH_SAMPLES, seed=0),
                                        ruler.load(dataset=dataset), seed=0)
        return {k: meta["bench"][k] for k in ("fid", "class_fidelity")}, report
    if kind == "diffusion":  # the recorded sweep's cheapest row: 4 Heun steps, unguided (1,000 samples, 13 ms each)
        row = next(r for r in meta["sampling_sweep"] if r["guidance"] == 1.0 and r["steps"] == 4)
        model = diffusion_measure.with_sampling(checkpoints.load(name), sampler="heun", steps=4, guidance=1.0)
        report = ruler.generator_report(*checkpoints.generate(name, 1000, seed=0, model=model),
                                        ruler.load(dataset=dataset), seed=0)
        return {"fid": row["fid"], "class_fidelity": row["class_fidelity"]}, report
    images, labels = checkpoints.generate(name, recorded["n"], seed=0)
    r = ruler.load(dataset=dataset)  # each catalogue's generators are measured by that catalogue's ruler
    feats = r.features(images)
    now = {"fid": metrics.fid(r.reference("test"), feats)}
    if kind == "vae":  # the negative ELBO alone: the IWAE bound beside it costs 100 decodes an image
        x = data.to_float(data.load("test", dataset=dataset)[0])
        now["neg_elbo_bernoulli"] = float(vae_models.neg_elbo_bernoulli(checkpoints.load(name), x).mean())
    return {k: recorded[k] for k in now}, now


@pytest.mark.parametrize("name", list(registry.ENTRIES))
def test_every_registered_model_reproduces_its_recorded_metrics(name):
    recorded, now = _reproduced(name)
    for key, value in recorded.items():
        absolute, relative = TOLERANCE[next(prefix for prefix in TOLERANCE if key.startswith(prefix))]
        tolerance = absolute + relative * abs(value)
        assert now[key] == pytest.approx(value, abs=tolerance), f"{name}: {key} now {now[key]}, recorded {value}"
