"""The ruler of chapter 04: a product classifier as a measuring instrument, and the reports built on it.

Every sample metric of ``prodlab.metrics`` is computed on the 256-dimensional penultimate-layer features of a
classifier trained on the same data set, the in-domain replacement for Inception-v3 features: for Fashion-MNIST the
shipped ``data/checkpoints/classifier``; for another data set a classifier trained on it (:func:`find`). Values are
comparable only between runs that use the same classifier: cached reference features are keyed by its SHA-256.
``python -m prodlab evaluate NAME`` prints :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prodlab import bootstrap, checkpoints, config, data, datasets, files, metrics, models
from prodlab.datasets.spec import ImageSpec
from prodlab.models import vae as vae_models
from prodlab.models.classifier import ProductClassifier
from prodlab.models.encoder import ContrastiveEncoder

DENSITY_K = 5  # the neighbours of density and coverage's real balls (Naeem et al. 2020 recommend 5)


class NoRuler(checkpoints.CheckpointError):
    """No classifier has been trained on a data set yet, so its samples cannot be measured; says how to train one.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """


@dataclass(frozen=True)
class Ruler:
    """A classifier used as a measuring instrument on the data set it was trained on: features, predictions,
    reference features of that data set's splits.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """

    model: ProductClassifier | ContrastiveEncoder  # the first ruler is a classifier; the second, an encoder
    weights_sha256: str
    dataset: str = data.DEFAULT

    @property
    def image(self) -> ImageSpec:
        return self.model.cfg.image

    @torch.no_grad()
    def features(self, images: torch.Tensor | np.ndarray, batch_size: int = 250) -> torch.Tensor:
        """Penultimate-layer features (float32 N x 256), batched, eval mode: deterministic.

        Batches run in channels-last memory layout, about twice as fast on a CPU; the batch size changes the
        result only at float rounding level (1e-6).
        """
        x = data.as_batch(images, self.image)
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
        return self._cached(f"features-{split}", lambda: self.features(data.load(split, dataset=self.dataset)[0]))

    def reference_radii(self, split: str = "test", k: int = 3) -> torch.Tensor:
        """k-NN radii of the reference features, for precision (cached)."""
        return self._cached(f"radii{k}-{split}", lambda: metrics.knn_radii(self.reference(split).float(), k))


_RULERS: dict[tuple[str, str], Ruler] = {}
_CACHE: dict[str, torch.Tensor] = {}


def shipped_name(dataset: str = data.DEFAULT) -> str:
    """The name of the shipped ruler of ``dataset``: ``classifier`` for Fashion-MNIST, ``DATASET-classifier``
    for another data set. Chapter 04 (notebooks/04_evaluation.ipynb)."""
    return "classifier" if dataset == data.DEFAULT else f"{dataset}-classifier"


def find(dataset: str = data.DEFAULT) -> tuple[str, Path] | None:
    """Where the ruler of ``dataset`` is: its shipped classifier (:func:`shipped_name` in ``data/checkpoints``),
    else the newest ``train classifier --data DATASET`` run (``runs/DATASET/``); None when there is neither.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    if checkpoints.exists(shipped_name(dataset)):
        return shipped_name(dataset), config.CHECKPOINT_DIR
    runs_of = sorted((config.RUNS_DIR / dataset).glob("classifier*/classifier.json"), key=lambda p: p.stat().st_mtime)
    return ("classifier", runs_of[-1].parent) if runs_of else None


def load(directory: Path | None = None, dataset: str = data.DEFAULT) -> Ruler:
    """The ruler of ``dataset`` (:func:`find`), or the classifier checkpoint in ``directory``, as a
    :class:`Ruler` (loaded once per weights file). ``NoRuler`` says how to train one when there is none.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    found = ("classifier", directory) if directory is not None else find(dataset)
    if found is None:
        raise NoRuler(f"no classifier has been trained on data set {dataset!r}, so its samples cannot be measured: "
                      f"python -m prodlab train classifier --data {dataset}")
    return _loaded(*found, "classifier", dataset)


