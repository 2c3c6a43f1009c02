"""Embeddings for product search (notebook 06, article §2.4 item 3): functions from a product image to a vector.

Five embeddings compete: raw pixels, PCA of the pixels (scikit-learn), the VAE's latent mean, the GAN
discriminator's features and the classifier's penultimate features. Each works on one data set (a catalogue, by
name; default Fashion-MNIST) and reads images of that data set's :class:`~prodlab.datasets.spec.ImageSpec`, float
N x C x H x W. Pixels and PCA work on any data set; the classifier is that data set's ruler (``ruler.find``); the
VAE and the GAN are the shipped Fashion-MNIST checkpoints. Those that need a model are reported as not available
until it exists (:func:`unavailable` says how to train it). Each :class:`Embedder` carries a ``key`` (the SHA-256 of
the weights, or of the catalogue's data) that names the cache files built from its vectors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from prodlab import checkpoints, config, data, datasets, files, ruler
from prodlab.datasets import DEFAULT, store
from prodlab.datasets.spec import ImageSpec
from prodlab.models import shapes

FORMAT = 3  # bump when the cache layout or the vectors change: old cache files are then ignored
PCA_DIM = 64


class SearchError(ValueError):
    """An unknown embedding, a model not trained yet or an unreadable index file; the message says what to do."""


def check_k(k: int, n: int) -> None:
    """``ValueError`` unless 1 <= k <= n (the catalogue size): what every index checks before a search."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the catalogue size {n}, not {k}")


@dataclass(frozen=True)
class EmbeddingSpec:
    """One way to turn a product image into a vector for search."""

    name: str
    title: str
    checkpoint: str | None  # the model it needs, None for pixels and PCA
    how: str
    dataset: str | None = None  # the one data set its shipped checkpoint was trained on; None: any data set


EMBEDDINGS: dict[str, EmbeddingSpec] = {s.name: s for s in (
    EmbeddingSpec("pixels", "raw pixels", None, "every pixel value of the image (C x H x W numbers)"),
    EmbeddingSpec("pca", "PCA of pixels", None, f"projection on the {PCA_DIM} principal axes of the catalogue"),
    EmbeddingSpec("vae", "VAE latent mean", "vae", "the mean mu(x) of the encoder's q(z|x)", DEFAULT),
    EmbeddingSpec("dcgan", "GAN discriminator", "dcgan",
                  "the discriminator's last feature map, averaged over its positions", DEFAULT),
    EmbeddingSpec("classifier", "classifier features", "classifier",
                  "the penultimate layer of the data set's classifier (its ruler)"),
)}
BEST = "classifier"
PREFERENCE = ("classifier", "pca", "pixels", "vae", "dcgan")  # by mAP@100 on Fashion-MNIST (notebook 06), best first


def embedding_spec(name: str) -> EmbeddingSpec:
    """The spec of embedding ``name``; ``SearchError`` naming the valid ones if there is none."""
    if name not in EMBEDDINGS:
        raise SearchError(f"unknown embedding {name!r}; embeddings: {', '.join(EMBEDDINGS)}")
    return EMBEDDINGS[name]


def _classifier(dataset: str, directory: Path | None) -> tuple[str, Path] | None:
    """Where the classifier of ``dataset`` is: checkpoint ``classifier`` in ``directory`` when given, else the
    data set's ruler (``ruler.find``); None when there is none."""
    if directory is not None:
        return ("classifier", Path(directory)) if checkpoints.exists("classifier", directory) else None
    return ruler.find(dataset)


