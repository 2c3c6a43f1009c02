"""The ruler of chapter 04: the shipped product classifier as a measuring instrument, and the reports built on it.

Every sample metric of ``prodlab.metrics`` is computed on the 256-dimensional penultimate-layer features of the
shipped classifier (``data/checkpoints/classifier``), the in-domain replacement for Inception-v3 features. Values
are comparable only between runs that use the same classifier: cached reference features are keyed by its SHA-256.
``python -m prodlab evaluate NAME`` prints :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodlab import checkpoints, config, data, files, metrics
from prodlab.models import vae as vae_models
from prodlab.models.classifier import ProductClassifier

N_CLASSES = len(data.CLASS_NAMES)


@dataclass(frozen=True)
class Ruler:
    """The shipped classifier used as a measuring instrument: features, predictions, reference features.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """

    model: ProductClassifier
    weights_sha256: str

    @torch.no_grad()
    def features(self, images: torch.Tensor | np.ndarray, batch_size: int = 250) -> torch.Tensor:
        """Penultimate-layer features (float32 N x 256), batched, eval mode: deterministic.

        Batches run in channels-last memory layout, about twice as fast on a CPU; the batch size changes the
        result only at float rounding level (1e-6).
        """
        x = metrics.as_images(images)
        self.model.eval()
        return torch.cat([self.model.features(x[i : i + batch_size].contiguous(memory_format=torch.channels_last))
                          for i in range(0, len(x), batch_size)])

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Predicted classes from features (the head is linear; dropout is off in eval mode)."""
        return self.model.head(feats).argmax(1)

    @torch.no_grad()
    def probabilities(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model.head(feats).softmax(1)

    def _cached(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``compute()``, cached in ``data/cache`` under the classifier's SHA-256 (and in this process)."""
        key = f"eval-{name}-{self.weights_sha256[:16]}"
        if key in _CACHE:
            return _CACHE[key]
        path = config.cache_dir() / f"{key}.safetensors"  # written atomically: a concurrent reader never sees half
        value = files.load_or_build(path, lambda: {"value": compute()}, valid=lambda t: "value" in t)["value"]
        _CACHE[key] = value
        return value

    def reference(self, split: str = "test") -> torch.Tensor:
        """Features of a whole data split (cached)."""
        return self._cached(f"features-{split}", lambda: self.features(data.load(split)[0]))

    def reference_radii(self, split: str = "test", k: int = 3) -> torch.Tensor:
        """k-NN radii of the reference features, for precision (cached)."""
        return self._cached(f"radii{k}-{split}", lambda: metrics.knn_radii(self.reference(split).float(), k))


_RULERS: dict[tuple[str, str], Ruler] = {}
_CACHE: dict[str, torch.Tensor] = {}


def load(directory: Path | None = None) -> Ruler:
    """The classifier checkpoint as a :class:`Ruler` (loaded once per weights file).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    meta = checkpoints.read_meta("classifier", directory)
    key = (str(directory), meta.get("weights_sha256", ""))
    if key not in _RULERS:
        model = checkpoints.load("classifier", directory).to(memory_format=torch.channels_last)
        _RULERS[key] = Ruler(model, checkpoints.weights_sha256("classifier", directory))
    return _RULERS[key]


# ---------------------------------------------------------------- the classifier itself (§2.4)


@torch.no_grad()
def classifier_report(model: ProductClassifier, split: str = "test", batch_size: int = 250,
                      preds: torch.Tensor | None = None) -> dict[str, Any]:
    """Deterministic accuracy of ``model`` on a split: overall, per class, and the confusion matrix.

    ``confusion[i][j]`` counts images of true class i predicted as class j. ``preds``: the split's predicted classes
    if already known (notebook 04 passes ``Ruler.predict`` of the cached reference features: the same classes).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images, labels = data.load(split)
    preds = model.predict(data.to_float(images), batch_size) if preds is None else preds
    n = metrics.N_CLASSES
    confusion = torch.bincount(labels * n + preds, minlength=n**2).reshape(n, n)
    per_class = (confusion.diag().double() / confusion.sum(1).double()).tolist()
    return {
        f"{split}_accuracy": round(float((preds == labels).double().mean()), 4),
        f"{split}_per_class_accuracy": {n: round(a, 4) for n, a in zip(data.CLASS_NAMES, per_class, strict=True)},
        f"{split}_confusion": confusion.tolist(),
    }


def confident_errors(r: Ruler, k: int = 12) -> dict[str, torch.Tensor]:
    """The ``k`` test images the classifier gets wrong with the highest confidence (index, label, pred, prob).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images, labels = data.load("test")
    probs = r.probabilities(r.reference("test"))
    conf, preds = probs.max(1)
    wrong = torch.nonzero(preds != labels).flatten()
    top = wrong[conf[wrong].argsort(descending=True, stable=True)[:k]]
    return {"index": top, "images": images[top], "labels": labels[top], "preds": preds[top], "confidence": conf[top]}


# ---------------------------------------------------------------- one report for a set of samples


def generator_report(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | None = None,
    r: Ruler | None = None,
    reference: torch.Tensor | None = None,
    k: int = 3,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Every distribution metric of a sample set against the reference features (default: the test set).

    With ``labels`` (the classes a conditional generator was asked for) it adds class fidelity.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    r = r or load()
    radii = r.reference_radii("test", k) if reference is None else None
    reference = r.reference("test") if reference is None else reference
    feats = r.features(images)
    kid_mean, kid_std = metrics.kid(reference, feats, subsets=kid_subsets, seed=seed)
    precision, recall = metrics.precision_recall(reference, feats, k, radii)
    predicted = r.predict(feats)
    report: dict[str, Any] = {
        "n": len(feats),
        "fid": metrics.fid(reference, feats),
        "kid": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }
    if labels is not None:
        report.update(metrics.class_fidelity(predicted, torch.as_tensor(labels)))
    report.update(metrics.class_coverage(predicted))
    return report


def evaluate_generator(name: str, n: int = 10_000, seed: int = 0, directory: Path | None = None) -> dict[str, Any]:
    """Draw ``n`` samples of generator ``name`` (seed ``seed``) and measure them against the test set.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images, labels = checkpoints.generate(name, n, seed, directory)
    r = load(directory)
    return {"model": name, **generator_report(images, labels, r, seed=seed)}


def evaluate(name: str, n: int = 10_000, seed: int = 0, directory: Path | None = None) -> dict[str, Any]:
    """What ``python -m prodlab evaluate NAME`` prints: accuracy for the classifier, sample metrics otherwise.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    spec = checkpoints.spec(name)
    if spec.kind == "classifier":
        model = checkpoints.load(name, directory)
        report = classifier_report(model, "test")
        del report["test_confusion"]
        return {"model": name, **report}
    if not spec.generative:
        raise checkpoints.ModelError(f"no evaluation defined for {name!r} (kind {spec.kind})")
    report = evaluate_generator(name, n, seed, directory)
    if spec.kind == "vae":  # notebook 03: the likelihood of test images as well
        report.update(vae_likelihoods(name, directory, seed))
    return report


def evaluate_all(n: int = 10_000, seed: int = 0, directory: Path | None = None) -> list[dict[str, Any]]:
    """Evaluate every registered generative model that has a checkpoint; an empty list if there is none.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return [evaluate_generator(name, n, seed, directory)
            for name in checkpoints.generative_models() if checkpoints.exists(name, directory)]


def vae_likelihoods(name: str, directory: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Negative ELBO, IWAE bound, PSNR and active units of VAE checkpoint ``name`` on the test set.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    model = checkpoints.load(name, directory)
    return vae_models.likelihood_report(model, data.to_float(data.load("test")[0]), seed=seed)