def second_name(dataset: str = data.DEFAULT) -> str:
    """The name of the second ruler of ``dataset``, a self-supervised encoder (``prodlab.models.encoder``):
    ``encoder`` for Fashion-MNIST, ``DATASET-encoder`` for another data set. Chapter 04."""
    return "encoder" if dataset == data.DEFAULT else f"{dataset}-encoder"


def load_second(dataset: str = data.DEFAULT) -> Ruler | None:
    """The second ruler of ``dataset`` from ``data/checkpoints`` (:func:`second_name`): a feature space that shares
    neither architecture nor training signal with the first; None when none is shipped (a user's catalogue).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    name = second_name(dataset)
    return _loaded(name, config.CHECKPOINT_DIR, "encoder", dataset) if checkpoints.exists(name) else None


def _loaded(name: str, folder: Path, kind: str, dataset: str) -> Ruler:
    """Checkpoint ``name`` in ``folder`` as a :class:`Ruler`, loaded once per weights file."""
    meta = checkpoints.read_meta(name, folder, kind=kind)
    key = (str(folder), meta.get("weights_sha256", ""))
    if key not in _RULERS:
        model = checkpoints.load(name, folder).to(memory_format=torch.channels_last)
        _RULERS[key] = Ruler(model, checkpoints.weights_sha256(name, folder), meta.get("dataset", dataset))
    return _RULERS[key]


# ---------------------------------------------------------------- the classifier itself (§2.4)


@torch.no_grad()
def classifier_report(model: ProductClassifier, split: str = "test", batch_size: int = 250,
                      preds: torch.Tensor | None = None, dataset: str = data.DEFAULT) -> dict[str, Any]:
    """Deterministic accuracy of ``model`` on a split: overall, per class, and the confusion matrix.

    ``confusion[i][j]`` counts images of true class i predicted as class j. ``preds``: the split's predicted classes
    if already known (notebook 04 passes ``Ruler.predict`` of the cached reference features: the same classes).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images, labels = data.load(split, dataset=dataset)
    preds = model.predict(data.to_float(images), batch_size) if preds is None else preds
    names = model.cfg.image.class_names
    n = len(names)
    confusion = torch.bincount(labels * n + preds, minlength=n**2).reshape(n, n)
    per_class = (confusion.diag().double() / confusion.sum(1).double()).tolist()
    return {
        f"{split}_accuracy": round(float((preds == labels).double().mean()), 4),
        f"{split}_per_class_accuracy": {c: round(a, 4) for c, a in zip(names, per_class, strict=True)},
        f"{split}_confusion": confusion.tolist(),
    }