def unavailable(name: str, directory: Path | None = None, dataset: str = DEFAULT) -> str | None:
    """Why embedding ``name`` cannot be used on ``dataset`` (its model has no checkpoint, or exists for another
    data set only), in one line with the command that fixes it where there is one; None when it can."""
    spec = embedding_spec(name)
    if spec.dataset is not None and dataset != spec.dataset:
        return (f"{name}: not available for {dataset} (the shipped {spec.checkpoint} checkpoint is trained on "
                f"{spec.dataset} only)")
    if name == "classifier":
        if _classifier(dataset, directory) is not None:
            return None
        option = "" if dataset == DEFAULT else f" --data {dataset}"
        return f"classifier: not available yet (train it with python -m prodlab train classifier{option})"
    if spec.checkpoint is None or checkpoints.exists(spec.checkpoint, directory):
        return None
    return f"{name}: not available yet (train it with python -m prodlab train {spec.checkpoint})"


def available(directory: Path | None = None, dataset: str = DEFAULT) -> list[str]:
    """The embeddings usable now on ``dataset`` (notebook 06 compares them)."""
    return [name for name in EMBEDDINGS if unavailable(name, directory, dataset) is None]


def best_available(directory: Path | None = None, dataset: str = DEFAULT) -> str:
    """The best embedding usable now on ``dataset`` (``PREFERENCE``): the classifier once there is one, else PCA."""
    usable = available(directory, dataset)
    return next(name for name in PREFERENCE if name in usable)


def as_batch(images: Tensor, image: ImageSpec | None = None) -> Tensor:
    """Any accepted image batch -> float N x C x H x W in [0, 1]: ``prodlab.data.as_batch`` (kept here for the
    chapters that import it from ``search``)."""
    return data.as_batch(images, image)


@dataclass(frozen=True)
class Embedder:
    """A named function from product images to vectors; ``key`` changes whenever its vectors would."""

    name: str
    key: str  # SHA-256 of the checkpoint's weights, or of the catalogue's data for pixels / PCA
    fn: Callable[[Tensor], Tensor]  # float N x C x H x W in [0, 1] -> N x D
    image: ImageSpec  # the images it reads
    dataset: str = DEFAULT  # the catalogue it searches

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int = 250) -> Tensor:
        """Vectors (float32 N x D) of a batch of images, computed in chunks (eval mode: deterministic). Chunks of
        250 keep the convolutions' activations in the CPU's caches (1.3 to 2 times faster than 1,000 on one thread,
        the same vectors bit for bit); channels-last memory, as the ruler's, halves the classifier's time again
        (the vectors then differ at float rounding, 1e-6)."""
        x = data.as_batch(images, self.image)
        chunks = (x[i : i + batch_size].contiguous(memory_format=torch.channels_last)
                  for i in range(0, len(x), batch_size))
        return torch.cat([self.fn(chunk) for chunk in chunks]).float().contiguous()


def catalogue(dataset: str = DEFAULT) -> tuple[Tensor, Tensor]:
    """The searchable catalogue of ``dataset``: its training images (uint8 N x H x W x C) and labels; an item's id
    is its row (Fashion-MNIST: 60,000 products)."""
    return data.load("train", dataset=dataset)


_DATA_KEYS: dict[tuple[str, str, tuple[int, ...]], str] = {}


def data_key(dataset: str = DEFAULT) -> str:
    """SHA-256 (hex) of the training data's fingerprint (``datasets.fingerprint``): what pixel and PCA vectors
    depend on. A stored catalogue's file is hashed to get it, once per file version (inode, mtime, size) and
    process."""
    stamp: tuple[int, ...] = ()
    if dataset != DEFAULT:
        try:
            st = (store.catalogue_dir(dataset) / store.CATALOGUE_FILE).stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):  # missing or misnamed: fingerprint() below says which
            stamp = (-1,)
    memo = (str(config.data_home()), dataset, stamp)
    if memo not in _DATA_KEYS or stamp == (-1,):
        fingerprint = json.dumps(datasets.fingerprint(dataset), sort_keys=True)
        _DATA_KEYS[memo] = hashlib.sha256(fingerprint.encode()).hexdigest()
    return _DATA_KEYS[memo]


def embedding_key(name: str, directory: Path | None = None, dataset: str = DEFAULT) -> str:
    """What the vectors of ``name`` on ``dataset`` depend on: the weights' SHA-256, or the data's for pixels and
    PCA. ``SearchError`` when the embedding is not available there."""
    reason = unavailable(name, directory, dataset)
    if reason is not None:
        raise SearchError(reason)
    if name == "classifier":
        return checkpoints.weights_sha256(*_classifier(dataset, directory))
    spec = embedding_spec(name)
    if spec.checkpoint is not None:
        return checkpoints.weights_sha256(spec.checkpoint, directory)
    return data_key(dataset) if name == "pixels" else f"pca{PCA_DIM}-{data_key(dataset)}"


def fit_pca(images: Tensor, dim: int = PCA_DIM, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Mean (C*H*W) and principal axes (dim x C*H*W) of the images' pixels, by scikit-learn's randomized PCA
    (at most as many axes as there are images and pixels)."""
    from sklearn.decomposition import PCA  # scikit-learn is slow to import; only PCA and t-SNE need it

    x = data.as_batch(images).flatten(1).numpy()
    pca = PCA(n_components=min(dim, *x.shape), svd_solver="randomized", random_state=seed).fit(x)
    return torch.from_numpy(pca.mean_).float(), torch.from_numpy(pca.components_).float()


def _pca_params(refit: bool, dataset: str) -> tuple[Tensor, Tensor]:
    """The catalogue's PCA, fitted once and cached (the fit is part of building the PCA index)."""
    path = config.cache_dir() / f"search-{dataset}-pca{PCA_DIM}-params-{data_key(dataset)[:16]}-v{FORMAT}.safetensors"

    def fit() -> dict[str, Tensor]:
        mean, components = fit_pca(catalogue(dataset)[0])
        return {"mean": mean, "components": components}

    params = files.load_or_build(path, fit, valid=lambda t: {"mean", "components"} <= t.keys(), refresh=refit)
    return params["mean"], params["components"]


def _gan_features(model: torch.nn.Module) -> Callable[[Tensor], Tensor]:
    """Adapter: the discriminator's flattened 4w x h x w feature map (7 x 7 for Fashion-MNIST), averaged over its
    positions -> 4w.

    The flat map (6,272 numbers for w = 32 on Fashion-MNIST) would make a 1.5 GB index of 60,000 products; global
    average pooling is the usual way to read a convolutional network as a feature extractor, and it ignores where on
    the grid a pattern fires, as similar products shifted by a pixel need.
    """
    h, w = shapes.bottom(model.cfg.image, model.cfg.stages)
    return lambda x: model.discriminator_features(x, len(x)).unflatten(1, (-1, h, w)).mean((2, 3))


def embedder(name: str, directory: Path | None = None, refit: bool = False, dataset: str = DEFAULT) -> Embedder:
    """The embedding ``name`` (see ``EMBEDDINGS``) of ``dataset``, loaded from its checkpoint; ``SearchError`` if
    it has none there."""
    key = embedding_key(name, directory, dataset)  # SearchError when unavailable
    if name == "pixels":
        return Embedder(name, key, lambda x: x.flatten(1), data.spec(dataset), dataset)
    if name == "pca":
        mean, components = _pca_params(refit, dataset)
        return Embedder(name, key, lambda x: (x.flatten(1) - mean) @ components.T, data.spec(dataset), dataset)
    if name == "classifier":
        model = ruler.load(directory, dataset=dataset).model  # channels-last already, shared with the ruler
        return Embedder(name, key, model.features, model.cfg.image, dataset)
    model = checkpoints.load(EMBEDDINGS[name].checkpoint, directory).to(memory_format=torch.channels_last)
    if name == "vae":
        return Embedder(name, key, lambda x: model.encode(x)[0], model.cfg.image, dataset)
    return Embedder(name, key, _gan_features(model), model.cfg.image, dataset)