@torch.no_grad()
def attribute_fidelity(r: Ruler | ProductClassifier, images: torch.Tensor | np.ndarray,
                       labels: torch.Tensor | np.ndarray, attributes: torch.Tensor | np.ndarray | None = None,
                       batch_size: int = 250) -> dict[str, float]:
    """The share of ``images`` whose predicted class, and each predicted attribute, is the one asked for.

    ``labels`` (int64 N) are the classes and ``attributes`` (int64 N x K, in the order of the spec's attributes,
    as ``prodlab.datasets.attributes`` stores them) the attributes a generator was asked for; on real images with
    their own labels the result is the ruler's accuracy per head. Returns ``{"class": ..., "colour": ...,
    "pattern": ...}``: the class, and each attribute only when ``attributes`` is given (the ruler must have a head
    for each). Measured with the ruler's heads, so a share is only as good as the ruler's accuracy on real images.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    model = r.model if isinstance(r, Ruler) else r
    names = model.cfg.image.attribute_names
    x = data.as_batch(images, model.cfg.image)
    labels = torch.as_tensor(labels)
    attributes = None if attributes is None else torch.as_tensor(attributes)
    if attributes is not None and tuple(attributes.shape) != (len(x), len(names)):
        raise ValueError(f"expected attributes of shape ({len(x)}, {len(names)}) (one column per attribute of the "
                         f"ruler: {', '.join(names) or 'none'}), got {tuple(attributes.shape)}")
    if len(labels) != len(x):
        raise ValueError(f"expected one label per image ({len(x)}), got {len(labels)}")
    preds = model.predict_attributes(x, batch_size)
    asked = {"class": labels, **({name: attributes[:, j] for j, name in enumerate(names)}
                                 if attributes is not None else {})}
    return {name: float((preds[name] == want.to(preds[name].device)).double().mean()) for name, want in asked.items()}


def attribute_accuracies(model: ProductClassifier, split: str = "test", dataset: str = data.DEFAULT
                         ) -> dict[str, float]:
    """The accuracy of each attribute head on a split of ``dataset`` (``{split}_accuracy_{attribute}``, rounded
    like :func:`classifier_report`'s); empty for a model without attribute heads.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    if not model.cfg.image.attributes:
        return {}
    images, labels = data.load(split, dataset=dataset)
    shares = attribute_fidelity(model, images, labels, datasets.attributes(dataset, split))
    return {f"{split}_accuracy_{name}": round(v, 4) for name, v in shares.items() if name != "class"}


def confident_errors(r: Ruler, k: int = 12) -> dict[str, torch.Tensor]:
    """The ``k`` test images the classifier gets wrong with the highest confidence (index, label, pred, prob).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    images, labels = data.load("test", dataset=r.dataset)
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
    replicates: int = 0,
) -> dict[str, Any]:
    """Every distribution metric of a sample set against the reference features (default: the test set): FID, KID,
    precision and recall (k-NN balls of ``k``), density and coverage (balls of :data:`DENSITY_K`, Naeem et al.'s).

    With ``labels`` (the classes a conditional generator was asked for) it adds class fidelity; with
    ``replicates`` > 0, ``intervals``: the 95 % bootstrap interval of each (``prodlab.bootstrap``).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    r = r or load()
    feats = r.features(images)
    predicted = r.predict(feats)
    hits = None if labels is None else predicted == torch.as_tensor(labels)
    report = space_report(r, feats, reference, k, kid_subsets, seed, replicates, hits)
    if labels is not None:
        report.update(metrics.class_fidelity(predicted, torch.as_tensor(labels), r.image.class_names))
    report.update(metrics.class_coverage(predicted, r.image.n_classes))
    return report


def space_report(r: Ruler, feats: torch.Tensor, reference: torch.Tensor | None = None, k: int = 3,
                 kid_subsets: int = 100, seed: int = 0, replicates: int = 0, hits: torch.Tensor | None = None
                 ) -> dict[str, Any]:
    """The distribution metrics of features ``feats`` in the feature space of ``r`` (a classifier or the second
    ruler's encoder) against ``reference`` (default: the test set's, with cached radii), with bootstrap
    ``intervals`` when ``replicates`` > 0 (``hits``: class fidelity's per-sample hits, resampled with them).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    cached = reference is None
    reference = r.reference("test") if cached else reference
    kid_mean, kid_std = metrics.kid(reference, feats, subsets=kid_subsets, seed=seed)
    prepared = bootstrap.prepare(reference, feats, k, DENSITY_K, r.reference_radii("test", k) if cached else None,
                                 r.reference_radii("test", DENSITY_K) if cached else None, hits)
    shares = prepared.measured()
    shares.pop("class_fidelity", None)  # the caller's, with the per-class split
    report = {"n": len(feats), "fid": metrics.fid(reference, feats), "kid": kid_mean, "kid_std": kid_std, **shares}
    if replicates:
        report["intervals"] = bootstrap.intervals(prepared, replicates, seed)
    return report


def attribute_report(r: Ruler, images: torch.Tensor, asked: torch.Tensor | None, image: ImageSpec
                     ) -> dict[str, float]:
    """``attribute_fidelity_NAME`` for each attribute that a generator of images ``image`` was asked for (``asked``:
    labels N x (1 + K), the class then each attribute), when the ruler has a head for each; {} otherwise (labels
    of the class alone, or a ruler of other attributes).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    if asked is None or asked.ndim != 2 or r.image.attributes != image.attributes:
        return {}
    shares = attribute_fidelity(r, images, asked[:, 0], asked[:, 1:])
    return {f"attribute_fidelity_{k}": v for k, v in shares.items() if k != "class"}


def sample_report(name: str, model: torch.nn.Module, n: int, seed: int, r: Ruler, device: torch.device | None = None,
                  replicates: int = 0, second: Ruler | None = None) -> dict[str, Any]:
    """Draw ``n`` samples of generator ``model`` (checkpoint name ``name``; balanced requests,
    ``checkpoints.requests``) and measure them with ruler ``r``: the :func:`generator_report` and, for a model
    conditioned on attributes, the fidelity of each (:func:`attribute_report`); with a ``second`` ruler the same
    samples in its feature space too (``second_ruler``: :func:`space_report`).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    asked = checkpoints.requests(model, n, seed)
    images, labels = checkpoints.generate(name, n, seed, model=model, device=device, labels=asked)
    return samples_report(images, labels, asked, model.cfg.image, r, seed, replicates, second)


def samples_report(images: torch.Tensor, labels: torch.Tensor | None, asked: torch.Tensor | None, image: ImageSpec,
                   r: Ruler, seed: int = 0, replicates: int = 0, second: Ruler | None = None) -> dict[str, Any]:
    """What :func:`sample_report` measures, on samples already drawn by a generator of images ``image``: classes
    ``labels`` and requests ``asked`` (``checkpoints.requests``; None for an unconditional one).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    report = {**generator_report(images, labels, r, seed=seed, replicates=replicates),
              **attribute_report(r, images, asked, image)}
    if second is not None:
        report["second_ruler"] = second_report(second, images, seed, replicates)
    return report


def second_report(second: Ruler, images: torch.Tensor | np.ndarray, seed: int = 0, replicates: int = 0
                  ) -> dict[str, Any]:
    """The ``second_ruler`` block of a report: the second ruler's name and :func:`space_report` of ``images`` in
    its feature space (with intervals when ``replicates`` > 0).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    return {"ruler": second_name(second.dataset),
            **space_report(second, second.features(images), seed=seed, replicates=replicates)}


def evaluate_generator(name: str, n: int = 10_000, seed: int = 0, directory: Path | None = None,
                       device: torch.device | None = None, replicates: int = bootstrap.REPLICATES) -> dict[str, Any]:
    """Draw ``n`` samples of generator ``name`` (seed ``seed``) and measure them against the test set of the data
    set it was trained on (:func:`sample_report`, with bootstrap intervals of ``replicates`` resamples), in the
    spaces of its ruler and, when the data set has one, of its second ruler (:func:`load_second`).

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    dataset = checkpoints.read_meta(name, directory).get("dataset", data.DEFAULT)
    r = load(dataset=dataset)  # before sampling: no ruler, no minutes spent drawing samples
    model = checkpoints.load(name, directory)
    return {"model": name, "dataset": dataset, "ruler": shipped_name(dataset),
            **sample_report(name, model, n, seed, r, device, replicates, load_second(dataset))}


def evaluate(name: str, n: int = 10_000, seed: int = 0, directory: Path | None = None,
             device: torch.device | None = None, replicates: int = bootstrap.REPLICATES) -> dict[str, Any]:
    """What ``python -m prodlab evaluate NAME`` prints: accuracy for a classifier, sample metrics otherwise.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    meta = checkpoints.read_meta(name, directory)
    if meta["kind"] == "classifier":
        model = checkpoints.load(name, directory)
        dataset = meta.get("dataset", data.DEFAULT)
        report = classifier_report(model, "test", dataset=dataset)
        del report["test_confusion"]
        return {"model": name, **report, **attribute_accuracies(model, "test", dataset)}
    if not models.draws_images(meta["kind"]):  # an encoder, the text-image model: their measures are of spaces
        raise ValueError(f"{name} draws no images to measure: its measures are in "
                         f"{checkpoints.paths(name, directory)[1]}; python -m prodlab train {name} measures them "
                         "again")
    report = evaluate_generator(name, n, seed, directory, device, replicates)
    if meta["kind"] == "vae":  # notebook 03: the likelihood of test images as well
        report.update(vae_likelihoods(name, directory, seed))
    return report


def vae_likelihoods(name: str, directory: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Negative ELBO, IWAE bound, PSNR and active units of VAE checkpoint ``name`` on its data set's test split.

    Chapter 04 (notebooks/04_evaluation.ipynb).
    """
    model = checkpoints.load(name, directory, kind="vae")
    dataset = checkpoints.read_meta(name, directory).get("dataset", data.DEFAULT)
    return vae_models.likelihood_report(model, data.to_float(data.load("test", dataset=dataset)[0]), seed=seed)
